"""`python -m arcsub.kaggle`: the notebook's main() outside a notebook, with one-line errors."""

import sys

from arcsub.kaggle.notebook import cli

sys.exit(cli())
