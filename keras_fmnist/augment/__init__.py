"""Data augmentation as Keras preprocessing layers."""
