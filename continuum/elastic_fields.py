"""Anisotropic linear-elastic (CLE) fields of straight dislocations and crack tips, for 2.5D.

These fields are the Dirichlet data and initial guesses of 2.5D problems: the mesh lies in the
``x``–``y`` plane, the displacement has three components, nothing depends on ``z``, and the
dislocation line or crack front runs along ``z``. All quantities are expressed in the frame of
the stiffness ``C66``: rotate a crystal's stiffness into the problem frame first with
:func:`rotate_stiffness`, and give Burgers vectors and points in that same frame.

Stroh sextic formalism (Ting, *Anisotropic Elasticity*, 1996, ch. 5 and 8):

======================================================  =======================================
equation                                                code
======================================================  =======================================
``Q_ik = C_i1k1,  R_ik = C_i1k2,  T_ik = C_i2k2``        ``_stroh_blocks``
``N [a; b] = p [a; b]``, ``N = [[-T⁻¹Rᵀ, T⁻¹],``         ``_stroh_blocks``, ``stroh``
``[R T⁻¹ Rᵀ - Q, -R T⁻¹]]``, keep ``Im p > 0``
``b = (Rᵀ + p T) a``,  ``2 a_α·b_α = 1``                 ``stroh`` (columns of ``A``, ``B``)
``z_α = x + p_α y``                                      ``_z``
dislocation ``u = (1/π) Im[A ⟨ln z_α⟩ Bᵀ b]``            ``dislocation_displacement``
dislocation ``φ = (1/π) Im[B ⟨ln z_α⟩ Bᵀ b]``            ``dislocation_stress``
crack ``u = √(2/π) Re[A ⟨√z_α⟩ B⁻¹ k]``                  ``crack_displacement``
crack ``φ = √(2/π) Re[B ⟨√z_α⟩ B⁻¹ k]``                  ``crack_stress``
``σ_i1 = -∂φ_i/∂y,  σ_i2 = ∂φ_i/∂x``                     ``_stress``
``σ_33 = C_33kl ε_kl``  (``ε_33 = 0``, generalised       ``_stress``
plane strain)
======================================================  =======================================

The dislocation coefficients are ``D = Bᵀ b``. Then the orthogonality relations
``A Bᵀ + Ā B̄ᵀ = I`` and ``B Bᵀ + B̄ B̄ᵀ = 0`` give a displacement jump of exactly ``b`` and a
zero net force (``∮ dφ = 0``) on every circuit around the line. The crack vector is
``k = (K_II, K_I, K_III)``, which makes ``σ_2j(r, θ=0) = k_j / √(2πr)`` ahead of the tip. The
crack faces (``y = 0``, ``x < 0``) are traction-free, because ``φ = 0`` there.

Conventions:

- Voigt order is ``xx, yy, zz, yz, xz, xy``, with no factors on the shear rows.
- The dislocation line sense is ``ξ = +z``. The Burgers vector follows the FS/RH convention:
  close a right-handed circuit about ``ξ`` (counter-clockwise in the ``x``–``y`` plane) in the
  dislocated crystal; ``b`` then points from the finish to the start of the same circuit in
  the perfect crystal. In terms of the field this means ``b = ∮ du`` counter-clockwise. An
  edge dislocation with ``b ∥ +x`` therefore has its extra half-plane at ``y > 0``
  (``σ_xx < 0`` there), and a screw with ``b ∥ +z`` is right-handed.
- Branch cut: ``u`` jumps by ``b`` across the ray from the centre at angle
  ``branch_cut_angle``, with ``u(θ_c⁻) - u(θ_c⁺) = b`` (``θ_c⁻`` is the clockwise side). The
  default ``π`` puts the cut on the slip plane ``y = 0, x < 0``. There
  ``u(x, 0⁺) - u(x, 0⁻) = b``: the crystal at ``x < 0`` has slipped, as if the dislocation
  had glided in from ``x = -∞``. The cut only decides where the jump sits. The extra
  half-plane is set by ``b`` and ``ξ``. With ``branch_cut_angle = π/2`` and ``b ∥ +x``, the
  jump opens a gap of width ``b`` along ``+y`` that the extra half-plane fills. Moving the cut
  changes ``u`` by ``-b`` in the swept sector and leaves it unchanged elsewhere. Points
  exactly on the cut take the value on the clockwise side (the upper face for the default).
- Constant of integration: the anisotropic dislocation field vanishes at ``center + (1 Å, 0)``
  for the default cut. The classic isotropic edge form differs from it by a rigid translation:
  ``isotropic_edge_displacement - dislocation_displacement = (0, -b/(8π(1-ν)), 0)``. The screw
  forms agree exactly.
- Crack: the tip is at ``tip``, the crack occupies ``y = 0, x < 0`` and the front runs along
  ``+z``. ``u(tip) = 0``.
- Units: lengths in Å, stiffness and stress in eV/Å³, ``K`` in eV/Å^2.5. Multiply a value in
  MPa√m by :data:`MPA_SQRT_M_TO_EV_PER_A2_5` to get eV/Å^2.5. The conversion is
  1 MPa√m = 10⁶ J/m³ · 10⁵ Å^½ = 10¹¹ / (1.602176634 × 10¹¹) eV/Å^2.5 = 0.62415 eV/Å^2.5.

Degenerate stiffnesses: for an isotropic material, and for one that is transversely isotropic
about ``z``, ``N`` is not diagonalisable (``p = i`` is repeated), so ``A`` and ``B`` do not
exist. :func:`stroh` detects this when two ``p_α`` lie closer than ``degeneracy_tol``
(relative). It then solves the problem for the in-plane shear ``C66[5, 5]`` scaled by
``1 + ε`` and by ``1 - ε`` (``ε = perturbation``), and the fields average the two solutions.
The average cancels the first-order error and leaves an error of order ``ε²``. With the
defaults, displacements and stresses are accurate to better than 1e-9 (relative) on both sides
of the threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import ArrayLike

from continuum.laws import isotropic_stiffness, rotate_voigt, stiffness_tensor

__all__ = [
    "MPA_SQRT_M_TO_EV_PER_A2_5",
    "StrohError",
    "StrohSolution",
    "crack_displacement",
    "crack_displacement_gradient",
    "crack_stress",
    "cubic_stiffness",
    "dislocation_displacement",
    "dislocation_displacement_gradient",
    "dislocation_stress",
    "isotropic_crack_displacement",
    "isotropic_edge_displacement",
    "isotropic_screw_displacement",
    "isotropic_stiffness",
    "rotate_stiffness",
    "stiffness_tensor",
    "stroh",
]

#: Multiply a stress intensity factor in MPa√m by this to get eV/Å^2.5 (1 eV = 1.602176634e-19 J).
MPA_SQRT_M_TO_EV_PER_A2_5 = 1e11 / 1.602176634e11


class StrohError(ValueError):
    """A stiffness whose Stroh eigenproblem cannot be solved.

    Raised when the stiffness is not symmetric positive definite, or is degenerate in a way
    that the in-plane shear perturbation does not resolve.
    """


@dataclass(frozen=True, kw_only=True)
class StrohSolution:
    """Eigen-solution of the Stroh sextic problem for one stiffness.

    Attributes:
        p: ``(3,)`` complex Stroh eigenvalues with ``Im p > 0``, sorted by real then imaginary
            part.
        A: ``(3, 3)`` complex; column ``α`` is the displacement eigenvector ``a_α``.
        B: ``(3, 3)`` complex; column ``α`` is the traction eigenvector
            ``b_α = (Rᵀ + p_α T) a_α`` in eV/Å³, normalised so that ``Bᵀ A + Aᵀ B = I``.
        stiffness: ``(6, 6)`` Voigt stiffness (eV/Å³) that ``p``, ``A`` and ``B`` solve. This is
            the input, or its perturbed copy when the input is degenerate.
        companion: for a degenerate input, the solution for the opposite perturbation. The
            field functions average the two. ``None`` otherwise.
    """

    p: np.ndarray
    A: np.ndarray
    B: np.ndarray
    stiffness: np.ndarray
    companion: StrohSolution | None = None


def cubic_stiffness(*, C11: float, C12: float, C44: float) -> np.ndarray:
    """Return the ``(6, 6)`` Voigt stiffness of a cubic crystal in its cubic axes.

    Args:
        C11: ``C_xxxx`` (any stress unit; eV/Å³ for the field functions).
        C12: ``C_xxyy``, same unit.
        C44: ``C_yzyz``, same unit.
    """
    C66 = np.zeros((6, 6))
    C66[:3, :3] = C12
    C66[[0, 1, 2], [0, 1, 2]] = C11
    C66[[3, 4, 5], [3, 4, 5]] = C44
    return C66


def rotate_stiffness(C66: ArrayLike, R: ArrayLike, *, allow_reflection: bool = False) -> np.ndarray:
    """Express a Voigt stiffness in the rotated frame ``x' = R x``.

    ``C'_ijkl = R_ia R_jb R_kc R_ld C_abcd``. The rows of ``R`` are the new axes written in the
    old frame, as unit vectors. For an fcc edge dislocation on (−111), for example, the rows are
    ``[1, 1, 0]/√2``, ``[-1, 1, 1]/√3`` and ``[1, -1, 2]/√6``.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the old frame.
        R: ``(3, 3)`` orthogonal matrix; rows are the new unit axes.
        allow_reflection: accept ``det R = -1``. A stiffness is centrosymmetric, so a
            reflection ``R`` gives the same result as the rotation ``-R``. A left-handed frame,
            however, reverses the line sense ``ξ = +z`` relative to the crystal, and with it the
            sign of every Burgers vector, so it is refused by default.

    Returns:
        ``(6, 6)`` Voigt stiffness (eV/Å³) in the new frame.

    Raises:
        ValueError: if ``R`` is not orthogonal to 1e-8 (rows not unit or not orthogonal),
            or is a reflection and ``allow_reflection`` is false.
    """
    R = _as_matrix(R, (3, 3), "R")
    if not np.allclose(R @ R.T, np.eye(3), rtol=0.0, atol=1e-8):
        raise ValueError(
            f"R must be orthogonal with unit rows (the new axes), got R @ R.T = {R @ R.T!r}; "
            "normalise Miller rows with R / np.linalg.norm(R, axis=1, keepdims=True)"
        )
    if np.linalg.det(R) < 0.0 and not allow_reflection:
        raise ValueError(
            "R is a reflection (det R = -1): its rows form a left-handed frame; "
            "use z = x × y, or pass allow_reflection=True"
        )
    return rotate_voigt(_as_matrix(C66, (6, 6), "C66"), R)


def stroh(
    C66: ArrayLike, *, degeneracy_tol: float = 1e-3, perturbation: float = 3e-5
) -> StrohSolution:
    """Solve the Stroh sextic eigenproblem for a 2D (``z``-independent) anisotropic solid.

    Args:
        C66: ``(6, 6)`` symmetric positive definite Voigt stiffness (eV/Å³) in the problem
            frame.
        degeneracy_tol: when two eigenvalues satisfy ``|p_α - p_β| < degeneracy_tol · max|p|``,
            the stiffness is treated as degenerate (see the module notes). Just above this
            separation the direct solution is accurate to about 1e-9.
        perturbation: relative change ``ε`` of ``C66[5, 5]`` for degenerate stiffnesses. It
            must stay well above the anisotropy that ``degeneracy_tol`` lets through. For a
            cubic crystal that is a Zener-ratio offset of about ``2 · degeneracy_tol²``.

    Returns:
        The solution. For a degenerate stiffness it belongs to ``C66[5, 5]·(1 + ε)``, and its
        ``companion`` to ``C66[5, 5]·(1 - ε)``.

    Raises:
        StrohError: if ``C66`` is not symmetric positive definite, or the perturbed problem is
            still degenerate.
    """
    C66 = _check_stiffness(C66)
    p, vectors = _upper_eigenpairs(_stroh_blocks(C66)[0])
    if _separation(p) >= degeneracy_tol:
        return _solve_stroh(C66, p, vectors)
    branches = []
    for sign in (1.0, -1.0):
        perturbed = C66.copy()
        perturbed[5, 5] *= 1.0 + sign * perturbation
        p, vectors = _upper_eigenpairs(_stroh_blocks(perturbed)[0])
        if _separation(p) < 0.1 * degeneracy_tol:
            raise StrohError(
                f"degenerate Stroh eigenvalues p = {p} persist after perturbing C66[5, 5] "
                f"by {sign * perturbation:+g}; this stiffness is not supported"
            )
        branches.append(_solve_stroh(perturbed, p, vectors))
    return replace(branches[0], companion=branches[1])


def dislocation_displacement(
    *,
    C66: ArrayLike,
    burgers: ArrayLike,
    points: ArrayLike,
    center: ArrayLike = (0.0, 0.0),
    branch_cut_angle: float = np.pi,
) -> np.ndarray:
    """Displacement of a straight dislocation along ``z``: ``u = (1/π) Im[A ⟨ln z_α⟩ Bᵀ b]``.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the problem frame.
        burgers: ``(3,)`` Burgers vector (Å), FS/RH with ``ξ = +z`` (``b = ∮ du``
            counter-clockwise).
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å); only ``x`` and ``y`` are used.
        center: ``(2,)`` or ``(3,)`` position of the line (Å).
        branch_cut_angle: angle (rad, from ``+x``) of the ray from ``center`` on which ``u``
            jumps by ``b``: ``u(θ_c⁻) - u(θ_c⁺) = b``. The default ``π`` is the slip plane
            ``y = 0, x < 0``. The cut does not move the extra half-plane, which for
            ``b ∥ +x`` lies at ``y > 0``.

    Returns:
        ``(n, 3)`` displacement (Å).

    Raises:
        ValueError: for malformed input, or a point on the line itself.
    """
    b = _as_vector(burgers, "burgers")
    xy = _relative_points(points, center, "center", allow_origin=False)
    # Principal ln z_α jumps on the ray θ = π for every α (Im p > 0). Subtracting 2πi past the
    # cut angle moves the jump to θ_c while keeping one continuous branch everywhere else.
    past_cut = 2j * np.pi * _past_cut(xy, branch_cut_angle)[:, None]

    def field(s: StrohSolution) -> np.ndarray:
        log_z = np.log(_z(s, xy)) - past_cut
        return _combine(s.A, log_z, s.B.T @ b).imag / np.pi

    return _average(stroh(C66), field)


def dislocation_displacement_gradient(
    *,
    C66: ArrayLike,
    burgers: ArrayLike,
    points: ArrayLike,
    center: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Displacement gradient ``∂u_i/∂x_j`` of :func:`dislocation_displacement`.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the problem frame.
        burgers: ``(3,)`` Burgers vector (Å), FS/RH with ``ξ = +z``.
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å).
        center: ``(2,)`` or ``(3,)`` position of the line (Å).

    Returns:
        ``(n, 3, 3)`` dimensionless gradient; the ``j = z`` column is zero. It is independent
        of the branch cut.
    """
    b = _as_vector(burgers, "burgers")
    xy = _relative_points(points, center, "center", allow_origin=False)

    def field(s: StrohSolution) -> np.ndarray:
        return _gradient(s, 1.0 / _z(s, xy), s.B.T @ b).imag / np.pi

    return _average(stroh(C66), field)


def dislocation_stress(
    *,
    C66: ArrayLike,
    burgers: ArrayLike,
    points: ArrayLike,
    center: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Cauchy stress of a straight dislocation along ``z``, from the Stroh stress function.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the problem frame.
        burgers: ``(3,)`` Burgers vector (Å), FS/RH with ``ξ = +z``.
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å).
        center: ``(2,)`` or ``(3,)`` position of the line (Å).

    Returns:
        ``(n, 3, 3)`` symmetric stress (eV/Å³).
    """
    b = _as_vector(burgers, "burgers")
    xy = _relative_points(points, center, "center", allow_origin=False)

    def field(s: StrohSolution) -> np.ndarray:
        derivative = 1.0 / _z(s, xy)
        coefficients = s.B.T @ b
        gradient = _gradient(s, derivative, coefficients).imag / np.pi
        return _stress(s, derivative, coefficients, gradient, lambda w: w.imag / np.pi)

    return _average(stroh(C66), field)


def crack_displacement(
    *,
    C66: ArrayLike,
    K_I: float = 0.0,
    K_II: float = 0.0,
    K_III: float = 0.0,
    points: ArrayLike,
    tip: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Anisotropic near-tip K field of a semi-infinite crack: ``u = √(2/π) Re[A⟨√z_α⟩B⁻¹k]``.

    The crack lies on ``y = 0, x < 0`` relative to ``tip``, and its front runs along ``z``.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the crack frame.
        K_I: opening-mode stress intensity factor (eV/Å^2.5), ``σ_yy = K_I/√(2πr)`` ahead of
            the tip. Convert from MPa√m with :data:`MPA_SQRT_M_TO_EV_PER_A2_5`.
        K_II: in-plane shear mode (eV/Å^2.5), ``σ_xy = K_II/√(2πr)`` ahead of the tip.
        K_III: anti-plane shear mode (eV/Å^2.5), ``σ_yz = K_III/√(2πr)`` ahead of the tip.
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å); only ``x`` and ``y`` are used.
        tip: ``(2,)`` or ``(3,)`` position of the crack front (Å).

    Returns:
        ``(n, 3)`` displacement (Å), zero at the tip. Points exactly on the crack faces
        (``y = 0``, ``x < 0``) take the upper-face value.
    """
    k = np.array([K_II, K_I, K_III], dtype=float)
    xy = _relative_points(points, tip, "tip", allow_origin=True)

    def field(s: StrohSolution) -> np.ndarray:
        root_z = np.sqrt(_z(s, xy))
        return np.sqrt(2.0 / np.pi) * _combine(s.A, root_z, np.linalg.solve(s.B, k)).real

    return _average(stroh(C66), field)


def crack_displacement_gradient(
    *,
    C66: ArrayLike,
    K_I: float = 0.0,
    K_II: float = 0.0,
    K_III: float = 0.0,
    points: ArrayLike,
    tip: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Displacement gradient ``∂u_i/∂x_j`` of :func:`crack_displacement`.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the crack frame.
        K_I: opening-mode stress intensity factor (eV/Å^2.5).
        K_II: in-plane shear mode (eV/Å^2.5).
        K_III: anti-plane shear mode (eV/Å^2.5).
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å), none at the tip.
        tip: ``(2,)`` or ``(3,)`` position of the crack front (Å).

    Returns:
        ``(n, 3, 3)`` dimensionless gradient; the ``j = z`` column is zero.
    """
    k = np.array([K_II, K_I, K_III], dtype=float)
    xy = _relative_points(points, tip, "tip", allow_origin=False)

    def field(s: StrohSolution) -> np.ndarray:
        derivative = 0.5 / np.sqrt(_z(s, xy))
        return np.sqrt(2.0 / np.pi) * _gradient(s, derivative, np.linalg.solve(s.B, k)).real

    return _average(stroh(C66), field)


def crack_stress(
    *,
    C66: ArrayLike,
    K_I: float = 0.0,
    K_II: float = 0.0,
    K_III: float = 0.0,
    points: ArrayLike,
    tip: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Cauchy stress of the anisotropic K field of :func:`crack_displacement`.

    Args:
        C66: ``(6, 6)`` Voigt stiffness (eV/Å³) in the crack frame.
        K_I: opening-mode stress intensity factor (eV/Å^2.5).
        K_II: in-plane shear mode (eV/Å^2.5).
        K_III: anti-plane shear mode (eV/Å^2.5).
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å), none at the tip.
        tip: ``(2,)`` or ``(3,)`` position of the crack front (Å).

    Returns:
        ``(n, 3, 3)`` symmetric stress (eV/Å³).
    """
    k = np.array([K_II, K_I, K_III], dtype=float)
    xy = _relative_points(points, tip, "tip", allow_origin=False)
    scale = np.sqrt(2.0 / np.pi)

    def field(s: StrohSolution) -> np.ndarray:
        derivative = 0.5 / np.sqrt(_z(s, xy))
        coefficients = np.linalg.solve(s.B, k)
        gradient = scale * _gradient(s, derivative, coefficients).real
        return _stress(s, derivative, coefficients, gradient, lambda w: scale * w.real)

    return _average(stroh(C66), field)


def isotropic_edge_displacement(
    *,
    nu: float,
    b: float,
    points: ArrayLike,
    center: ArrayLike = (0.0, 0.0),
    branch_cut_angle: float = np.pi,
) -> np.ndarray:
    """Volterra edge dislocation in an isotropic solid (Hirth & Lothe, eq. 3-45).

    ``u_x = b/(2π) [θ + xy / (2(1-ν) r²)]``,
    ``u_y = -b/(2π) [(1-2ν)/(4(1-ν)) ln r² + (x²-y²) / (4(1-ν) r²)]``, with ``b ∥ +x``,
    ``ξ = +z`` and the cut convention of the module (``θ ∈ (θ_c - 2π, θ_c]``). The shear
    modulus does not enter. ``r`` is in Å, so the additive constant depends on that unit.

    Args:
        nu: Poisson's ratio, in ``(-1, 1/2)``.
        b: signed Burgers vector length along ``+x`` (Å).
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å).
        center: ``(2,)`` or ``(3,)`` position of the line (Å).
        branch_cut_angle: angle (rad) of the ray on which ``u_x`` jumps by ``b``.

    Returns:
        ``(n, 3)`` displacement (Å), ``u_z = 0``.
    """
    _check_poisson(nu)
    xy = _relative_points(points, center, "center", allow_origin=False)
    x, y = xy.T
    r2 = x * x + y * y
    scale, f = b / (2 * np.pi), 1 / (4 * (1 - nu))
    u = np.zeros((len(xy), 3))
    u[:, 0] = scale * (_angle_with_cut(xy, branch_cut_angle) + 2 * f * x * y / r2)
    u[:, 1] = -scale * ((1 - 2 * nu) * f * np.log(r2) + f * (x * x - y * y) / r2)
    return u


def isotropic_screw_displacement(
    *,
    b: float,
    points: ArrayLike,
    center: ArrayLike = (0.0, 0.0),
    branch_cut_angle: float = np.pi,
) -> np.ndarray:
    """Volterra screw dislocation in an isotropic solid: ``u_z = b θ / (2π)``.

    Args:
        b: signed Burgers vector length along ``+z`` (Å); ``b > 0`` is right-handed.
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å).
        center: ``(2,)`` or ``(3,)`` position of the line (Å).
        branch_cut_angle: angle (rad) of the ray on which ``u_z`` jumps by ``b``.

    Returns:
        ``(n, 3)`` displacement (Å), with ``u_x = u_y = 0``.
    """
    xy = _relative_points(points, center, "center", allow_origin=False)
    u = np.zeros((len(xy), 3))
    u[:, 2] = b / (2 * np.pi) * _angle_with_cut(xy, branch_cut_angle)
    return u


def isotropic_crack_displacement(
    *,
    mu: float,
    nu: float,
    K_I: float = 0.0,
    K_II: float = 0.0,
    K_III: float = 0.0,
    points: ArrayLike,
    tip: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Williams near-tip K field in an isotropic solid under plane strain (``κ = 3 - 4ν``).

    With ``c = √(r/(2π)) / (2μ)`` and ``θ ∈ (-π, π]``:
    ``u_x = c [K_I cos(θ/2)(κ-1+2 sin²(θ/2)) + K_II sin(θ/2)(κ+1+2 cos²(θ/2))]``,
    ``u_y = c [K_I sin(θ/2)(κ+1-2 cos²(θ/2)) - K_II cos(θ/2)(κ-1-2 sin²(θ/2))]``,
    ``u_z = 4 c K_III sin(θ/2)``.

    Args:
        mu: shear modulus (eV/Å³).
        nu: Poisson's ratio, in ``(-1, 1/2)``.
        K_I: opening-mode stress intensity factor (eV/Å^2.5).
        K_II: in-plane shear mode (eV/Å^2.5).
        K_III: anti-plane shear mode (eV/Å^2.5).
        points: ``(n, 2)`` or ``(n, 3)`` positions (Å).
        tip: ``(2,)`` or ``(3,)`` position of the crack front (Å).

    Returns:
        ``(n, 3)`` displacement (Å), zero at the tip.
    """
    _check_shear_modulus(mu)
    _check_poisson(nu)
    xy = _relative_points(points, tip, "tip", allow_origin=True)
    kappa = 3.0 - 4.0 * nu
    half = 0.5 * np.arctan2(xy[:, 1], xy[:, 0])
    c = np.sqrt(np.hypot(xy[:, 0], xy[:, 1]) / (2 * np.pi)) / (2 * mu)
    s, co = np.sin(half), np.cos(half)
    u = np.empty((len(xy), 3))
    u[:, 0] = c * (K_I * co * (kappa - 1 + 2 * s**2) + K_II * s * (kappa + 1 + 2 * co**2))
    u[:, 1] = c * (K_I * s * (kappa + 1 - 2 * co**2) - K_II * co * (kappa - 1 - 2 * s**2))
    u[:, 2] = 4 * c * K_III * s
    return u


# --- kernels ----------------------------------------------------------------------------------


def _stroh_blocks(C66: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the ``(6, 6)`` Stroh matrix ``N`` and the ``(3, 3)`` blocks ``R`` and ``T``."""
    C = stiffness_tensor(C66)
    Q, R, T = C[:, 0, :, 0], C[:, 0, :, 1], C[:, 1, :, 1]
    T_inv = np.linalg.inv(T)
    N = np.block([[-T_inv @ R.T, T_inv], [R @ T_inv @ R.T - Q, -R @ T_inv]])
    return N, R, T


def _upper_eigenpairs(N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(3,)`` eigenvalues with ``Im p > 0`` (sorted) and their ``(6, 3)`` eigenvectors."""
    eigenvalues, vectors = np.linalg.eig(N)
    upper = np.flatnonzero(eigenvalues.imag > 0)
    if len(upper) != 3:
        raise StrohError(f"expected 3 Stroh eigenvalues with Im p > 0, got {eigenvalues}")
    upper = upper[np.lexsort((eigenvalues[upper].imag, eigenvalues[upper].real))]
    return eigenvalues[upper], vectors[:, upper]


def _solve_stroh(C66: np.ndarray, p: np.ndarray, vectors: np.ndarray) -> StrohSolution:
    """Normalised ``A``, ``B`` from well-separated eigenpairs of ``N(C66)``."""
    _, R, T = _stroh_blocks(C66)
    A = vectors[:3]
    # Rebuilding b = (Rᵀ + pT) a from a keeps each pair exact to round-off.
    B = R.T @ A + (T @ A) * p[None, :]
    # Complex (non-Hermitian) normalisation 2 a·b = 1; a·b vanishes only at degeneracy.
    norm = np.sqrt(2.0 * np.sum(A * B, axis=0))
    A, B = A / norm, B / norm
    residual = np.abs(B.T @ A + A.T @ B - np.eye(3)).max()
    if residual > 1e-6:
        raise StrohError(f"Stroh eigenvectors are not orthonormal (residual {residual:.1e})")
    return StrohSolution(p=p, A=A, B=B, stiffness=C66)


def _separation(p: np.ndarray) -> float:
    """Smallest ``|p_α - p_β|`` relative to ``max |p|``."""
    gaps = np.abs(p[:, None] - p[None, :]) + np.diag(np.full(3, np.inf))
    return float(gaps.min() / np.abs(p).max())


def _z(s: StrohSolution, xy: np.ndarray) -> np.ndarray:
    """``(n, 3)`` complex ``z_α = x + p_α y``."""
    return xy[:, :1] + s.p[None, :] * xy[:, 1:2]


def _combine(M: np.ndarray, f: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``(n, 3)`` complex ``Σ_α M_iα f_nα c_α``."""
    return (f * coefficients[None, :]) @ M.T


def _gradient(s: StrohSolution, derivative: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """``(n, 3, 3)`` complex ``∂/∂x_j`` of ``A ⟨f(z_α)⟩ c``, given ``f'(z_α)`` as ``derivative``."""
    gradient = np.zeros((len(derivative), 3, 3), dtype=complex)
    gradient[:, :, 0] = _combine(s.A, derivative, coefficients)
    gradient[:, :, 1] = _combine(s.A, derivative * s.p[None, :], coefficients)
    return gradient


def _stress(
    s: StrohSolution,
    derivative: np.ndarray,
    coefficients: np.ndarray,
    gradient: np.ndarray,
    part: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """``(n, 3, 3)`` stress (eV/Å³) from ``φ = part(B ⟨f(z_α)⟩ c)``, and ``σ_zz`` from ``∇u``."""
    sigma_x = -part(_combine(s.B, derivative * s.p[None, :], coefficients))  # σ_i1 = -φ_i,2
    sigma_y = part(_combine(s.B, derivative, coefficients))  # σ_i2 = φ_i,1
    strain = 0.5 * (gradient + gradient.transpose(0, 2, 1))
    sigma = np.empty_like(strain)
    sigma[:, :, 0] = sigma_x
    sigma[:, :, 1] = sigma_y
    # Both routes give σ_xy; averaging them keeps σ exactly symmetric.
    sigma[:, 0, 1] = sigma[:, 1, 0] = 0.5 * (sigma_y[:, 0] + sigma_x[:, 1])
    sigma[:, 0, 2] = sigma_x[:, 2]
    sigma[:, 1, 2] = sigma_y[:, 2]
    sigma[:, 2, 2] = np.einsum("kl,nkl->n", stiffness_tensor(s.stiffness)[2, 2], strain)
    return sigma


def _average(solution: StrohSolution, field: Callable[[StrohSolution], np.ndarray]) -> np.ndarray:
    """Evaluate ``field`` on the solution and, for a degenerate stiffness, average the pair."""
    if solution.companion is None:
        return field(solution)
    return 0.5 * (field(solution) + field(solution.companion))


# --- input checks -----------------------------------------------------------------------------


def _as_matrix(value: ArrayLike, shape: tuple[int, int], name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite {shape} array, got shape {array.shape}")
    return array


def _as_vector(value: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != (3,) or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite (3,) vector in Å, got {value!r}")
    return array


def _check_stiffness(C66: ArrayLike) -> np.ndarray:
    C66 = _as_matrix(C66, (6, 6), "C66")
    scale = np.abs(C66).max()
    if not np.allclose(C66, C66.T, rtol=0.0, atol=1e-10 * scale):
        raise StrohError("C66 must be symmetric")
    if scale == 0.0 or np.linalg.eigvalsh(C66).min() <= 1e-12 * scale:
        raise StrohError(f"C66 must be positive definite, eigenvalues {np.linalg.eigvalsh(C66)}")
    return C66


def _check_shear_modulus(mu: float) -> None:
    if not mu > 0.0:
        raise ValueError(f"shear modulus mu must be positive, got {mu!r}")


def _check_poisson(nu: float) -> None:
    if not -1.0 < nu < 0.5:
        raise ValueError(f"Poisson's ratio nu must lie in (-1, 0.5), got {nu!r}")


def _relative_points(
    points: ArrayLike, origin: ArrayLike, name: str, *, allow_origin: bool
) -> np.ndarray:
    """``(n, 2)`` in-plane positions (Å) relative to ``origin``."""
    xy = np.asarray(points, dtype=float)
    if xy.ndim != 2 or xy.shape[1] not in (2, 3):
        raise ValueError(f"points must have shape (n, 2) or (n, 3), got {xy.shape}")
    o = np.asarray(origin, dtype=float)
    if o.shape not in ((2,), (3,)):
        raise ValueError(f"{name} must be a (2,) or (3,) point in Å, got {origin!r}")
    xy = xy[:, :2] - o[:2] + 0.0  # + 0.0 turns y = -0.0 into +0.0: one side of every cut
    if not np.all(np.isfinite(xy)):
        raise ValueError("points and origin must be finite")
    if not allow_origin and np.any((xy[:, 0] == 0.0) & (xy[:, 1] == 0.0)):
        count = int(np.sum((xy[:, 0] == 0.0) & (xy[:, 1] == 0.0)))
        raise ValueError(f"{count} point(s) sit exactly on the singular {name} {origin!r}")
    return xy


def _past_cut(xy: np.ndarray, branch_cut_angle: float) -> np.ndarray:
    """``(n,)`` bool: the polar angle lies in ``(θ_c, π]``, counter-clockwise past the cut."""
    wrapped = float(np.pi - np.mod(np.pi - branch_cut_angle, 2 * np.pi))  # into (-π, π]
    return np.arctan2(xy[:, 1], xy[:, 0]) > wrapped


def _angle_with_cut(xy: np.ndarray, branch_cut_angle: float) -> np.ndarray:
    """``(n,)`` polar angle in ``(θ_c - 2π, θ_c]``."""
    return np.arctan2(xy[:, 1], xy[:, 0]) - 2 * np.pi * _past_cut(xy, branch_cut_angle)
