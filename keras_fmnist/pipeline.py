"""Splits and the batch pipeline: stratified train/validation split, image scaling, batches.

Images leave the pipeline as float32 (N, 28, 28, 1) in [0, 1]; the model standardises them with
the training set's mean and standard deviation in its own first layer (so a saved `.keras` model
takes the same input anywhere). Labels leave as float32 one-hot (N, 10) so that one soft-target
loss serves plain, MixUp and CutMix batches alike.
"""

import math

import numpy as np

import keras

from keras_fmnist.data import NUM_CLASSES


def stratified_split(y, val_fraction, seed):
    """Indices of a deterministic stratified train/validation split.

    Each class contributes `round(count * val_fraction)` examples to validation, chosen by a
    permutation seeded with `seed`, so the split is the same on every machine and backend.

    Args:
        y: integer labels (N,).
        val_fraction: share of each class held out, in [0, 1).
        seed: integer seed.

    Returns:
        (train_indices, val_indices), each sorted int64 arrays.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    val = []
    for cls in np.unique(y):
        members = np.flatnonzero(y == cls)
        n_val = int(round(len(members) * val_fraction))
        val.append(rng.permutation(members)[:n_val])
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(y)), val, assume_unique=True)
    return train.astype(np.int64), val.astype(np.int64)


def to_model_inputs(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., None]


def one_hot(labels, num_classes=NUM_CLASSES):
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def standardisation_stats(images):
    """Mean and variance of the [0, 1]-scaled pixels of the given (training) images."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    return float(x.mean()), float(x.var())


class ArrayBatches(keras.utils.PyDataset):
    """Batches of (images, one-hot labels) from in-memory arrays, optionally augmented.

    Shuffling is a seeded permutation per epoch and every batch is one fancy-indexing gather,
    so the hot path has no per-sample Python. The augmentation layer (if any) is called on the
    whole batch as `augment({"images": x, "labels": y}, training=True)`.

    Args:
        images: uint8 (N, 28, 28) or float32 (N, 28, 28, 1) in [0, 1].
        labels: integer labels (N,).
        batch_size: examples per batch; the last batch may be smaller.
        shuffle: reshuffle at every epoch.
        seed: seed of the shuffling.
        augment: a layer taking and returning `{"images", "labels"}`, or None.
        limit: use only the first `limit` examples.
    """

    def __init__(
        self,
        images,
        labels,
        batch_size=128,
        shuffle=False,
        seed=0,
        augment=None,
        limit=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        images = np.asarray(images)
        if images.dtype == np.uint8:
            images = to_model_inputs(images)
        if limit is not None:
            images, labels = images[:limit], labels[:limit]
        self.images = images
        self.labels = one_hot(labels)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.images))
        if shuffle:
            self._order = self._rng.permutation(len(self.images))

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index):
        idx = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        x, y = self.images[idx], self.labels[idx]
        if self.augment is not None:
            out = self.augment({"images": x, "labels": y}, training=True)
            x = keras.ops.convert_to_numpy(out["images"])
            y = keras.ops.convert_to_numpy(out["labels"])
        return x, y

    def on_epoch_end(self):
        if self.shuffle:
            self._order = self._rng.permutation(len(self.images))

    def get_state(self):
        """What a resumed training needs (`keras_fmnist.resume`): the shuffling generator,
        the coming epoch's order and the augmentation's variables (its random state)."""
        arrays = {"order": self._order}
        for i, variable in enumerate(_augment_variables(self.augment)):
            arrays[f"augment_{i:03d}"] = keras.ops.convert_to_numpy(variable)
        return {"rng": self._rng.bit_generator.state}, arrays

    def set_state(self, state, arrays):
        self._rng.bit_generator.state = state["rng"]
        self._order = np.asarray(arrays["order"])
        variables = _augment_variables(self.augment)
        saved = sorted(k for k in arrays if k.startswith("augment_"))
        if len(saved) != len(variables):
            raise ValueError(f"checkpoint holds {len(saved)} augmentation variables, "
                             f"the pipeline {len(variables)}")
        for variable, key in zip(variables, saved):
            variable.assign(arrays[key])


def _augment_variables(augment):
    """The variables of an augmentation layer, or of a chain of them (`.layers`)."""
    if augment is None:
        return []
    if isinstance(augment, keras.layers.Layer):
        return list(augment.variables)
    return [v for layer in getattr(augment, "layers", ()) for v in layer.variables]
