"""Mid-run resume: everything a training needs to go on, saved atomically at every epoch end.

Keras' `BackupAndRestore` saves the weights (with the optimizer's variables) and the epoch,
in two files written one after the other, which is enough to continue training but not to
continue *this* training: it loses the state that decides what the next epochs compute and
record (the data order and the augmentation's random state, early stopping's patience and
best weights, the best-checkpoint's record, the history so far, the DropBlock ramp). A
`TrainingCheckpoint` saves all of it, in one file replaced atomically, so that a run killed
at any point and started again from its last checkpoint computes, on a deterministic
backend, exactly what the uninterrupted run computes (tested on torch on the CPU).

What is saved, at the end of every epoch (after every other callback):

- every variable of the model (weights, batch-norm statistics, DropBlock's current rate, the
  random layers' seed-generator states) and of the optimizer (moments, iteration count and so
  the learning-rate schedule's position, the weight average of `use_ema`);
- the state of each "piece" given, an object with `get_state() -> (dict, {name: array})` and
  `set_state(dict, arrays)`: the training batches (shuffling and augmentation state), the
  project's callbacks, and Keras' `EarlyStopping` and `SwapEMAWeights` through the adapters
  below;
- the global random generators: Python's `random` (Keras' `fit` shuffles the order of a
  PyDataset's batches with it), numpy's and, on torch, torch's;
- the number of epochs done, whether training had stopped (early stopping), and the run's
  identity, so that a checkpoint is never resumed into other settings.
"""

import io
import json
import os
import random

import numpy as np

import keras

from keras_fmnist import artifacts
from keras_fmnist.accelerate import stock_model
from keras_fmnist.backend import private_api

STATE_FILE = "state.npz"
_JSON_KEY = "__state__"


def state_path(directory):
    return os.path.join(directory, STATE_FILE)


class SavedState:
    """A checkpoint read back: `epoch` (epochs done), `stopped`, `identity`, and the rest."""

    def __init__(self, header, arrays):
        self.header = header
        self.arrays = arrays
        self.epoch = int(header["epoch"])
        self.stopped = bool(header["stopped"])
        self.identity = header.get("identity")


def load(directory, identity=None):
    """The checkpoint in `directory`, or None (none there, unreadable, or another identity)."""
    path = state_path(directory)
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        header = json.loads(str(arrays.pop(_JSON_KEY)))
    except (OSError, ValueError, KeyError):
        return None
    if identity is not None and header.get("identity") != identity:
        return None
    return SavedState(header, arrays)


def _model_variables(model):
    return list(stock_model(model).variables)


def _optimizer_variables(model):
    optimizer = model.optimizer
    if optimizer is None:
        return []
    if not optimizer.built:
        optimizer.build(stock_model(model).trainable_variables)
    return list(optimizer.variables)


class GlobalRandomState:
    """Python's, numpy's and (on torch) torch's global random generators, as a piece."""

    def get_state(self):
        version, internal, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        header = {"python": [version, list(internal), gauss],
                  "numpy": [kind, int(pos), int(has_gauss), float(cached)]}
        arrays = {"numpy_keys": keys}
        if keras.backend.backend() == "torch":
            import torch

            arrays["torch"] = torch.get_rng_state().numpy()
        return header, arrays

    def set_state(self, header, arrays):
        version, internal, gauss = header["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, pos, has_gauss, cached = header["numpy"]
        np.random.set_state((kind, arrays["numpy_keys"], pos, has_gauss, cached))
        if "torch" in arrays and keras.backend.backend() == "torch":
            import torch

            torch.set_rng_state(torch.from_numpy(arrays["torch"].copy()))


class TrainingCheckpoint(keras.callbacks.Callback):
    """Saves the training's state to `directory` at every epoch end; restores `resume_from`
    (a `SavedState`) when training begins.

    Put it last in the callback list: it saves what the others have done at the epoch's end,
    and restores their state after their own `on_train_begin` has reset it. Give the epoch
    to continue from to `fit` (`initial_epoch=state.epoch`, or `epochs` where `state.stopped`).

    Args:
        directory: where `state.npz` goes (created).
        pieces: {name: object with get_state/set_state}.
        identity: the run's identity hash, recorded and checked on resume.
        resume_from: a `SavedState` to restore, or None.
        skip_save: a function returning True where the epoch's state must not be saved (a
            diverged run: its weights are not finite).
    """

    def __init__(self, directory, pieces, identity=None, resume_from=None, skip_save=None):
        super().__init__()
        self.directory = directory
        self.pieces = {**dict(pieces), "global_random": GlobalRandomState()}
        self.identity = identity
        self.resume_from = resume_from
        self.skip_save = skip_save or (lambda: False)

    def on_train_begin(self, logs=None):
        state = self.resume_from
        if state is None:
            return
        _assign(_model_variables(self.model), state.arrays, "model")
        _assign(_optimizer_variables(self.model), state.arrays, "optimizer")
        for name, piece in self.pieces.items():
            prefix = f"piece/{name}/"
            arrays = {k[len(prefix):]: v for k, v in state.arrays.items() if k.startswith(prefix)}
            piece.set_state(state.header["pieces"].get(name, {}), arrays)

    def on_epoch_end(self, epoch, logs=None):
        if self.skip_save():
            return
        arrays = {}
        for i, v in enumerate(_model_variables(self.model)):
            arrays[f"model/{i:05d}"] = keras.ops.convert_to_numpy(v)
        for i, v in enumerate(_optimizer_variables(self.model)):
            arrays[f"optimizer/{i:05d}"] = keras.ops.convert_to_numpy(v)
        header_pieces = {}
        for name, piece in self.pieces.items():
            header, piece_arrays = piece.get_state()
            header_pieces[name] = header
            for key, value in piece_arrays.items():
                arrays[f"piece/{name}/{key}"] = np.asarray(value)
        header = {
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "identity": self.identity,
            "pieces": header_pieces,
        }
        arrays[_JSON_KEY] = np.array(json.dumps(header))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        os.makedirs(self.directory, exist_ok=True)
        artifacts.write_bytes(state_path(self.directory), buffer.getvalue())


def _assign(variables, arrays, prefix):
    saved = sorted(k for k in arrays if k.startswith(prefix + "/"))
    if len(saved) != len(variables):
        raise ValueError(
            f"checkpoint holds {len(saved)} {prefix} variables, the model {len(variables)}: "
            "not the same model"
        )
    for variable, key in zip(variables, saved):
        value = arrays[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"checkpoint's {key} has shape {value.shape}, "
                             f"{variable.path} {tuple(variable.shape)}")
        variable.assign(value)


# --- Keras' own callbacks, as pieces -------------------------------------------------------


class EarlyStoppingState:
    """`keras.callbacks.EarlyStopping`'s patience count, best value and best weights."""

    def __init__(self, callback):
        self.callback = callback

    def get_state(self):
        c = self.callback
        header = {"wait": c.wait, "stopped_epoch": c.stopped_epoch, "best_epoch": c.best_epoch,
                  "best": None if c.best is None else float(c.best),
                  "has_best_weights": c.best_weights is not None}
        weights = {f"{i:05d}": w for i, w in enumerate(c.best_weights or [])}
        return header, weights

    def set_state(self, header, arrays):
        c = self.callback
        c.wait = header["wait"]
        c.stopped_epoch = header["stopped_epoch"]
        c.best_epoch = header["best_epoch"]
        c.best = header["best"]
        c.best_weights = ([arrays[k] for k in sorted(arrays)]
                          if header["has_best_weights"] else None)


class SwapEMAWeightsState:
    """Whether `keras.callbacks.SwapEMAWeights` left the averaged weights in the model (it
    swaps them in at every epoch end and back at the next epoch's start)."""

    def __init__(self, callback):
        self.callback = callback

    def get_state(self):
        return {"ema_weights_in_model": private_api.ema_weights_in_model(self.callback)}, {}

    def set_state(self, header, arrays):
        private_api.set_ema_weights_in_model(self.callback, header["ema_weights_in_model"])
