"""Exceptions that the command line turns into one-line messages and exit codes."""

from __future__ import annotations

__all__ = ["CaseError", "EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_NOT_CONVERGED", "EXIT_OK"]

#: The run finished and converged (or the check passed).
EXIT_OK = 0
#: Something went wrong while running (a bug, a solver blow-up, a full disk).
EXIT_FAILURE = 1
#: The input is wrong: case folder, case file, ``--set`` value, potential file or element.
EXIT_BAD_INPUT = 2
#: The run finished and wrote its outputs, but the solver did not reach its tolerance.
EXIT_NOT_CONVERGED = 3


class CaseError(ValueError):
    """Bad user input; the message names the file (or option) and key at fault."""
