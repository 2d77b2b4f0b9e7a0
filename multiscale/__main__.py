"""``python -m multiscale``: the same as the ``multiscale`` console command."""

from multiscale.cli import console_main

console_main()
