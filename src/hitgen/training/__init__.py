"""Training: losses, schedule, checkpoints, the training loop (single process or DDP)."""
