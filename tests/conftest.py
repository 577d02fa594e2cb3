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
def cases_for_this_backend():
    """Picks the command-line error cases this backend's pass checks.

    run.py validates its flags with backend-free code, so a case's message is the same on every
    backend; what a backend changes is the noise its start-up may add to stderr, which breaks
    the one-line contract for every case alike. The tensorflow pass (TF's C++ start-up logging
    is what run.py has to silence) checks every case; the others check the cases at the
    `representative` indices, one per stage at which run.py can stop (flag parsing, checks of
    the parsed configuration, files and data): every case is one run.py process, and these
    processes are a large share of the suite's time on 2 cores.
    """
    def pick(cases, representative):
        if os.environ["KERAS_BACKEND"] == "tensorflow":
            return list(cases)
        return [cases[i] for i in representative]

    return pick


@pytest.fixture(scope="session")
def run_cli_cases():
    """Starts `run.py` once per (args, env) case, all at once (each process ends at its first
    check, so they overlap well), and returns each one's (returncode, stderr), in order."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(cases):
        processes = [
            subprocess.Popen([sys.executable, os.path.join(root, "run.py"), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=root, env={**os.environ, **(env or {})})
            for args, env in cases
        ]
        results = []
        for process in processes:
            _, stderr = process.communicate(timeout=600)
            results.append((process.returncode, stderr))
        return results

    return run


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



def pytest_collection_modifyitems(config, items):
    """`torch_only` tests (helpers.torch_only: torchvision parity, accelerate, the benchmark
    against plain PyTorch) are left out of the other passes by ./dev.sh test's `-m`, and
    skipped with a reason where pytest is run by hand on another backend."""
    if os.environ["KERAS_BACKEND"] == "torch":
        return
    skip = pytest.mark.skip(reason=f"needs the torch backend (this is {os.environ['KERAS_BACKEND']})")
    for item in items:
        if item.get_closest_marker("torch_only"):
            item.add_marker(skip)
