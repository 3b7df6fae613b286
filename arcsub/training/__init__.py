"""The training loop's shared runtime (optimizer settings, schedules, mixed precision, distributed set-up,
checkpoints and resume) and the Muon optimizer family, used by both model families' trainers."""
