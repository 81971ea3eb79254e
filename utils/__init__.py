"""Code both training stages share (data, encoder, metrics, checkpoints)."""
