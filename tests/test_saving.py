"""Every .keras file the project writes loads with plain `keras.saving.load_model` in a fresh
process on torch, jax and tensorflow (the latter without oneDNN, as on CPUs without
AVX-512), compiled, and predicts what the saved model predicted: saved in this pass's
backend, loaded in all three."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_fmnist
from keras_fmnist import artifacts
from keras_fmnist import training
from keras_fmnist.models.resnet import default_data_format

from helpers import BACKEND
from helpers import to_numpy

LOAD = r"""
import json, sys
import numpy as np
cases = json.loads(sys.argv[1])
if any(c["needs_package"] for c in cases.values()):
    pass  # imported below, per file, only where needed
import keras
results = {}
for name, case in cases.items():
    if case["needs_package"]:
        import keras_fmnist  # registers the project's layers
    model = keras.saving.load_model(case["path"], compile=True)
    x = np.load(case["x"])
    got = keras.ops.convert_to_numpy(model(x, training=False))
    want = np.load(case["y"])
    optimizer = getattr(model, "optimizer", None)
    results[name] = {
        "error": float(np.abs(got - want).max()),
        "optimizer": None if optimizer is None else
            f"{type(optimizer).__module__.split('.')[0]}.{type(optimizer).__name__}",
        "torch_loaded": "torch" in sys.modules,
    }
print("RESULTS " + json.dumps(results))
"""


def _save_cases(tmp_path):
    """name -> (model, needs keras_fmnist to load); each is trained one step if compiled."""
    x = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[[1, 2, 3, 4]]
    keras.utils.set_random_seed(0)
    fast_layout = default_data_format()
    cases = {
        "stock, not compiled": (keras_fmnist.build_resnet18(stages=1), False, "save"),
        "stock, compile_model": (training.compile_model(keras_fmnist.build_resnet18(stages=1)),
                                 False, "save"),
        "accelerated, run layout, compile_model": (
            training.compile_model(keras_fmnist.accelerate(
                keras_fmnist.build_resnet18(stages=1, data_format=fast_layout))), False, "save"),
        "accelerated, user's Adam": (keras_fmnist.accelerate(
            keras_fmnist.build_resnet18(stages=1, data_format=fast_layout)), False, "save"),
        "project layers, run layout, artifacts.save_model": (
            training.compile_model(keras_fmnist.accelerate(keras_fmnist.build_resnet18(
                stages=1, deform_layers=(1,), regularizer="dropblock", seed=0,
                data_format=fast_layout))), True, "artifacts"),
    }
    cases["accelerated, user's Adam"][0].compile(
        optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    files = {}
    for i, (name, (model, needs_package, how)) in enumerate(cases.items()):
        if model.compiled:
            model.train_on_batch(x, y)
        path = str(tmp_path / f"{i}.keras")
        if how == "artifacts":
            artifacts.save_model(model, path)
        else:
            model.save(path)
        np.save(tmp_path / f"{i}-x.npy", x)
        np.save(tmp_path / f"{i}-y.npy", to_numpy(model(x, training=False)))
        files[name] = {"path": path, "x": str(tmp_path / f"{i}-x.npy"),
                       "y": str(tmp_path / f"{i}-y.npy"), "needs_package": needs_package,
                       "compiled": model.compiled}
    return files


@pytest.mark.parametrize("target", ["torch", "jax", "tensorflow"])
def test_saved_files_load_and_predict_on_every_backend(tmp_path, target):
    files = _save_cases(tmp_path)
    env = {**os.environ, "KERAS_BACKEND": target, "TF_ENABLE_ONEDNN_OPTS": "0",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", LOAD, json.dumps(files)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, (BACKEND, target, result.stderr[-3000:])
    (line,) = [l for l in result.stdout.splitlines() if l.startswith("RESULTS ")]
    results = json.loads(line[len("RESULTS "):])
    for name, case in files.items():
        got = results[name]
        assert got["error"] <= 1e-5, (name, got)
        if case["compiled"]:
            assert got["optimizer"] == "keras.Adam", (name, got)
        if not case["needs_package"] and target != "torch":
            assert not got["torch_loaded"], name  # nothing in the file asks for torch
