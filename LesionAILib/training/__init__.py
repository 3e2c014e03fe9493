"""Training: config, the two-phase trainer, losses, checkpoints, distributed helpers, augmentation, targets, cohorts.
"""
