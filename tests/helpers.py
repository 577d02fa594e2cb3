"""Helpers the tests share, one definition each: the repository root, numpy conversion, the
backend marks, and float64 references for the numerical tests.

A numerical test of a fast path compares it and the stock float32 computation with the same
computation in float64 (the ground truth), and bounds the fast path's error by a multiple of
the stock path's error measured in the same test: a tolerance that follows what float32 can
do on this machine instead of a number that was widened until it passed.
"""

import os

import numpy as np
import pytest

import keras

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKEND = keras.backend.backend()
ON_TORCH = BACKEND == "torch"
torch_only = pytest.mark.torch_only
numerics = pytest.mark.numerics

# float32's machine epsilon: the smallest error a float32 result can be held to.
FLOAT32_EPS = float(np.finfo("float32").eps)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def relative_error(value, reference):
    """max |value - reference| / max |reference| (0 where both are all zeros)."""
    value = np.asarray(value, "float64")
    reference = np.asarray(reference, "float64")
    scale = np.abs(reference).max() if reference.size else 0.0
    error = np.abs(value - reference).max() if reference.size else 0.0
    return float(error / scale) if scale > 0 else float(error)


def worst_relative_error(values, references):
    return max(relative_error(v, r) for v, r in zip(values, references))


def float64_twin(build, **kwargs):
    """(float32 model, the same model built under the float64 policy with the same weights)."""
    model = build(**kwargs)
    keras.config.set_dtype_policy("float64")
    try:
        twin = build(**kwargs)
    finally:
        keras.config.set_dtype_policy("float32")
    twin.set_weights([w.astype("float64") for w in model.get_weights()])
    return model, twin


def assert_within(fast, stock, factor, what):
    """The fast path's error is at most `factor` times the stock path's (or float32's
    epsilon, where the stock path is exact)."""
    bound = factor * max(stock, FLOAT32_EPS)
    assert fast <= bound, (
        f"{what}: error {fast:.2e} against float64, more than {factor}x the stock "
        f"float32 path's {stock:.2e}"
    )


def fake_training(config, extra_callbacks=(), output_dir=None):
    """A train_fn that records a finished run without training (accuracy 0.5), importable
    by name so that worker processes can run it too."""
    from keras_fmnist import artifacts

    metrics = {"status": "finished", "identity_hash": config.identity_hash(),
               "val_accuracy": 0.5, "test_accuracy": 0.5}
    artifacts.write_json(os.path.join(output_dir, "metrics.json"), metrics)
    return metrics
