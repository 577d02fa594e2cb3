"""One training run of the study: its settings and identity, data, model, fit, evaluation.

`RunConfig` (`keras_fmnist.run_config`) holds every setting of a run and names its directory
from its identity; the data comes through `keras_fmnist.run_data`; `run_training` composes the library pieces (`train_model`,
`evaluate_model`, `write_figures`, `run_record`) and writes, under
`<artifacts_dir>/<experiment>/<readable name>-<identity hash>/`: `model.keras`,
`history.csv`, `metrics.json` (last), `curves.png`, `confusion_matrix.png` and
`predictions.png`.
"""

import dataclasses
import os
import platform
import time

import numpy as np

import keras

from keras_fmnist import artifacts
from keras_fmnist import augment
from keras_fmnist import callbacks as fm_callbacks
from keras_fmnist import pipeline
from keras_fmnist import plots
from keras_fmnist import run_identity
from keras_fmnist.run_config import RunConfig  # noqa: F401  (its historical home)
from keras_fmnist.run_data import check_split  # noqa: F401
from keras_fmnist.run_data import data_fingerprint  # noqa: F401
from keras_fmnist.run_data import load_data  # noqa: F401
from keras_fmnist.run_data import prepare_data
from keras_fmnist.run_data import split_sizes  # noqa: F401
from keras_fmnist import staging
from keras_fmnist import training
from keras_fmnist.data import CLASS_NAMES
from keras_fmnist.accelerate import accelerate
from keras_fmnist.models.resnet import build_resnet18
from keras_fmnist.models.resnet import default_data_format
from keras_fmnist.models.torchvision_weights import load_torchvision_weights
from keras_fmnist.schedules import DropBlockSchedule

PREDICTION_GRID_SIZE = 24


# MixUp's alpha is the paper's ImageNet value, CutMix's the CutMix paper's default (the study
# does not state its own).
MIXUP_ALPHA = 0.2
CUTMIX_ALPHA = 1.0


def make_optimizer(config, steps_per_epoch):
    """The run's Keras optimizer: the study's Adam, or the recipe's (see `training`)."""
    schedule = training.learning_rate_schedule(
        config.learning_rate,
        config.lr_schedule,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=config.warmup_epochs * steps_per_epoch,
    )
    return training.make_optimizer(
        config.optimizer, schedule, momentum=config.momentum,
        weight_decay=config.weight_decay, ema=config.ema, ema_momentum=config.ema_momentum,
    )


def compile_for_run(model, config, steps_per_epoch):
    """Compiles `model` as `run_training` does: the run's optimizer and schedule, label
    smoothing, accuracy."""
    training.compile_model(model, optimizer=make_optimizer(config, steps_per_epoch),
                           label_smoothing=config.label_smoothing)


class AugmentChain:
    """Augmentation layers applied one after the other to `{"images", "labels"}` batches."""

    def __init__(self, *layers):
        self.layers = layers

    def __call__(self, batch, training=True):
        for layer in self.layers:
            batch = layer(batch, training=training)
        return batch


def make_augment_layer(name, seed):
    """The training-batch augmentation named by `--augment` (None for "none")."""
    layers = {
        "none": lambda: None,
        "basic": lambda: augment.BasicAugment(seed=seed),
        "mixup": lambda: augment.MixUp(alpha=MIXUP_ALPHA, seed=seed),
        "cutmix": lambda: augment.CutMix(alpha=CUTMIX_ALPHA, seed=seed),
        # Pad-4 random crop and horizontal flip, the usual recipe for small images (a
        # garment upside down is not a garment seen in the test set).
        "crop_flip": lambda: augment.BasicAugment(vertical_flip=False, seed=seed),
        "crop_flip_cutmix": lambda: AugmentChain(
            augment.BasicAugment(vertical_flip=False, seed=seed),
            augment.CutMix(alpha=CUTMIX_ALPHA, seed=seed + 1),
        ),
    }
    if name not in layers:
        raise ValueError(f"augment must be one of {', '.join(layers)}; got {name!r}")
    return layers[name]()


def write_augment_samples(config, count=16):
    """A grid of `count` augmented training images with their label weights."""
    layer = make_augment_layer(config.augment, config.seed)
    data = prepare_data(config)
    x, y = data["train"]
    batch = {"images": pipeline.to_model_inputs(x[:count]),
             "labels": pipeline.one_hot(y[:count])}
    out = layer(batch, training=True) if layer is not None else batch
    path = os.path.join(config.artifacts_dir, config.experiment,
                        f"samples_{config.augment}.png")
    plots.sample_grid(keras.ops.convert_to_numpy(out["images"]),
                      keras.ops.convert_to_numpy(out["labels"]), path,
                      title=f"{config.augment} augmentation")
    return path


def build_model(config, mean=None, variance=None):
    model = build_resnet18(
        stem=config.stem,
        deform_layers=config.deform_layers,
        regularizer=config.regularizer,
        p=config.p,
        block_size=config.block_size,
        input_mean=mean,
        input_variance=variance,
        # The layout the run's identity records: the backend's faster one unless given.
        data_format=config.data_format or default_data_format(),
        seed=config.seed,
    )
    report = None
    if config.torchvision_weights:
        report = load_torchvision_weights(model, config.torchvision_weights)
    return model, report


def versions():
    import importlib.metadata as md

    out = {"python": platform.python_version(), "keras_backend": keras.backend.backend()}
    for package in ("keras", "numpy", "torch", "torchvision", "jax", "tensorflow"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    return out


def train_model(config, data, extra_callbacks=(), output_dir=None, identity_hash=None):
    """Builds, compiles and fits the run's model; returns (model, fit result, diverged_at).

    `diverged_at` is None, or where the training loss first stopped being finite
    ({"epoch", "batch"}): training stops there (`callbacks.StopOnNonFiniteLoss`).
    History, best model and the mid-run checkpoint (`<output_dir>/resume`) go to
    `output_dir` (default: the run's directory); a checkpoint there with this
    `identity_hash` is resumed from.
    """
    output_dir = output_dir or config.run_dir()
    x_train, y_train = data["train"]
    mean, variance = pipeline.standardisation_stats(x_train)
    model, weights_report = build_model(config, mean, variance)
    model = accelerate(model)  # the same layers and weights; saving writes the stock model
    augment = make_augment_layer(config.augment, config.seed)
    train_batches = pipeline.ArrayBatches(
        x_train, y_train, config.batch_size, shuffle=True, seed=config.seed, augment=augment
    )
    compile_for_run(model, config, steps_per_epoch=len(train_batches))
    val_batches = None
    if len(data["val"][1]):
        val_batches = pipeline.ArrayBatches(*data["val"], batch_size=config.batch_size)
    divergence = fm_callbacks.StopOnNonFiniteLoss()
    callbacks = [divergence, *extra_callbacks]
    if config.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(
            log_dir=os.path.join(output_dir, "tensorboard")))
    if config.regularizer == "dropblock":
        callbacks.append(DropBlockSchedule(total_steps=config.epochs * len(train_batches)))
    fit = training.fit(
        model, train_batches, val_batches, epochs=config.epochs, patience=config.patience,
        run_dir=output_dir, extra_callbacks=callbacks, verbose=config.verbose,
        resume_dir=os.path.join(output_dir, staging.RESUME_DIR), identity=identity_hash,
    )
    fit["input_standardisation"] = {"mean": mean, "variance": variance}
    if weights_report is not None:
        fit["torchvision_weights"] = {k: len(v) for k, v in weights_report.items()}
    return model, fit, divergence.diverged_at


def evaluate_model(model, config, data):
    """Validation loss/accuracy (when there is a split) and test loss/accuracy/predictions."""
    metrics = {}
    if len(data["val"][1]):
        val_batches = pipeline.ArrayBatches(*data["val"], batch_size=config.batch_size)
        val_loss, val_acc = model.evaluate(val_batches, verbose=0)
        metrics.update(val_loss=float(val_loss), val_accuracy=float(val_acc))
    x_test, y_test = data["test"]
    test_batches = pipeline.ArrayBatches(x_test, y_test, batch_size=config.batch_size)
    logits = model.predict(test_batches, verbose=0)
    y_pred = np.argmax(logits, axis=-1)
    if config.tta:
        # Flip test-time augmentation: the mean of the softmax of the image and its mirror.
        mirrored = pipeline.ArrayBatches(
            np.ascontiguousarray(x_test[:, :, ::-1]), y_test, batch_size=config.batch_size
        )
        probs = _softmax(logits) + _softmax(model.predict(mirrored, verbose=0))
        metrics["test_accuracy_tta"] = float(np.mean(np.argmax(probs, axis=-1) == y_test))
    test_loss = float(
        keras.ops.convert_to_numpy(
            keras.losses.CategoricalCrossentropy(from_logits=True)(
                pipeline.one_hot(y_test), logits
            )
        )
    )
    metrics.update(test_loss=test_loss, test_accuracy=float(np.mean(y_pred == y_test)))
    return metrics, y_pred


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def write_figures(config, data, fit, y_pred, output_dir=None):
    """The run's curves, test confusion matrix and a grid of test predictions."""
    run_dir = output_dir or config.run_dir()
    plots.training_curves(fit["history"], os.path.join(run_dir, "curves.png"),
                          title=f"{config.experiment}: {os.path.basename(config.run_dir())}")
    x_test, y_test = data["test"]
    plots.confusion_matrix_figure(
        plots.confusion_matrix(y_test, y_pred), os.path.join(run_dir, "confusion_matrix.png")
    )
    n = min(PREDICTION_GRID_SIZE, len(y_test))
    pick = np.random.default_rng(config.seed).choice(len(y_test), n, replace=False)
    plots.prediction_grid(x_test[pick], y_test[pick], y_pred[pick],
                          os.path.join(run_dir, "predictions.png"))


def run_record(config, data, fit, wall_seconds, identity):
    """What every metrics.json holds besides its accuracies: settings, identity, timing."""
    record = {
        "experiment": config.experiment,
        "run_dir": config.run_dir(),
        "identity": identity,
        "identity_hash": run_identity.identity_hash(identity),
        "epochs_run": fit["epochs_run"],
        "best_epoch": fit["best_epoch"],
        "stopped_early": fit["stopped_early"],
        "history": fit["history"],
        "train_seconds": fit["train_seconds"],
        "train_images_per_second": fit["train_images_per_second"],
        "wall_seconds": wall_seconds,
        "split": {k: int(len(v[1])) for k, v in data.items()},
        "data_format": config.data_format or default_data_format(),
        "input_standardisation": fit["input_standardisation"],
        "config": dataclasses.asdict(config),
        "versions": versions(),
    }
    if "torchvision_weights" in fit:
        record["torchvision_weights"] = fit["torchvision_weights"]
    if fit.get("resumed_from_epoch"):
        record["resumed_from_epoch"] = fit["resumed_from_epoch"]
    return record


def run_training(config, extra_callbacks=(), output_dir=None):
    """Trains and evaluates one configuration and writes its artifacts.

    A run whose training loss stops being finite is stopped at once and recorded with
    `"status": "diverged"`: no model is kept and the test set is not touched. A finished run
    is recorded with `"status": "finished"`; its model and val/test numbers are those of the
    best validation epoch (the last epoch without a validation split).

    Args:
        config: the run's RunConfig.
        extra_callbacks: more callbacks for `fit` (e.g. a claim's heartbeat).
        output_dir: where to write; default: the run's directory. `worker.handle_run` gives
            the run's staging directory (`keras_fmnist.staging`) and swaps it in when this
            returns. A mid-run checkpoint there (`resume/`) of the same run is resumed from.

    Returns:
        The metrics dict that is also written, last, to `metrics.json`.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    output_dir = output_dir or config.run_dir()
    identity = config.identity()
    data = prepare_data(config)
    model, fit, diverged_at = train_model(
        config, data, extra_callbacks, output_dir, run_identity.identity_hash(identity))
    model_path = os.path.join(output_dir, "model.keras")
    if diverged_at is not None:
        if os.path.exists(model_path):
            os.remove(model_path)  # an earlier epoch's checkpoint is not this run's result
        metrics = {"status": "diverged", "diverged_at": diverged_at}
    else:
        artifacts.save_model(model, model_path)
        metrics, y_pred = evaluate_model(model, config, data)
        metrics["status"] = "finished"
        write_figures(config, data, fit, y_pred, output_dir)
    metrics.update(run_record(config, data, fit, time.perf_counter() - start, identity))
    artifacts.write_json(os.path.join(output_dir, "metrics.json"), metrics)
    return metrics
