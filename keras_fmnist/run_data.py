"""The data a run sees: Fashion-MNIST loaded once per location, limited and split as its
`RunConfig` says, with the facts its identity records (the arrays' fingerprint and the split
sizes).

`experiments` (training) and `run_config` (planning) both read the data through here; nothing
here builds a model or trains.
"""

import os

import numpy as np

from keras_fmnist import pipeline
from keras_fmnist import run_identity
from keras_fmnist.data import CLASS_NAMES
from keras_fmnist.data import NUM_CLASSES
from keras_fmnist.data import load_fashion_mnist


# Loaded arrays per data location, so that planning (identities) and training in one process
# read the files once. The arrays are made read-only: every user takes copies by indexing.
_DATA_CACHE = {}


def load_data(config):
    """((x_train, y_train), (x_test, y_test)) and their fingerprint, for the config's source."""
    key = (config.data_dir, config.data_source, os.environ.get("FASHION_MNIST_DIR"))
    if key not in _DATA_CACHE:
        arrays = load_fashion_mnist(config.data_dir, source=config.data_source)
        flat = [a for pair in arrays for a in pair]
        for array in flat:
            array.setflags(write=False)
        _DATA_CACHE[key] = (arrays, run_identity.array_fingerprint(*flat))
    return _DATA_CACHE[key]


def data_fingerprint(config):
    return load_data(config)[1]


def _split_indices(config, y_train):
    if config.train_on_full:
        return np.arange(len(y_train)), np.zeros(0, np.int64)
    return pipeline.stratified_split(y_train, config.val_fraction, config.seed)


def _limited(config):
    (x_train, y_train), (x_test, y_test) = load_data(config)[0]
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    if config.test_limit:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    return (x_train, y_train), (x_test, y_test)


def prepare_data(config):
    """Loads, limits and splits the data: {"train", "val", "test"} -> (images, labels)."""
    (x_train, y_train), (x_test, y_test) = _limited(config)
    train_idx, val_idx = _split_indices(config, y_train)
    return {
        "train": (x_train[train_idx], y_train[train_idx]),
        "val": (x_train[val_idx], y_train[val_idx]),
        "test": (x_test, y_test),
    }


def split_sizes(config):
    """{"train", "val", "test"} -> number of examples, without copying images."""
    (_, y_train), (_, y_test) = _limited(config)
    train_idx, val_idx = _split_indices(config, y_train)
    return {"train": len(train_idx), "val": len(val_idx), "test": len(y_test)}


def check_split(config):
    """Raises ValueError unless the split leaves every class in training and validation.

    A validation split is stratified: each class present must keep at least one training and
    one validation example, and all classes must be present (a smoke run's `train_limit` can
    break both). The message names the smallest `train_limit` that works.
    """
    if config.train_on_full:
        return
    (_, y_train), _ = load_data(config)[0]
    y = y_train[: config.train_limit] if config.train_limit else y_train
    problem = _split_problem(y, config.val_fraction)
    if problem is None:
        return
    counts = np.cumsum(np.eye(NUM_CLASSES, dtype=np.int64)[y_train], axis=0)
    val = np.round(counts * config.val_fraction)
    ok = np.all((val >= 1) & (counts - val >= 1), axis=1)
    hint = (f"; use --train_limit={int(np.argmax(ok)) + 1} or more" if ok.any()
            else "; no --train_limit works at this --val_fraction")
    raise ValueError(
        f"--train_limit={config.train_limit} with --val_fraction={config.val_fraction:g} "
        f"{problem}{hint}"
    )


def _split_problem(y, val_fraction):
    counts = np.bincount(y, minlength=NUM_CLASSES)
    for cls, count in enumerate(counts):
        n_val = int(round(count * val_fraction))
        if count == 0:
            return f"has no {CLASS_NAMES[cls]!r} example"
        if n_val < 1:
            return f"leaves no {CLASS_NAMES[cls]!r} example for validation"
        if count - n_val < 1:
            return f"leaves no {CLASS_NAMES[cls]!r} example for training"
    return None

