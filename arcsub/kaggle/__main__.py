"""`python -m arcsub.kaggle`: the notebook's main() outside a notebook, with one-line errors (exit 2) instead of
tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from arcsub.core.data import ArcDataError
from arcsub.kaggle.notebook import main


def run(argv: Sequence[str] | None = None) -> int:
    """`python -m arcsub.kaggle`: main() with one-line errors (exit 2) instead of tracebacks."""
    try:
        summary = main(sys.argv[1:] if argv is None else argv)
    except (ArcDataError, OSError) as e:
        print(f"arcsub.kaggle: error: {e}", file=sys.stderr)
        return 2
    return 1 if "error" in summary else 0


if __name__ == "__main__":
    sys.exit(run())
