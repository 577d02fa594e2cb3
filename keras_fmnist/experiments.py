"""One training run of the study, end to end: data, model, fit, evaluation and artifacts.

`RunConfig` holds every setting of a run; `run_training` composes the library pieces
(data, pipeline, model builder, training, plots, artifacts) and writes, under
`<artifacts_dir>/<experiment>/<run name>/`: `model.keras`, `history.csv`, `metrics.json`,
`curves.png`, `confusion_matrix.png` and `predictions.png`.
"""

import dataclasses
import os
import platform
import time

import numpy as np

import keras

from keras_fmnist import artifacts
from keras_fmnist import pipeline
from keras_fmnist import plots
from keras_fmnist import training
from keras_fmnist.data import load_fashion_mnist
from keras_fmnist.models.resnet import build_resnet18
from keras_fmnist.models.resnet import default_data_format
from keras_fmnist.models.torchvision_weights import load_torchvision_weights

PREDICTION_GRID_SIZE = 24


@dataclasses.dataclass
class RunConfig:
    """Every setting of one run (the CLI flags map onto these fields)."""

    experiment: str = "baseline"
    epochs: int = training.EPOCHS
    batch_size: int = 128
    seed: int = 0
    learning_rate: float = training.LEARNING_RATE
    patience: int = training.PATIENCE
    val_fraction: float = 0.1
    train_limit: int | None = None
    test_limit: int | None = None
    data_dir: str | None = None
    data_source: str = "auto"
    artifacts_dir: str = "artifacts"
    run_name: str | None = None
    stem: str = "imagenet"
    torchvision_weights: str | None = None
    augment: str = "none"
    deform_layers: tuple = ()
    regularizer: str | None = None
    p: float = 0.1
    block_size: int = 7
    data_format: str | None = None  # the model's internal layout; None: default_data_format()
    train_on_full: bool = False  # the study's final retraining on train + validation
    verbose: int = 2

    def default_run_name(self):
        parts = [f"aug-{self.augment}"]
        if self.deform_layers:
            parts.append("deform-" + "-".join(str(s) for s in self.deform_layers))
        if self.regularizer:
            parts.append(f"{self.regularizer}-p{self.p:g}")
        if self.stem != "imagenet":
            parts.append(f"stem-{self.stem}")
        if self.torchvision_weights:
            parts.append("tvinit")
        if self.train_on_full:
            parts.append("trainval")
        parts.append(f"e{self.epochs}")
        parts.append(f"seed{self.seed}")
        if self.train_limit:
            parts.append(f"n{self.train_limit}")
        return "_".join(parts)

    def run_dir(self):
        return os.path.join(
            self.artifacts_dir, self.experiment, self.run_name or self.default_run_name()
        )


def prepare_data(config):
    """Loads, limits and splits the data; returns arrays and the split's description."""
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(
        config.data_dir, source=config.data_source
    )
    if config.train_limit:
        x_train, y_train = x_train[: config.train_limit], y_train[: config.train_limit]
    if config.test_limit:
        x_test, y_test = x_test[: config.test_limit], y_test[: config.test_limit]
    if config.train_on_full:
        train_idx, val_idx = np.arange(len(y_train)), np.zeros(0, np.int64)
    else:
        train_idx, val_idx = pipeline.stratified_split(
            y_train, config.val_fraction, config.seed
        )
    return {
        "train": (x_train[train_idx], y_train[train_idx]),
        "val": (x_train[val_idx], y_train[val_idx]),
        "test": (x_test, y_test),
    }


# MixUp's alpha is the paper's ImageNet value, CutMix's the CutMix paper's default (the study
# does not state its own).
MIXUP_ALPHA = 0.2
CUTMIX_ALPHA = 1.0


def make_augment_layer(name, seed):
    """The training-batch augmentation named by `--augment` (None for "none")."""
    from keras_fmnist import augment

    layers = {
        "none": lambda: None,
        "basic": lambda: augment.BasicAugment(seed=seed),
        "mixup": lambda: augment.MixUp(alpha=MIXUP_ALPHA, seed=seed),
        "cutmix": lambda: augment.CutMix(alpha=CUTMIX_ALPHA, seed=seed),
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
        data_format=config.data_format,  # None: the builder's default_data_format()
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


def run_training(config, extra_callbacks=()):
    """Trains and evaluates one configuration and writes its artifacts.

    Returns:
        The metrics dict that is also written to `metrics.json`.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    run_dir = config.run_dir()
    data = prepare_data(config)
    x_train, y_train = data["train"]
    mean, variance = pipeline.standardisation_stats(x_train)
    model, weights_report = build_model(config, mean, variance)
    training.compile_model(model, config.learning_rate)

    augment = make_augment_layer(config.augment, config.seed)
    train_batches = pipeline.ArrayBatches(
        x_train, y_train, config.batch_size, shuffle=True, seed=config.seed, augment=augment
    )
    val_batches = None
    if len(data["val"][1]):
        val_batches = pipeline.ArrayBatches(*data["val"], batch_size=config.batch_size)
    callbacks = list(extra_callbacks)
    if config.regularizer == "dropblock":
        from keras_fmnist.schedules import DropBlockSchedule

        callbacks.append(
            DropBlockSchedule(total_steps=config.epochs * len(train_batches))
        )
    fit = training.fit(
        model,
        train_batches,
        val_batches,
        epochs=config.epochs,
        patience=config.patience,
        run_dir=run_dir,
        extra_callbacks=callbacks,
        verbose=config.verbose,
    )
    # EarlyStopping restored the best epoch's weights; save that model as the run's model.
    artifacts.save_model(model, os.path.join(run_dir, "model.keras"))

    metrics = {}
    if val_batches is not None:
        val_loss, val_acc = model.evaluate(val_batches, verbose=0)
        metrics.update(val_loss=float(val_loss), val_accuracy=float(val_acc))
    x_test, y_test = data["test"]
    test_batches = pipeline.ArrayBatches(x_test, y_test, batch_size=config.batch_size)
    logits = model.predict(test_batches, verbose=0)
    y_pred = np.argmax(logits, axis=-1)
    test_loss = float(
        keras.ops.convert_to_numpy(
            keras.losses.CategoricalCrossentropy(from_logits=True)(
                pipeline.one_hot(y_test), logits
            )
        )
    )
    metrics.update(test_loss=test_loss, test_accuracy=float(np.mean(y_pred == y_test)))

    plots.training_curves(fit["history"], os.path.join(run_dir, "curves.png"),
                          title=f"{config.experiment}: {os.path.basename(run_dir)}")
    plots.confusion_matrix_figure(
        plots.confusion_matrix(y_test, y_pred), os.path.join(run_dir, "confusion_matrix.png")
    )
    n = min(PREDICTION_GRID_SIZE, len(y_test))
    pick = np.random.default_rng(config.seed).choice(len(y_test), n, replace=False)
    plots.prediction_grid(x_test[pick], y_test[pick], y_pred[pick],
                          os.path.join(run_dir, "predictions.png"))

    metrics.update(
        experiment=config.experiment,
        run_dir=run_dir,
        epochs_run=fit["epochs_run"],
        best_epoch=fit["best_epoch"],
        stopped_early=fit["stopped_early"],
        history=fit["history"],
        train_seconds=fit["train_seconds"],
        train_images_per_second=fit["train_images_per_second"],
        wall_seconds=time.perf_counter() - start,
        split={k: int(len(v[1])) for k, v in data.items()},
        data_format=config.data_format or default_data_format(),
        input_standardisation={"mean": mean, "variance": variance},
        config=dataclasses.asdict(config),
        versions=versions(),
    )
    if weights_report is not None:
        metrics["torchvision_weights"] = {k: len(v) for k, v in weights_report.items()}
    artifacts.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    return metrics


def run_experiment(experiment, base, layers=None, augment=None, regularizer="dropblock",
                   p="0.1", force=False, log=print):
    """Plans, trains (resumably) and reports one experiment of the study.

    Args:
        experiment: a name from `study.EXPERIMENTS`; "report" only rewrites the report.
        base: a RunConfig with the shared settings.
        layers, augment, regularizer, p: the experiment's choices (see `study.plan`).
        force: retrain runs that already finished.
        log: where plan and progress go.

    Returns:
        (results, report_path): results as `sweep.run_sweep` returns them.
    """
    from keras_fmnist import report
    from keras_fmnist import study
    from keras_fmnist import sweep

    results = []
    if experiment != "report":
        configs = study.plan(experiment, base, layers=layers, augment=augment,
                             regularizer=regularizer, p=p)
        data = prepare_data(configs[0])
        n_train, n_val = len(data["train"][1]), len(data["val"][1])
        results = sweep.run_sweep(
            configs, run_training, n_train, n_val, force=force,
            skip=lambda c: None if study.trainable(c) else "not trainable (p = 1.0)", log=log,
        )
        if experiment == "augment":
            for config in configs:
                if config.augment != "none":
                    write_augment_samples(config)
    return results, report.write_report(base.artifacts_dir)
