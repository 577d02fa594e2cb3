"""A run survives interruption: it resumes from its last completed epoch and computes what
the uninterrupted run computes, and a retrain replaces a finished run only once it has
finished (keras_fmnist.resume, keras_fmnist.staging, worker.handle_run)."""

import os

import numpy as np
import pytest

import keras

from keras_fmnist import experiments
from keras_fmnist import pipeline
from keras_fmnist import staging
from keras_fmnist import worker
from keras_fmnist.experiments import RunConfig

from helpers import torch_only


class Interrupt(Exception):
    """Stands for a kill: raised from inside fit, nothing after it runs."""


class InterruptAt(keras.callbacks.Callback):
    """Interrupts training at `batch` of `epoch` (1-based epoch, 0-based batch)."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.epoch, self.batch, self._epoch = epoch, batch, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if (self._epoch, batch) == (self.epoch, self.batch):
            raise Interrupt()


def _interrupted(epoch, batch):
    def train(config, extra_callbacks=(), output_dir=None):
        return experiments.run_training(
            config, [*extra_callbacks, InterruptAt(epoch, batch)], output_dir)
    return train


# Every stateful piece at once: augmentation (crop, flip, CutMix: seed generators and the
# shuffling), DropBlock (its ramp and seed generators), SGD with a cosine schedule (the
# iteration count), label smoothing, the weight average (EMA and its swap), early stopping
# (patience 2: its counter matters) and the best checkpoint.
RECIPE = dict(train_limit=400, test_limit=64, epochs=3, batch_size=50, verbose=0,
              augment="crop_flip_cutmix", regularizer="dropblock", p=0.2, block_size=3,
              optimizer="sgd", learning_rate=0.05, lr_schedule="cosine", ema=True,
              ema_momentum=0.5, label_smoothing=0.1, patience=2)


def _config(tmp_path, name, **changes):
    return RunConfig(artifacts_dir=str(tmp_path / name), **{**RECIPE, **changes})


def _recorded(config):
    metrics = worker.read_recorded(config)
    with open(os.path.join(config.run_dir(), "history.csv")) as f:
        return metrics, f.read()


@pytest.mark.parametrize("epoch, batch", [
    (2, 3), pytest.param(3, 0, marks=torch_only)])
def test_a_resumed_run_computes_what_the_uninterrupted_run_computes(tmp_path, epoch, batch):
    """Interrupted inside epoch 2 (after one checkpoint) or at the first batch of epoch 3:
    the resumed run's history.csv and metrics equal the uninterrupted run's, to the bit, on
    every backend (each is deterministic on the CPU)."""
    whole = _config(tmp_path, "whole")
    outcome = worker.handle_run(whole, experiments.run_training)
    assert outcome.status == worker.TRAINED and "resumed" not in outcome.detail

    broken = _config(tmp_path, "broken")
    with pytest.raises(Interrupt):
        worker.handle_run(broken, _interrupted(epoch, batch))
    assert not os.path.exists(broken.run_dir())  # nothing finished there
    outcome = worker.handle_run(broken, experiments.run_training)
    assert outcome.status == worker.TRAINED
    assert outcome.detail.startswith(f"resumed at epoch {epoch} of 3; val_accuracy")

    want, want_history = _recorded(whole)
    got, got_history = _recorded(broken)
    assert got_history == want_history
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "best_epoch",
                "epochs_run", "stopped_early", "history"):
        assert got[key] == want[key], key
    assert got["resumed_from_epoch"] == epoch - 1
    assert not os.path.exists(staging.staging_dir(broken.run_dir()))


@torch_only
def test_an_interrupted_retrain_leaves_the_finished_run_intact(tmp_path):
    """--force interrupted in its second epoch: the finished run (model, history, metrics,
    figures) is untouched, and the next handling reports it; the retrain, resumed, then
    replaces it as a whole."""
    config = _config(tmp_path, "a", epochs=2, ema=False, patience=0)
    worker.handle_run(config, experiments.run_training)
    run_dir = config.run_dir()
    before = {name: open(os.path.join(run_dir, name), "rb").read()
              for name in sorted(os.listdir(run_dir))}
    assert {"model.keras", "history.csv", "metrics.json", "curves.png"} <= set(before)
    with pytest.raises(Interrupt):
        worker.handle_run(config, _interrupted(2, 1), force=True)
    after = {name: open(os.path.join(run_dir, name), "rb").read()
             for name in sorted(os.listdir(run_dir))}
    assert after == before
    outcome = worker.handle_run(config, experiments.run_training)
    assert outcome.status == worker.DONE
    # The kept model is the recorded one: it scores the recorded test accuracy.
    metrics = worker.read_recorded(config)
    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"))
    x_test, y_test = experiments.prepare_data(config)["test"]
    batches = pipeline.ArrayBatches(x_test, y_test, batch_size=config.batch_size)
    logits = model.predict(batches, verbose=0)
    assert np.mean(np.argmax(logits, -1) == y_test) == metrics["test_accuracy"]
    # The forced retrain, run again, resumes and replaces the run in one step.
    outcome = worker.handle_run(config, experiments.run_training, force=True)
    assert outcome.status == worker.TRAINED and outcome.detail.startswith("resumed at epoch 2")
    assert not os.path.exists(staging.staging_dir(run_dir))


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    from keras_fmnist import resume

    directory = str(tmp_path)
    header = {"epoch": 1, "stopped": False, "identity": "aaaa", "pieces": {}}
    np.savez(os.path.join(directory, resume.STATE_FILE),
             __state__=np.array(__import__("json").dumps(header)))
    assert resume.load(directory, "aaaa").epoch == 1
    assert resume.load(directory, "bbbb") is None
    with open(os.path.join(directory, resume.STATE_FILE), "wb") as f:
        f.write(b"not a checkpoint")
    assert resume.load(directory, "aaaa") is None
