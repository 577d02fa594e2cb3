"""Backend-specific code: the one module that touches private Keras/torch APIs."""
