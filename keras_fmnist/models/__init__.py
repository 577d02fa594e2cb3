"""Model builders."""

from keras_fmnist.models.resnet import build_resnet18  # noqa: F401
from keras_fmnist.models.torchvision_weights import load_torchvision_weights  # noqa: F401
