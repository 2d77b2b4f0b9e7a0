"""Constitutive laws on plain arrays: ``law(F) -> (W, P, A)``.

A law is any callable taking a batch of deformation gradients and returning the energy
density, the first Piola–Kirchhoff stress and the tangent. This is how the Cauchy–Born law of
an MLIP reaches the continuum without the continuum importing torch.

======================================  ==================================================
equation                                code
======================================  ==================================================
``W(F)``, eV/Å³                          ``W``, shape ``(n,)``
``P_iJ = ∂W/∂F_iJ``, eV/Å³               ``P``, shape ``(n, 3, 3)``
``A_iJkL = ∂P_iJ/∂F_kL``, eV/Å³          ``A``, shape ``(n, 3, 3, 3, 3)``
``ε = sym(F − I)``                       :class:`LinearElasticLaw` (small strain)
``W = ½ ε:C:ε``, ``P = C:ε``, ``A = C``  :class:`LinearElasticLaw`
======================================  ==================================================

Voigt order is ``xx, yy, zz, yz, xz, xy`` with engineering shear strains, so a 6×6 stiffness
``C66`` maps ``(ε_xx, ε_yy, ε_zz, 2ε_yz, 2ε_xz, 2ε_xy)`` to ``(σ_xx, …, σ_xy)``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = [
    "ConstitutiveLaw",
    "LinearElasticLaw",
    "isotropic_stiffness",
    "rotate_voigt",
    "stiffness_tensor",
    "voigt_matrix",
]

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# _VOIGT_INDEX[i, j] is the Voigt index of the tensor pair (i, j)
_VOIGT_INDEX = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])


class ConstitutiveLaw(Protocol):
    """Hyperelastic law evaluated on a batch of deformation gradients."""

    def __call__(self, F: np.ndarray, /) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy density, first Piola stress and tangent.

        Args:
            F: deformation gradients, shape ``(n, 3, 3)``, float64.

        Returns:
            ``W`` ``(n,)``, ``P`` ``(n, 3, 3)`` and ``A`` ``(n, 3, 3, 3, 3)``, all in eV/Å³,
            with ``A[n, i, J, k, L] = ∂P_iJ/∂F_kL``.
        """
        ...


def _check_c66(C66: np.ndarray) -> np.ndarray:
    C = np.asarray(C66, dtype=np.float64)
    if C.shape != (6, 6) or not np.all(np.isfinite(C)):
        raise ValueError(f"a Voigt stiffness must be a finite 6×6 array, got shape {C.shape}")
    if not np.allclose(C, C.T, rtol=1e-10, atol=1e-12 * np.abs(C).max()):
        raise ValueError("the Voigt stiffness must be symmetric (major symmetry)")
    return C


def stiffness_tensor(C66: np.ndarray) -> np.ndarray:
    """Fourth-order stiffness ``C_ijkl`` from a 6×6 Voigt matrix.

    Args:
        C66: Voigt stiffness, shape ``(6, 6)``, eV/Å³ (order ``xx, yy, zz, yz, xz, xy``).

    Returns:
        ``C_ijkl`` of shape ``(3, 3, 3, 3)`` with minor and major symmetries, eV/Å³.
    """
    C = _check_c66(C66)
    return C[_VOIGT_INDEX[:, :, None, None], _VOIGT_INDEX[None, None, :, :]]


def voigt_matrix(C: np.ndarray) -> np.ndarray:
    """6×6 Voigt matrix of a fourth-order tensor, averaged over its minor symmetries.

    Args:
        C: tensor of shape ``(3, 3, 3, 3)``, eV/Å³.

    Returns:
        Voigt matrix of shape ``(6, 6)``, eV/Å³.
    """
    C = np.asarray(C, dtype=np.float64)
    if C.shape != (3, 3, 3, 3):
        raise ValueError(f"expected a (3, 3, 3, 3) tensor, got shape {C.shape}")
    sym = 0.25 * (C + C.transpose(1, 0, 2, 3) + C.transpose(0, 1, 3, 2) + C.transpose(1, 0, 3, 2))
    a, b = np.array(VOIGT_PAIRS).T
    return sym[a[:, None], b[:, None], a[None, :], b[None, :]]


def rotate_voigt(C66: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Rotate a Voigt stiffness into the frame ``x' = R x``.

    ``C'_ijkl = R_ia R_jb R_kc R_ld C_abcd``.

    Args:
        C66: Voigt stiffness in the original frame, shape ``(6, 6)``, eV/Å³.
        R: orthogonal matrix, shape ``(3, 3)``.

    Returns:
        Rotated Voigt stiffness, shape ``(6, 6)``, eV/Å³.

    Raises:
        ValueError: ``R`` is not orthogonal.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape != (3, 3) or not np.allclose(R @ R.T, np.eye(3), atol=1e-10):
        raise ValueError("R must be an orthogonal 3×3 matrix")
    C = stiffness_tensor(C66)
    return voigt_matrix(np.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, C, optimize=True))


def isotropic_stiffness(
    *,
    E: float | None = None,
    nu: float | None = None,
    lam: float | None = None,
    mu: float | None = None,
) -> np.ndarray:
    """Isotropic Voigt stiffness from any two of ``E``, ``nu``, ``lam``, ``mu``.

    Args:
        E: Young's modulus, eV/Å³.
        nu: Poisson's ratio (dimensionless).
        lam: first Lamé parameter λ, eV/Å³.
        mu: shear modulus μ, eV/Å³.

    Returns:
        Voigt stiffness, shape ``(6, 6)``, eV/Å³.

    Raises:
        ValueError: not exactly two parameters given, or an unsupported pair.
    """
    given = {k for k, v in {"E": E, "nu": nu, "lam": lam, "mu": mu}.items() if v is not None}
    if len(given) != 2:
        raise ValueError(f"give exactly two of E, nu, lam, mu; got {sorted(given) or 'none'}")
    # exactly two are given: each branch is one pair
    if E is not None and nu is not None:
        lame, shear = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    elif E is not None and mu is not None:
        lame, shear = mu * (E - 2 * mu) / (3 * mu - E), mu
    elif mu is not None and nu is not None:
        lame, shear = 2 * mu * nu / (1 - 2 * nu), mu
    elif lam is not None and nu is not None:
        lame, shear = lam, lam * (1 - 2 * nu) / (2 * nu)
    elif lam is not None and mu is not None:
        lame, shear = lam, mu
    else:  # E and lam
        raise ValueError("the pair (E, lam) is not supported; give E with nu or mu")
    C = np.zeros((6, 6))
    C[:3, :3] = lame
    C[np.arange(3), np.arange(3)] = lame + 2 * shear
    C[np.arange(3, 6), np.arange(3, 6)] = shear
    return C


class LinearElasticLaw:
    """Small-strain linear elasticity: ``W = ½ ε:C:ε`` with ``ε = sym(F − I)``.

    The stress ``P = C:ε`` is symmetric and the tangent ``A = C`` is constant, so the law is
    exact for the linear-elastic reference solutions the tests compare against.

    Args:
        C: Voigt stiffness, shape ``(6, 6)``, eV/Å³ (order ``xx, yy, zz, yz, xz, xy``).
    """

    def __init__(self, C: np.ndarray) -> None:
        self.C66 = _check_c66(C)
        self.C = stiffness_tensor(self.C66)

    def __call__(self, F: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy density, stress and tangent for a batch ``F`` of shape ``(n, 3, 3)``.

        Returns:
            ``W`` ``(n,)``, ``P`` ``(n, 3, 3)``, ``A`` ``(n, 3, 3, 3, 3)``, eV/Å³.
        """
        F = np.asarray(F, dtype=np.float64)
        if F.ndim != 3 or F.shape[1:] != (3, 3):
            raise ValueError(f"F must have shape (n, 3, 3), got {F.shape}")
        H = F - np.eye(3)
        eps = 0.5 * (H + H.transpose(0, 2, 1))
        P = np.einsum("ijkl,nkl->nij", self.C, eps, optimize=True)
        W = 0.5 * np.einsum("nij,nij->n", P, eps)
        A = np.broadcast_to(self.C, (F.shape[0], 3, 3, 3, 3))
        return W, P, A
