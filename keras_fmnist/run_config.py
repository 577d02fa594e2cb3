"""Every setting of one training run, in one place: its default, its meaning and what values
it takes.

`RunConfig` is frozen and checks itself when it is made (a wrong value is a `ValueError` naming
the setting), so a run that was planned is a run that can start. The command line is made from
it: each field marked as a flag (`setting(...)`) becomes `run.py`'s `--<name>` with the same
default, help and bounds (`flag_settings`), so a new setting is one field here.

`plan_run(config)` is what planning computes once per run: its identity (everything that can
change its result, `keras_fmnist.run_identity`), the identity's hash and its directory, as a
`PlannedRun`. `RunConfig.identity()`, `identity_hash()` and `run_dir()` are that plan's
fields, computed on first use and kept with the (immutable) config.
"""

import dataclasses
import math
import numbers
import os
import types
from typing import Any

import keras

from keras_fmnist import run_data
from keras_fmnist import run_identity
from keras_fmnist import study
from keras_fmnist.models.resnet import REGULARIZERS
from keras_fmnist.models.resnet import default_data_format
from keras_fmnist.training import EPOCHS
from keras_fmnist.training import LEARNING_RATE
from keras_fmnist.training import PATIENCE

# The experiments a run belongs to (its directory under the artifacts root); the others of
# run.py's --experiment plan runs of these.
RUN_EXPERIMENTS = tuple(e for e in study.EXPERIMENTS if e not in ("report", "study", "headline"))
AUGMENTATIONS = (*study.AUGMENTATIONS, *study.EXTRA_AUGMENTATIONS)


def setting(default, help, *, choices=None, lower=None, upper=None, flag=True):
    """A RunConfig field: its default, a one-line meaning, and the values it takes.

    Args:
        default: the value where none is given (the command line's default too).
        help: what the setting means (the flag's help).
        choices: the allowed values, for a string setting.
        lower, upper: inclusive bounds of a number.
        flag: whether run.py offers it as `--<name>` (False: set by the planner).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "choices": choices, "lower": lower, "upper": upper, "flag": flag})


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every setting of one run. Frozen: change one with `dataclasses.replace`.

    Example:

    ```python
    config = RunConfig(experiment="augment", augment="cutmix", epochs=2, train_limit=600)
    config.run_dir()  # 'artifacts/augment/aug-cutmix_e2_seed0_n600-<hash>'
    ```
    """

    experiment: str = setting(
        "baseline", "The experiment the run belongs to (its directory).",
        choices=RUN_EXPERIMENTS, flag=False)
    epochs: int = setting(EPOCHS, "Maximum training epochs.", lower=1)
    batch_size: int = setting(128, "Examples per batch.", lower=1)
    seed: int = setting(0, "Seed of weights, split, shuffling and augmentation.", lower=0)
    learning_rate: float = setting(LEARNING_RATE, "Peak learning rate.", lower=0.0)
    patience: int = setting(
        PATIENCE, "Early stopping: epochs without a val-accuracy gain (0 disables).", lower=0)
    val_fraction: float = setting(
        0.1, "Share of each training class held out for validation, in (0, 1).")
    train_limit: int | None = setting(
        None, "Use only the first N training examples (smoke runs).", lower=1)
    test_limit: int | None = setting(None, "Use only the first N test examples.", lower=1)
    data_dir: str | None = setting(
        None, "Directory with the four Fashion-MNIST IDX .gz files (default: "
        "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, ~/.keras/datasets/fashion-mnist).")
    data_source: str = setting(
        "auto", "Where the data comes from: local IDX files (auto falls back to keras' "
        "download), tensorflow-datasets, or keras' download.",
        choices=("auto", "files", "tfds", "keras"))
    artifacts_dir: str = setting(
        "artifacts", "Root of the outputs: <artifacts_dir>/<experiment>/<run name>/.")
    run_name: str | None = setting(
        None, "Name of a single run's directory (default: its settings and a hash of its "
        "identity); not allowed with a sweep.")
    stem: str = setting(
        "imagenet", "imagenet: 7x7/2 conv + max-pool (the study); cifar: 3x3/1 conv, no pool.",
        choices=("imagenet", "cifar"))
    torchvision_weights: str | None = setting(
        None, "A torchvision resnet18 state_dict (.pth) to start from, e.g. ImageNet weights "
        "as the study did (3-channel stem summed to 1 channel).")
    augment: str = setting("none", "Training augmentation.", choices=AUGMENTATIONS, flag=False)
    deform_layers: tuple = setting((), "Deformable stages, from 1, 2, 3.", flag=False)
    regularizer: str | None = setting(
        None, "DropBlock or stochastic depth on the deformable stages.", choices=REGULARIZERS,
        flag=False)
    p: float = setting(0.1, "Drop probability of the regulariser, in (0, 1].", flag=False)
    block_size: int = setting(7, "DropBlock block size (clamped to the feature map).", lower=1)
    data_format: str | None = setting(
        None, "Internal layout of the model's layers (same results; a speed choice, see "
        "README's Performance section). Default: channels_first on torch (measured faster), "
        "Keras' default elsewhere. The model's input is channels-last either way.",
        choices=("channels_last", "channels_first"))
    train_on_full: bool = setting(
        False, "The study's final retraining on train + validation.", flag=False)
    # The training recipe beyond the study's Adam (defaults: the study's).
    optimizer: str = setting(
        "adam", "adam (the study's) or sgd (Nesterov momentum, --momentum).",
        choices=("adam", "sgd"))
    momentum: float = setting(0.9, "SGD's Nesterov momentum.", lower=0.0, upper=1.0)
    weight_decay: float = setting(
        0.0, "Decoupled weight decay (Keras' weight_decay).", lower=0.0)
    lr_schedule: str = setting(
        "constant", "constant, or cosine decay to 0 after --warmup_epochs of linear warm-up.",
        choices=("constant", "cosine"))
    warmup_epochs: int = setting(
        0, "Linear warm-up epochs (needs --lr_schedule=cosine).", lower=0)
    label_smoothing: float = setting(
        0.0, "Label smoothing of the cross-entropy.", lower=0.0, upper=1.0)
    ema: bool = setting(False, "Validate, keep and test a moving average of the weights.")
    ema_momentum: float = setting(
        0.999, "Momentum of --ema's average.", lower=0.0, upper=1.0)
    tta: bool = setting(
        False, "Also report the test accuracy with horizontal-flip test-time augmentation "
        "(test_accuracy_tta; test_accuracy stays plain).")
    verbose: int = setting(
        2, "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line per epoch.",
        lower=0, upper=2)
    tensorboard: bool = setting(
        False, "Also write keras.callbacks.TensorBoard logs per run (<run dir>/tensorboard; "
        "Keras' callback needs tensorflow; view with `tensorboard --logdir <artifacts_dir>`).")

    def __post_init__(self):
        # A JSON round trip (subprocess workers) gives a list; the identity is the same.
        object.__setattr__(self, "deform_layers", tuple(self.deform_layers))
        for field in dataclasses.fields(self):
            problem = _problem(field, getattr(self, field.name))
            if problem:
                raise ValueError(f"RunConfig.{field.name}: {problem}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"RunConfig.val_fraction must be in (0, 1); got {self.val_fraction!r}")
        # p = 1 drops everything: the study's sweep plans it and the runner skips it.
        if self.regularizer is not None and not 0.0 < self.p <= 1.0:
            raise ValueError(f"RunConfig.p must be in (0, 1]; got {self.p!r}")
        if any(stage not in (1, 2, 3) for stage in self.deform_layers) or len(
                set(self.deform_layers)) != len(self.deform_layers):
            raise ValueError("RunConfig.deform_layers must be distinct stages from 1, 2, 3; "
                             f"got {self.deform_layers!r}")
        if self.run_name is not None and not plain_directory_name(self.run_name):
            raise ValueError("RunConfig.run_name must be a plain directory name: no path "
                             f"separator, not starting with '.'; got {self.run_name!r}")
        if self.warmup_epochs and self.lr_schedule != "cosine":
            raise ValueError("RunConfig.warmup_epochs needs lr_schedule='cosine'")
        if self.warmup_epochs and self.warmup_epochs >= self.epochs:
            raise ValueError(f"RunConfig.warmup_epochs={self.warmup_epochs} must be below "
                             f"epochs={self.epochs}")

    def readable_name(self) -> str:
        """The human part of the run's directory name (the identity hash follows it)."""
        parts = [f"aug-{self.augment}"]
        if self.deform_layers:
            parts.append("deform-" + "-".join(str(s) for s in self.deform_layers))
        if self.regularizer:
            parts.append(f"{self.regularizer}-p{self.p!r}")
        if self.stem != "imagenet":
            parts.append(f"stem-{self.stem}")
        if self.torchvision_weights:
            parts.append("tvinit")
        if self.optimizer != "adam":
            parts.append(self.optimizer)
        if self.lr_schedule != "constant":
            parts.append(self.lr_schedule)
        if self.label_smoothing:
            parts.append(f"ls{self.label_smoothing!r}")
        if self.ema:
            parts.append("ema")
        if self.train_on_full:
            parts.append("trainval")
        parts.append(f"e{self.epochs}")
        parts.append(f"seed{self.seed}")
        if self.train_limit:
            parts.append(f"n{self.train_limit}")
        return "_".join(parts)

    def planned(self) -> "PlannedRun":
        """This run's `plan_run(self)`, computed once (the config cannot change)."""
        plan = self.__dict__.get("_planned")
        if plan is None:
            plan = plan_run(self)
            object.__setattr__(self, "_planned", plan)
        return plan

    def identity(self) -> dict:
        """Everything that can change this run's result (see `keras_fmnist.run_identity`)."""
        return self.planned().identity

    def identity_hash(self) -> str:
        return self.planned().identity_hash

    def run_dir(self) -> str:
        """`<artifacts_dir>/<experiment>/<readable name>-<identity hash>`, or `--run_name`."""
        return self.planned().run_dir


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A run as planning sees it: its settings, identity, identity hash and directory."""

    config: RunConfig
    identity: dict
    identity_hash: str
    run_dir: str


def plan_run(config: RunConfig) -> PlannedRun:
    """Computes the run's identity (which reads the data once per location, for its
    fingerprint and split sizes), its hash and its directory."""
    identity = run_identity.run_identity(
        config, run_data.data_fingerprint(config), run_data.split_sizes(config),
        keras.backend.backend(), config.data_format or default_data_format(),
    )
    digest = run_identity.identity_hash(identity)
    name = config.run_name or f"{config.readable_name()}-{digest}"
    return PlannedRun(config, identity, digest, os.path.join(config.artifacts_dir,
                                                             config.experiment, name))


def plain_directory_name(name: str) -> bool:
    """No path separator, not . or .., not hidden (the dot names beside the runs are claims
    and staging directories)."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    return bool(name) and not name.startswith(".") and not any(s in name for s in separators)


def flag_settings() -> list[dataclasses.Field]:
    """The fields run.py offers as flags, in order."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata["flag"]]


def value_type(field: dataclasses.Field) -> type:
    """int for `int` and `int | None`, and so on."""
    if isinstance(field.type, types.UnionType):
        return next(t for t in field.type.__args__ if t is not type(None))
    return field.type


_ACCEPTS = {bool: bool, int: numbers.Integral, float: numbers.Real, str: str, tuple: tuple}


def _problem(field: dataclasses.Field, value: Any) -> str | None:
    meta = field.metadata
    if value is None:
        return None if field.default is None else "must be given"
    kind = value_type(field)
    if not isinstance(value, _ACCEPTS[kind]) or (kind is not bool and isinstance(value, bool)):
        return f"must be {kind.__name__}; got {value!r}"
    if meta["choices"] is not None and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}; got {value!r}"
    if isinstance(value, numbers.Real) and not math.isfinite(value):
        return f"must be a finite number; got {value!r}"
    if meta["lower"] is not None and value < meta["lower"]:
        return f"must be at least {meta['lower']}; got {value!r}"
    if meta["upper"] is not None and value > meta["upper"]:
        return f"must be at most {meta['upper']}; got {value!r}"
    return None
