"""Runs the study's experiments: `python run.py --experiment=baseline` (see --helpfull).

This file only turns flags into a `RunConfig` and calls the library; user mistakes (a bad flag
value, a missing or corrupt data file) end with one line on stderr and exit code 2.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "torch")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from keras_fmnist import study  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("experiment", "baseline", study.EXPERIMENTS,
                  "Which experiment of the study to run; report only rewrites "
                  "<artifacts_dir>/REPORT.md from the recorded runs.")
flags.DEFINE_string("layers", None,
                    "Deformable stages: all (the 8 configurations; deform only), none, or "
                    "stages from 1,2,3 such as 1,3. Default: all for deform, 1,3 for "
                    "regularize and final, none otherwise.")
flags.DEFINE_enum("augment", None, (*study.AUGMENTATIONS, "all"),
                  "Training augmentation: none, basic, mixup, cutmix, or all (augment only). "
                  "Default: all for augment, cutmix for deform/regularize/final, none for "
                  "baseline.")
flags.DEFINE_enum("regularizer", "dropblock", study.REGULARIZERS,
                  "Regulariser of the regularize experiment.")
flags.DEFINE_string("p", "0.1", "Drop probability of the regulariser in (0, 1), or sweep "
                    "(p = 0.1 .. 1.0 in steps of 0.1).")
flags.DEFINE_integer("block_size", 7, "DropBlock block size (clamped to the feature map).",
                     lower_bound=1)
flags.DEFINE_enum("data_format", None, ("channels_last", "channels_first"),
                  "Internal layout of the model's layers (same results; a speed choice, see "
                  "README's Performance section). Default: channels_first on torch (measured "
                  "faster), Keras' default elsewhere. The model's input is channels-last "
                  "either way.")
flags.DEFINE_boolean("force", False, "Retrain runs that already finished (default: a sweep "
                     "skips them and resumes the rest).")
flags.DEFINE_integer("epochs", 10, "Maximum training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", 128, "Examples per batch.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of weights, split, shuffling and augmentation.",
                     lower_bound=0)
flags.DEFINE_float("learning_rate", 3e-4, "Adam learning rate.", lower_bound=0.0)
flags.DEFINE_integer("patience", 3,
                     "Early stopping: epochs without a val-accuracy gain (0 disables).",
                     lower_bound=0)
flags.DEFINE_float("val_fraction", 0.1,
                   "Share of each training class held out for validation, in (0, 1).")
flags.DEFINE_integer("train_limit", None,
                     "Use only the first N training examples (smoke runs).", lower_bound=1)
flags.DEFINE_integer("test_limit", None, "Use only the first N test examples.", lower_bound=1)
flags.DEFINE_string("data_dir", None,
                    "Directory with the four Fashion-MNIST IDX .gz files (default: "
                    "$FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist, "
                    "~/.keras/datasets/fashion-mnist).")
flags.DEFINE_enum("data_source", "auto", ("auto", "files", "tfds", "keras"),
                  "Where the data comes from: local IDX files (auto falls back to keras' "
                  "download), tensorflow-datasets, or keras' download.")
flags.DEFINE_string("artifacts_dir", "artifacts",
                    "Root of the outputs: <artifacts_dir>/<experiment>/<run name>/.")
flags.DEFINE_string("run_name", None, "Name of the run directory (default: from the settings).")
flags.DEFINE_enum("stem", "imagenet", ("imagenet", "cifar"),
                  "imagenet: 7x7/2 conv + max-pool (the study); cifar: 3x3/1 conv, no pool.")
flags.DEFINE_string("torchvision_weights", None,
                    "A torchvision resnet18 state_dict (.pth) to start from, e.g. ImageNet "
                    "weights as the study did (3-channel stem summed to 1 channel).")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity: 0 silent, 1 progress bar, 2 a line "
                     "per epoch.", lower_bound=0, upper_bound=2)


def _parses(parse, text):
    try:
        parse(text)
    except study.PlanError:
        return False
    return True


def _valid_fraction(value):
    return 0.0 < value < 1.0


flags.register_validator("val_fraction", _valid_fraction,
                         message="--val_fraction must be in (0, 1)")
flags.register_validator(
    "layers",
    lambda text: text is None or _parses(study.parse_layers, text),
    message="--layers must be all, none or stages from 1,2,3 such as 1,3",
)
flags.register_validator(
    "p",
    lambda text: _parses(study.parse_p, text),
    message="--p must be sweep or a number in (0, 1)",
)
flags.register_validator(
    "torchvision_weights",
    lambda path: path is None or os.path.isfile(path),
    message="--torchvision_weights must name an existing .pth file",
)


_HELP_FLAGS = {"--help", "--helpfull", "--helpshort", "--helpxml", "-h", "-?"}


def parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(e)
    except SystemExit:
        # absl exits 1 after printing help; asking for help is not a failure.
        if _HELP_FLAGS & set(argv[1:]):
            sys.exit(0)
        raise


def _fail(message):
    print(f"run.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def config_from_flags():
    from keras_fmnist.experiments import RunConfig

    return RunConfig(
        experiment=FLAGS.experiment,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        learning_rate=FLAGS.learning_rate,
        patience=FLAGS.patience,
        val_fraction=FLAGS.val_fraction,
        train_limit=FLAGS.train_limit,
        test_limit=FLAGS.test_limit,
        data_dir=FLAGS.data_dir,
        data_source=FLAGS.data_source,
        artifacts_dir=FLAGS.artifacts_dir,
        run_name=FLAGS.run_name,
        stem=FLAGS.stem,
        block_size=FLAGS.block_size,
        data_format=FLAGS.data_format,
        torchvision_weights=FLAGS.torchvision_weights,
        verbose=FLAGS.verbose,
    )


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
    import keras_fmnist
    from keras_fmnist import experiments

    base = config_from_flags()
    try:
        results, report_path = experiments.run_experiment(
            FLAGS.experiment, base, layers=FLAGS.layers, augment=FLAGS.augment,
            regularizer=FLAGS.regularizer, p=FLAGS.p, force=FLAGS.force,
        )
    except (keras_fmnist.DatasetError, study.PlanError) as e:
        _fail(e)
    for config, metrics, status in results:
        if metrics is None:
            print(f"run.py: {config.run_dir()}: {status}")
            continue
        summary = {k: metrics[k] for k in ("val_accuracy", "test_accuracy") if k in metrics}
        print(f"run.py: {metrics['run_dir']} ({status}): "
              + ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    print(f"run.py: report: {report_path}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
