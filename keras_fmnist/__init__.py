"""keras_fmnist: a Keras 3 re-implementation of a Fashion-MNIST ResNet-18 study.

Importing the package registers its custom layers for `.keras` deserialisation. The Keras
backend is the user's (`KERAS_BACKEND`, else `keras.json`); where the user chose none, and
keras is not imported yet, it is torch (`keras_fmnist.backend.choice`).
"""

from keras_fmnist.backend import choice as _choice

_choice.choose_backend()

from keras_fmnist import augment  # noqa: E402
from keras_fmnist import layers  # noqa: E402
from keras_fmnist import ops  # noqa: E402
from keras_fmnist import schedules  # noqa: E402
from keras_fmnist.accelerate import AcceleratedModel  # noqa: E402
from keras_fmnist.accelerate import accelerate  # noqa: E402
from keras_fmnist.data import CLASS_NAMES  # noqa: E402
from keras_fmnist.data import DatasetError  # noqa: E402
from keras_fmnist.data import load_fashion_mnist  # noqa: E402
from keras_fmnist.models import build_resnet18  # noqa: E402
from keras_fmnist.models import load_torchvision_weights  # noqa: E402

__version__ = "0.1.0"
