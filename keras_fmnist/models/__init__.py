"""Model builders."""

from keras_fmnist.models.fast_functional import FastFunctional  # noqa: F401
from keras_fmnist.models.resnet import build_resnet18
from keras_fmnist.models.torchvision_weights import load_torchvision_weights
