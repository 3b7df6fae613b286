"""`python -m arcsub.cli` (and `torchrun -m arcsub.cli`): the same as the `arcsub` command."""

import sys

from arcsub.cli.app import main

sys.exit(main())
