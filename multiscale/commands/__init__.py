"""One module per ``multiscale`` subcommand.

Each module has ``HELP`` (one line), ``add_arguments(parser)`` and ``main(args) -> int``. Only
``main`` imports heavy packages, so building the parser stays fast.
"""

__all__ = ["COMMANDS"]

#: Subcommand names, in the order ``multiscale --help`` lists them.
COMMANDS = (
    "run",
    "reference",
    "check",
    "train",
    "dataset",
    "sweep",
    "plot",
    "info",
)
