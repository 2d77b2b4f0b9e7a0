"""Coupling: atoms and continuum joined in one blended energy, and its solution.

=====================  ==================================================================
module                 holds
=====================  ==================================================================
``handshake``          the core (a union of balls), handshake and pad geometry and β
``core_cells``         the mesh cells a grown core removes from the continuum
``interpolation``      the sparse atoms ↔ FE interpolation operator (serial and MPI)
``blended_atoms``      ``Σ β ε`` of the atoms, its gradient and Hessian-vector products
``layout``             the monolithic vector ``z = (u_A, U)`` across MPI ranks
``model``              the blended energy ``E(u, U)``, exact gradient, Hessian products
``preconditioner``     the assembled monolithic preconditioner
``solver``             Newton–Krylov minimisation (:class:`~coupling.solver.SolverOptions`)
``correction``         the ghost-force correction (first pass and recomputations)
``passes``             solve, recompute the correction, solve again
``fields``             the homogeneous far field and background fields
``protocol``           what the correction and the state need of a system
``dislocation``        a straight dislocation's Volterra field as a background
``state``              a solved state, carried to a changed system
``system``             a whole coupled problem (:func:`~coupling.system.build_coupled_system`)
=====================  ==================================================================

Imports ``atomistic`` and ``continuum``; never ``multiscale``. ``dolfinx_solver`` is imported
here first, as in ``continuum``: it orders MPI ahead of the compiled bindings.
"""

import dolfinx_solver  # noqa: F401  (first: orders MPI ahead of the compiled bindings)
