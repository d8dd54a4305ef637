"""Training: the user's model factory, the training loop and the checkpoint."""
