"""A symbolic solver: short programs of whole-grid transformations, kept only when they reproduce every
demonstration of a task exactly.

Why beside the neural models: a program that explains all demonstrations is right on the test input far more
often than a model's guess, it runs on the CPU in seconds, and it needs no training, so the Kaggle notebook
can write its answers before any GPU work starts. It answers few tasks; the pipeline puts its answer first and
keeps the model's best guess as the second attempt (`arcsub.core.combine`).
"""
