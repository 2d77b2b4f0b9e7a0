"""Constitutive laws of the continuum: stress and tangent are derivatives, Voigt algebra."""

import numpy as np
import pytest

from continuum import (
    LinearElasticLaw,
    isotropic_stiffness,
    rotate_voigt,
    stiffness_tensor,
    voigt_matrix,
)

# cubic Cu-like constants, eV/Å³
C11, C12, C44 = 1.06, 0.76, 0.47


def cubic(c11=C11, c12=C12, c44=C44):
    C = np.full((3, 3), c12)
    np.fill_diagonal(C, c11)
    out = np.zeros((6, 6))
    out[:3, :3] = C
    out[3:, 3:] = np.eye(3) * c44
    return out


def random_F(rng, n=4, amplitude=0.05):
    return np.eye(3) + amplitude * rng.standard_normal((n, 3, 3))


def fd_stress_and_tangent(law, F, h=1e-6):
    """Central differences of W (→ P) and of P (→ A) over every component of F."""
    n = F.shape[0]
    P = np.zeros((n, 3, 3))
    A = np.zeros((n, 3, 3, 3, 3))
    for k in range(3):
        for L in range(3):
            dF = np.zeros((3, 3))
            dF[k, L] = h
            Wp, Pp, _ = law(F + dF)
            Wm, Pm, _ = law(F - dF)
            P[:, k, L] = (Wp - Wm) / (2 * h)
            A[:, :, :, k, L] = (Pp - Pm) / (2 * h)
    return P, A


def test_linear_elastic_stress_and_tangent_are_derivatives(rng):
    law = LinearElasticLaw(rotate_voigt(cubic(), np.linalg.qr(rng.standard_normal((3, 3)))[0]))
    F = random_F(rng)
    W, P, A = law(F)
    P_fd, A_fd = fd_stress_and_tangent(law, F)
    assert W.shape == (4,) and P.shape == (4, 3, 3) and A.shape == (4, 3, 3, 3, 3)
    np.testing.assert_allclose(P, P_fd, atol=1e-9)
    np.testing.assert_allclose(A, A_fd, atol=1e-8)
    # small strain: rotations of the identity cost no energy, the stress is symmetric
    np.testing.assert_allclose(P, P.transpose(0, 2, 1), atol=1e-14)
    W0, P0, _ = law(np.eye(3)[None] + np.array([[[0, 1e-3, 0], [-1e-3, 0, 0], [0, 0, 0]]]))
    assert abs(W0[0]) < 1e-16 and np.abs(P0).max() < 1e-16


def test_stiffness_tensor_symmetries_and_voigt_roundtrip():
    C = stiffness_tensor(cubic())
    for perm in [(1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)]:
        np.testing.assert_array_equal(C, C.transpose(perm))
    assert C[0, 0, 0, 0] == C11 and C[0, 0, 1, 1] == C12 and C[1, 2, 1, 2] == C44
    np.testing.assert_array_equal(voigt_matrix(C), cubic())


def test_rotate_voigt_cubic_about_z_by_45_degrees():
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    Cr = rotate_voigt(cubic(), R)
    # textbook [110] constants of a cubic crystal
    np.testing.assert_allclose(Cr[0, 0], 0.5 * (C11 + C12) + C44, rtol=1e-13)
    np.testing.assert_allclose(Cr[0, 1], 0.5 * (C11 + C12) - C44, rtol=1e-13)
    np.testing.assert_allclose(Cr[5, 5], 0.5 * (C11 - C12), rtol=1e-13)
    np.testing.assert_allclose(Cr[2, 2], C11, rtol=1e-13)
    np.testing.assert_allclose(rotate_voigt(Cr, R.T), cubic(), atol=1e-14)


def test_rotate_voigt_leaves_isotropic_stiffness_invariant(rng):
    C = isotropic_stiffness(E=2.0, nu=0.25)
    R = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    np.testing.assert_allclose(rotate_voigt(C, R), C, atol=1e-14)
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_voigt(C, 2 * np.eye(3))


def test_isotropic_stiffness_parameter_pairs_agree():
    lam, mu = 0.8, 0.5
    E = mu * (3 * lam + 2 * mu) / (lam + mu)
    nu = lam / (2 * (lam + mu))
    ref = isotropic_stiffness(lam=lam, mu=mu)
    assert ref[0, 0] == lam + 2 * mu and ref[0, 1] == lam and ref[3, 3] == mu
    for kwargs in (
        {"E": E, "nu": nu},
        {"E": E, "mu": mu},
        {"mu": mu, "nu": nu},
        {"lam": lam, "nu": nu},
    ):
        np.testing.assert_allclose(isotropic_stiffness(**kwargs), ref, rtol=1e-13)
    with pytest.raises(ValueError, match="exactly two"):
        isotropic_stiffness(E=E)


def test_bad_stiffness_is_rejected():
    with pytest.raises(ValueError, match="6×6"):
        LinearElasticLaw(np.eye(3))
    bad = cubic()
    bad[0, 1] += 0.1
    with pytest.raises(ValueError, match="symmetric"):
        LinearElasticLaw(bad)
