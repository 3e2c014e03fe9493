"""Training: configuration, the two-phase trainer, losses, checkpoints, DDP, mining, curriculum, cohorts."""
