"""Shared fixtures. The real data comes from Debian's dataset-fashion-mnist (the README's test
command installs it); tests that need it fail with a clear message when it is missing."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import pytest  # noqa: E402

if os.environ["KERAS_BACKEND"] == "torch":
    try:
        import torch
    except ImportError:
        pass
    else:
        # Parity tests compare to 1e-4; on a GPU, cuDNN's default TF32 convolutions (10-bit
        # mantissa) differ from float32 by ~1e-3.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

if os.environ["KERAS_BACKEND"] == "tensorflow":
    # Loading triton (torchvision imports it through torch._dynamo) after TensorFlow 2.21
    # segfaults the process, in either's native libraries; the other order works. Some tests
    # compare against torchvision on every backend, so it is loaded before keras loads TF.
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass

import keras_fmnist  # noqa: E402
from keras_fmnist import data  # noqa: E402


@pytest.fixture(scope="session")
def fashion_mnist():
    try:
        return keras_fmnist.load_fashion_mnist(source="files")
    except data.DatasetError as e:
        pytest.fail(f"real Fashion-MNIST needed (apt-get install dataset-fashion-mnist): {e}")


@pytest.fixture(scope="session")
def data_dir():
    for directory in data.candidate_dirs():
        if all(os.path.isfile(os.path.join(directory, n)) for n, _, _ in data.FILES.values()):
            return directory
    pytest.fail("real Fashion-MNIST IDX files not found (apt-get install dataset-fashion-mnist)")

