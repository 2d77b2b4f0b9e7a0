"""CLE dislocation and crack-tip fields: closed forms, closure, equilibrium and conventions."""

import ase.units
import numpy as np
import pytest

from continuum.elastic_fields import (
    MPA_SQRT_M_TO_EV_PER_A2_5,
    StrohError,
    crack_displacement,
    crack_displacement_gradient,
    crack_stress,
    cubic_stiffness,
    dislocation_displacement,
    dislocation_displacement_gradient,
    dislocation_stress,
    isotropic_crack_displacement,
    isotropic_edge_displacement,
    isotropic_screw_displacement,
    isotropic_stiffness,
    rotate_stiffness,
    stiffness_tensor,
    stroh,
)

GPA = 1 / 160.21766208  # eV/Å³
A_CU = 3.615  # Å
CU = cubic_stiffness(C11=169.85 * GPA, C12=122.56 * GPA, C44=76.19 * GPA)  # Zener ratio 3.2


def frame(*rows):
    R = np.array(rows, dtype=float)
    return R / np.linalg.norm(R, axis=1, keepdims=True)


# fcc slip system (−111)[110]: edge line along [1−12], screw line along [110]; both right-handed.
EDGE_FRAME = frame([1, 1, 0], [-1, 1, 1], [1, -1, 2])
SCREW_FRAME = frame([-1, 1, -2], [-1, 1, 1], [1, 1, 0])
CU_EDGE = rotate_stiffness(CU, EDGE_FRAME)
CU_SCREW = rotate_stiffness(CU, SCREW_FRAME)
B_EDGE = EDGE_FRAME @ (A_CU / 2 * np.array([1.0, 1.0, 0.0]))  # (|b|, 0, 0)
B_MIXED = EDGE_FRAME @ (A_CU / 2 * np.array([1.0, 0.0, 1.0]))  # 60° dislocation, same line
B_SCREW = SCREW_FRAME @ (A_CU / 2 * np.array([1.0, 1.0, 0.0]))  # (0, 0, |b|)
CASES = {"edge": (CU_EDGE, B_EDGE), "mixed": (CU_EDGE, B_MIXED), "screw": (CU_SCREW, B_SCREW)}

MU, NU = 0.3, 0.34  # eV/Å³ (≈ 48 GPa), isotropic test solid


def random_rotation(rng):
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return Q * np.sign(np.linalg.det(Q))


def annulus(rng, n, r_min=3.0, r_max=30.0, avoid_angle=None):
    """Random in-plane points with r in [r_min, r_max], optionally 0.1 rad clear of a ray."""
    r = rng.uniform(r_min, r_max, n)
    theta = rng.uniform(-np.pi, np.pi, n)
    if avoid_angle is not None:
        offset = np.angle(np.exp(1j * (theta - avoid_angle)))
        theta = np.where(np.abs(offset) < 0.1, theta + 0.2, theta)
    return np.column_stack([r * np.cos(theta), r * np.sin(theta)])


def central_difference(field, points, h=1e-4):
    """(n, ..., 2) derivative of field(points) along x and y."""
    parts = []
    for j in range(2):
        step = np.zeros(2)
        step[j] = h
        parts.append((field(points + step) - field(points - step)) / (2 * h))
    return np.stack(parts, axis=-1)


def hooke(C66, gradient):
    strain = 0.5 * (gradient + gradient.transpose(0, 2, 1))
    return np.einsum("ijkl,nkl->nij", stiffness_tensor(C66), strain)


def isotropic_edge_stress(points, b):
    """Hirth & Lothe eq. 3-43, b ∥ +x, ξ = +z."""
    x, y = points.T
    r4 = (x * x + y * y) ** 2
    D = MU * b / (2 * np.pi * (1 - NU))
    s = np.zeros((len(x), 3, 3))
    s[:, 0, 0] = -D * y * (3 * x * x + y * y) / r4
    s[:, 1, 1] = D * y * (x * x - y * y) / r4
    s[:, 0, 1] = s[:, 1, 0] = D * x * (x * x - y * y) / r4
    s[:, 2, 2] = NU * (s[:, 0, 0] + s[:, 1, 1])
    return s


def isotropic_screw_stress(points, b):
    x, y = points.T
    r2 = x * x + y * y
    s = np.zeros((len(x), 3, 3))
    s[:, 0, 2] = s[:, 2, 0] = -MU * b * y / (2 * np.pi * r2)
    s[:, 1, 2] = s[:, 2, 1] = MU * b * x / (2 * np.pi * r2)
    return s


# --- units and rotation -------------------------------------------------------------------------


def test_mpa_sqrt_m_conversion():
    assert MPA_SQRT_M_TO_EV_PER_A2_5 == pytest.approx(
        1e6 * ase.units.Pascal * np.sqrt(ase.units.m), rel=1e-6
    )
    assert MPA_SQRT_M_TO_EV_PER_A2_5 == pytest.approx(0.6241509, rel=1e-7)


def test_rotating_isotropic_stiffness_changes_nothing(rng):
    C = isotropic_stiffness(mu=MU, nu=NU)
    for _ in range(5):
        np.testing.assert_allclose(rotate_stiffness(C, random_rotation(rng)), C, atol=1e-14)


def test_cubic_stiffness_has_fourfold_axes_and_known_45_degree_values():
    c = 1 / np.sqrt(2)
    for R in (frame([0, 1, 0], [-1, 0, 0], [0, 0, 1]), frame([1, 0, 0], [0, 0, 1], [0, -1, 0])):
        np.testing.assert_allclose(rotate_stiffness(CU, R), CU, atol=1e-14)
    C45 = rotate_stiffness(CU, np.array([[c, c, 0], [-c, c, 0], [0, 0, 1]]))
    C11, C12, C44 = CU[0, 0], CU[0, 1], CU[3, 3]
    assert C45[0, 0] == pytest.approx((C11 + C12) / 2 + C44, rel=1e-14)
    assert C45[0, 1] == pytest.approx((C11 + C12) / 2 - C44, rel=1e-14)
    assert C45[5, 5] == pytest.approx((C11 - C12) / 2, rel=1e-14)
    assert C45[3, 3] == pytest.approx(C44, rel=1e-14)


def test_strain_energy_is_invariant_under_rotation(rng):
    M = rng.normal(size=(6, 6))
    C = M @ M.T + 6 * np.eye(6)  # triclinic, positive definite
    for _ in range(5):
        R = random_rotation(rng)
        eps = rng.normal(size=(3, 3))
        eps = eps + eps.T
        rotated = R @ eps @ R.T
        energy = np.einsum("ij,ijkl,kl", eps, stiffness_tensor(C), eps)
        rotated_energy = np.einsum(
            "ij,ijkl,kl", rotated, stiffness_tensor(rotate_stiffness(C, R)), rotated
        )
        assert rotated_energy == pytest.approx(energy, rel=1e-12)


def test_rotate_stiffness_rejects_bad_frames():
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_stiffness(CU, np.array([[1, 1, 0], [-1, 1, 1], [1, -1, 2]], dtype=float))
    left_handed = EDGE_FRAME * np.array([[1], [1], [-1]])
    with pytest.raises(ValueError, match="left-handed"):
        rotate_stiffness(CU, left_handed)
    # A stiffness is centrosymmetric: the reflection R gives the same C' as the rotation -R.
    np.testing.assert_allclose(
        rotate_stiffness(CU, left_handed, allow_reflection=True),
        rotate_stiffness(CU, -left_handed),
        atol=1e-14,
    )


# --- Stroh solution -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "C66, degenerate",
    [(CU_EDGE, False), (CU_SCREW, False), (isotropic_stiffness(mu=MU, nu=NU), True)],
    ids=["cu_edge_frame", "cu_screw_frame", "isotropic"],
)
def test_stroh_eigenvectors_solve_equilibrium_and_are_orthonormal(C66, degenerate):
    solution = stroh(C66)
    assert (solution.companion is not None) == degenerate
    for s in (solution, solution.companion):
        if s is None:
            continue
        C = stiffness_tensor(s.stiffness)
        Q, R, T = C[:, 0, :, 0], C[:, 0, :, 1], C[:, 1, :, 1]
        assert np.all(s.p.imag > 0)
        for p, a, b in zip(s.p, s.A.T, s.B.T, strict=True):
            np.testing.assert_allclose((Q + p * (R + R.T) + p * p * T) @ a, 0, atol=1e-12)
            np.testing.assert_allclose((R.T + p * T) @ a, b, atol=1e-12)
        np.testing.assert_allclose(s.B.T @ s.A + s.A.T @ s.B, np.eye(3), atol=1e-10)
        np.testing.assert_allclose(2 * (s.A @ s.B.T).real, np.eye(3), atol=1e-10)
        np.testing.assert_allclose((s.B @ s.B.T).real, 0, atol=1e-10)


def test_stroh_rejects_stiffness_that_is_not_positive_definite():
    with pytest.raises(StrohError, match="positive definite"):
        stroh(cubic_stiffness(C11=1.0, C12=1.2, C44=0.5))


# --- isotropic limit ----------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", ["cubic", "edge_frame"])
def test_isotropic_limit_matches_volterra_solutions(rng, orientation):
    C = isotropic_stiffness(mu=MU, nu=NU)
    if orientation == "edge_frame":
        C = rotate_stiffness(C, EDGE_FRAME)  # round-off anisotropy must not matter
    points = annulus(rng, 200, r_min=0.5)
    reference_point = np.array([[7.0, -3.0]])
    b = 2.5

    def relative(field, **kwargs):
        return field(points=points, **kwargs) - field(points=reference_point, **kwargs)

    edge = relative(dislocation_displacement, C66=C, burgers=[b, 0, 0])
    edge_hl = relative(isotropic_edge_displacement, nu=NU, b=b)
    np.testing.assert_allclose(edge, edge_hl, atol=1e-8 * b)
    offset = isotropic_edge_displacement(nu=NU, b=b, points=points)
    offset -= dislocation_displacement(C66=C, burgers=[b, 0, 0], points=points)
    expected_offset = np.broadcast_to([0, -b / (8 * np.pi * (1 - NU)), 0], offset.shape)
    np.testing.assert_allclose(offset, expected_offset, atol=1e-8 * b)  # documented constant
    screw = relative(dislocation_displacement, C66=C, burgers=[0, 0, b])
    np.testing.assert_allclose(screw, relative(isotropic_screw_displacement, b=b), atol=1e-8 * b)

    stress = dislocation_stress(C66=C, burgers=[b, 0, b], points=points)
    expected = isotropic_edge_stress(points, b) + isotropic_screw_stress(points, b)
    np.testing.assert_allclose(stress, expected, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("modes", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_isotropic_limit_matches_williams_k_field(rng, modes):
    K_I, K_II, K_III = modes
    tip = (0.5, -0.25)
    points = annulus(rng, 200, r_min=0.1) + tip
    kwargs = dict(K_I=K_I, K_II=K_II, K_III=K_III, points=points, tip=tip)
    u = crack_displacement(C66=isotropic_stiffness(mu=MU, nu=NU), **kwargs)
    expected = isotropic_crack_displacement(mu=MU, nu=NU, **kwargs)
    np.testing.assert_allclose(u, expected, atol=1e-8 * np.abs(expected).max())


@pytest.mark.parametrize("zener_offset", [0.0, 1e-9, 1e-7, 1e-6, 3e-6, 1e-5, -1e-6])
def test_nearly_isotropic_crystal_is_continuous_across_the_degeneracy(rng, zener_offset):
    """Zener ratio 1 + η: the field differs from the isotropic one by O(η), with no glitch."""
    C11, C12 = 2.0, 1.2
    C = rotate_stiffness(
        cubic_stiffness(C11=C11, C12=C12, C44=(C11 - C12) / 2 * (1 + zener_offset)), EDGE_FRAME
    )
    nu = C12 / (C11 + C12)
    points = annulus(rng, 100)
    b = np.array([1.0, 0.0, 0.6])
    u = dislocation_displacement(C66=C, burgers=b, points=points)
    u -= dislocation_displacement(C66=C, burgers=b, points=[[5.0, 5.0]])
    expected = isotropic_edge_displacement(nu=nu, b=b[0], points=points)
    expected -= isotropic_edge_displacement(nu=nu, b=b[0], points=[[5.0, 5.0]])
    expected += isotropic_screw_displacement(b=b[2], points=points)
    expected -= isotropic_screw_displacement(b=b[2], points=[[5.0, 5.0]])
    assert np.abs(u - expected).max() <= 1e-8 + 3 * abs(zener_offset) * np.abs(expected).max()


# --- dislocations: closure and conventions ------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_jump_across_the_default_cut_is_the_burgers_vector(case):
    C, b = CASES[case]
    x = -np.geomspace(0.5, 50, 8)
    above = dislocation_displacement(C66=C, burgers=b, points=np.column_stack([x, 0 * x + 1e-9]))
    below = dislocation_displacement(C66=C, burgers=b, points=np.column_stack([x, 0 * x - 1e-9]))
    np.testing.assert_allclose(above - below, np.broadcast_to(b, above.shape), atol=1e-8)
    ahead = np.column_stack([-x, 0 * x])
    no_jump = dislocation_displacement(C66=C, burgers=b, points=ahead + (0, 1e-9))
    no_jump -= dislocation_displacement(C66=C, burgers=b, points=ahead - (0, 1e-9))
    np.testing.assert_allclose(no_jump, 0, atol=1e-8)


@pytest.mark.parametrize("cut", [np.pi / 2, -np.pi / 4, 3 * np.pi / 2])
def test_branch_cut_angle_moves_the_jump_and_nothing_else(rng, cut):
    C, b = CASES["mixed"]
    r = np.geomspace(0.5, 50, 8)
    side = 1e-10 / r
    clockwise = np.column_stack([r * np.cos(cut - side), r * np.sin(cut - side)])
    counter = np.column_stack([r * np.cos(cut + side), r * np.sin(cut + side)])
    jump = dislocation_displacement(C66=C, burgers=b, points=clockwise, branch_cut_angle=cut)
    jump -= dislocation_displacement(C66=C, burgers=b, points=counter, branch_cut_angle=cut)
    np.testing.assert_allclose(jump, np.broadcast_to(b, jump.shape), atol=1e-8)

    points = annulus(rng, 200, r_min=0.5)
    moved = dislocation_displacement(C66=C, burgers=b, points=points, branch_cut_angle=cut)
    default = dislocation_displacement(C66=C, burgers=b, points=points)
    theta, cut_wrapped = np.arctan2(points[:, 1], points[:, 0]), np.angle(np.exp(1j * cut))
    swept = (theta > cut_wrapped)[:, None]
    np.testing.assert_allclose(moved - default, np.where(swept, -b, 0.0), atol=1e-12)
    iso = isotropic_edge_displacement(nu=NU, b=1.0, points=points, branch_cut_angle=cut)
    iso -= isotropic_edge_displacement(nu=NU, b=1.0, points=points)
    np.testing.assert_allclose(iso[:, 0], np.where(swept[:, 0], -1.0, 0.0), atol=1e-12)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fs_rh_burgers_circuit_on_a_displaced_lattice(case):
    """Right-handed circuit about ξ = +z in the dislocated grid; b = start − finish (perfect)."""
    C, b = CASES[case]
    spacing = np.where(np.abs(b) > 1e-9, np.abs(b), 1.0)  # b is a grid translation
    n = 10
    ring = [(i, -n) for i in range(-n, n)] + [(n, j) for j in range(-n, n)]
    ring += [(-i, n) for i in range(-n, n)] + [(-n, -j) for j in range(-n, n)]  # ccw
    sites = np.array(ring + ring[:1], dtype=float)
    reference = np.column_stack([sites * spacing[:2], np.zeros(len(sites))])
    center = (0.37 * spacing[0], 0.41 * spacing[1])
    actual = reference + dislocation_displacement(C66=C, burgers=b, points=reference, center=center)
    perfect_steps = np.round(np.diff(actual, axis=0) / spacing) * spacing
    np.testing.assert_allclose(-perfect_steps.sum(axis=0), b, atol=1e-12)


def test_positive_edge_has_its_extra_half_plane_above_the_slip_plane():
    """FS/RH with ξ = +z and b ∥ +x: compression (extra half-plane) at y > 0."""
    C, b = CASES["edge"]
    points = np.array([[0.0, 5.0], [0.0, -5.0]])
    gradient = dislocation_displacement_gradient(C66=C, burgers=b, points=points)
    dilatation = np.trace(gradient, axis1=1, axis2=2)
    assert dilatation[0] < 0 < dilatation[1]
    sigma = dislocation_stress(C66=C, burgers=b, points=points)
    assert sigma[0, 0, 0] < 0 < sigma[1, 0, 0]
    assert isotropic_edge_stress(points, 1.0)[0, 0, 0] < 0


# --- dislocations: equilibrium and consistency --------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_dislocation_gradient_is_the_derivative_of_the_displacement(rng, case):
    C, b = CASES[case]
    points = annulus(rng, 100, avoid_angle=np.pi)  # finite differences must not straddle the cut
    gradient = dislocation_displacement_gradient(C66=C, burgers=b, points=points)
    fd = central_difference(lambda p: dislocation_displacement(C66=C, burgers=b, points=p), points)
    np.testing.assert_allclose(gradient[:, :, :2], fd, atol=1e-8)
    np.testing.assert_array_equal(gradient[:, :, 2], 0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_dislocation_stress_is_hooke_of_the_gradient_and_divergence_free(rng, case):
    C, b = CASES[case]
    points = annulus(rng, 100)
    sigma = dislocation_stress(C66=C, burgers=b, points=points)
    gradient = dislocation_displacement_gradient(C66=C, burgers=b, points=points)
    scale = np.abs(sigma).max()
    np.testing.assert_allclose(sigma, hooke(C, gradient), atol=1e-12 * scale)
    np.testing.assert_allclose(sigma, sigma.transpose(0, 2, 1), atol=1e-15 * scale)
    d_sigma = central_difference(lambda p: dislocation_stress(C66=C, burgers=b, points=p), points)
    divergence = d_sigma[:, :, 0, 0] + d_sigma[:, :, 1, 1]
    r = np.linalg.norm(points, axis=1)[:, None]
    assert np.abs(divergence * r).max() < 1e-6 * scale


def test_dislocation_exerts_no_net_force_on_a_circuit():
    """∮ σ·n ds = 0 for D = Bᵀb (a line force would leave ∮ σ·n ds = −f)."""
    C = rotate_stiffness(CU, random_rotation(np.random.default_rng(7)))
    b = np.array([1.0, -0.5, 2.0])
    theta = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    normals = np.column_stack([np.cos(theta), np.sin(theta), 0 * theta])
    sigma = dislocation_stress(C66=C, burgers=b, points=4.0 * normals)
    traction = np.einsum("nij,nj->ni", sigma, normals) * 4.0 * (2 * np.pi / len(theta))
    assert np.abs(traction.sum(axis=0)).max() < 1e-12 * np.abs(traction).sum()


def test_dislocation_field_is_translation_covariant_and_reads_only_xy(rng):
    C, b = CASES["mixed"]
    points = annulus(rng, 20)
    center = np.array([1.5, -2.0, 7.0])
    shifted = np.column_stack([points + center[:2], rng.normal(size=20)])
    np.testing.assert_allclose(
        dislocation_displacement(C66=C, burgers=b, points=shifted, center=center),
        dislocation_displacement(C66=C, burgers=b, points=points),
        atol=1e-13,
    )


def test_points_on_the_line_are_rejected():
    C, b = CASES["edge"]
    with pytest.raises(ValueError, match="singular center"):
        dislocation_stress(C66=C, burgers=b, points=[[1.0, 2.0], [3.0, 4.0]], center=(3.0, 4.0))
    with pytest.raises(ValueError, match=r"\(n, 2\) or \(n, 3\)"):
        dislocation_displacement(C66=C, burgers=b, points=[1.0, 2.0])
    with pytest.raises(ValueError, match="burgers"):
        dislocation_displacement(C66=C, burgers=[1.0, 2.0], points=[[1.0, 2.0]])


# --- crack-tip K field --------------------------------------------------------------------------

K = dict(K_I=0.4, K_II=-0.15, K_III=0.1)  # eV/Å^2.5


@pytest.mark.parametrize(
    "C",
    [CU_EDGE, rotate_stiffness(CU, frame([1, 0, 0], [0, 1, 1], [0, -1, 1]))],
    ids=["x110_y-111", "x100_y011"],
)
def test_k_field_ahead_of_the_tip_is_k_over_root_two_pi_r(C):
    r = np.geomspace(0.1, 100, 7)
    sigma = crack_stress(C66=C, **K, points=np.column_stack([r, 0 * r]))
    expected = (
        np.array([K["K_II"], K["K_I"], K["K_III"]])[None, :] / np.sqrt(2 * np.pi * r)[:, None]
    )
    np.testing.assert_allclose(sigma[:, :, 1], expected, rtol=1e-12, atol=1e-14)
    mode_I = crack_stress(C66=C, K_I=1.0, points=np.column_stack([r, 0 * r]))
    np.testing.assert_allclose(mode_I[:, 1, 1], 1.0 / np.sqrt(2 * np.pi * r), rtol=1e-12)


def test_k_field_crack_faces_are_traction_free():
    x = -np.geomspace(0.1, 100, 9)
    for side in (1.0, -1.0):
        points = np.column_stack([x, side * 1e-10 * np.abs(x)])
        traction = crack_stress(C66=CU_EDGE, **K, points=points)[:, :, 1]
        scale = max(K.values()) / np.sqrt(2 * np.pi * np.abs(x))[:, None]
        assert np.all(np.abs(traction) < 1e-8 * scale)
    opening = crack_displacement(C66=CU_EDGE, K_I=1.0, points=[[-5.0, 1e-12], [-5.0, -1e-12]])
    assert opening[0, 1] > 0 > opening[1, 1]


def test_k_field_scales_as_root_r_and_is_consistent(rng):
    C = CU_EDGE
    points = annulus(rng, 100, r_min=0.5, avoid_angle=np.pi) + (2.0, 1.0)
    tip = (2.0, 1.0)
    u = crack_displacement(C66=C, **K, points=points, tip=tip)
    u4 = crack_displacement(C66=C, **K, points=4 * (points - tip) + tip, tip=tip)
    np.testing.assert_allclose(u4, 2 * u, atol=1e-12)
    assert np.all(crack_displacement(C66=C, **K, points=[tip], tip=tip) == 0.0)

    gradient = crack_displacement_gradient(C66=C, **K, points=points, tip=tip)
    fd = central_difference(lambda p: crack_displacement(C66=C, **K, points=p, tip=tip), points)
    np.testing.assert_allclose(gradient[:, :, :2], fd, atol=1e-8)
    sigma = crack_stress(C66=C, **K, points=points, tip=tip)
    scale = np.abs(sigma).max()
    np.testing.assert_allclose(sigma, hooke(C, gradient), atol=1e-12 * scale)
    d_sigma = central_difference(lambda p: crack_stress(C66=C, **K, points=p, tip=tip), points)
    divergence = d_sigma[:, :, 0, 0] + d_sigma[:, :, 1, 1]
    assert np.abs(divergence).max() < 1e-6 * scale
