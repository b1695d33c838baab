"""``python -m arrayhf``: the command line of arrayhf.cli."""

import sys

from arrayhf.cli import main

sys.exit(main())
