"""Functional ops (backend-agnostic, channels-last)."""
from keras_fmnist.ops.deform_conv import deform_conv2d  # noqa: F401
