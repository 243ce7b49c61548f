"""`python -m rvqgan` runs the command-line interface."""

import sys

from .cli import run

sys.exit(run())
