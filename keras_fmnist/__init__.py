"""keras_fmnist: a Keras 3 re-implementation of a Fashion-MNIST ResNet-18 study.

Importing the package registers its custom layers for `.keras` deserialisation and makes
torch the Keras backend when KERAS_BACKEND is unset (it must happen before keras is first
imported, so import keras_fmnist before keras in your scripts if you rely on that default).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

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
