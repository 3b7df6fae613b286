"""What both model families share: ARC data and grids, augmentations, text encodings, configs, metrics and the
Kaggle score, submissions, voting, run files and pictures. Nothing here imports a model family."""
