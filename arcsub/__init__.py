"""arcsub: train, test-time fine-tune and sample language models for the ARC Prize."""

__version__ = "0.1.0"
