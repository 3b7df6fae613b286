"""The Kaggle notebook's runtime: paths, datasets, GPUs, the time budget, and `main()`, which the generated
notebook calls (`from arcsub.kaggle import main`)."""

from arcsub.kaggle.notebook import main

__all__ = ["main"]
