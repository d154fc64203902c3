"""Transfer from a pretrained user encoder (and from a trained run's ID tables) to a new line."""
