"""``python -m multiscale``: the same as the ``multiscale`` console command."""

import sys

from multiscale.cli import main

sys.exit(main())
