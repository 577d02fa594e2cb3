"""Runs the study's experiments: `python run.py --experiment=baseline` (see --helpfull).

This file only turns flags into a `RunConfig` and calls the library. User mistakes (a bad flag
value, an unwritable --artifacts_dir, a bad weights file, a missing or corrupt data file) end
with one line on stderr and exit code 2 before any training; a run that diverged makes the
command end with exit code 1 and a line naming it; Ctrl-C ends with one line and exit code 130.
"""

import errno
import importlib.util
import math
import os
import signal
import sys
import tempfile
import types

INTERRUPTED_LINE = "interrupted: {} finished runs kept; rerun the same command to resume"


# The terminal's stderr, also while `_quietly` points file descriptor 2 elsewhere.
_STDERR = [2]


def _interrupted_while_starting(signum, frame):
    # Until main installs its own handler: the imports below take seconds, and a Ctrl-C there
    # is still one line and exit 130, not a traceback.
    os.write(_STDERR[0], (INTERRUPTED_LINE.format(0) + "\n").encode())
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
signal.signal(signal.SIGTERM, _interrupted_while_starting)


def _quietly(load):
    """Runs `load` (an import) with the native libraries' start-up chatter kept off stderr.

    TensorFlow's C++ libraries log at load time (oneDNN, CUDA drivers, CPU instructions)
    straight to file descriptor 2, before absl logging is set up, so neither
    TF_CPP_MIN_LOG_LEVEL nor absl's Python logging reaches those lines; they would break the
    one-line error contract. They go to a temporary file instead, which is shown only if
    `load` fails. TF_CPP_MIN_LOG_LEVEL is raised to 2 (unless set higher) so that its later
    INFO and WARNING lines stay quiet too; errors still show.
    """
    # At least 2, whatever the environment says: importing TensorFlow sets it to 1 in
    # os.environ, so a run.py started by a Python process that loaded TF inherits 1, and TF
    # then warns at exit ("Error occurred when finalizing GeneratorDataset iterator") after
    # run.py's last line.
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "")
    if not (level.isdigit() and int(level) >= 2):
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    sys.stderr.flush()
    saved = os.dup(2)
    _STDERR[0] = saved
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            load()
            if "tensorflow" in sys.modules:
                # Finding the devices loads the CUDA driver where TF was built with CUDA; on
                # a machine without a GPU that logs an error line ("failed call to cuInit")
                # at the first tensor op, which may come before a user error is reported.
                sys.modules["tensorflow"].config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            _STDERR[0] = 2
            os.close(saved)


def _import_tensorflow_quietly():
    _quietly(lambda: importlib.import_module("tensorflow"))


# The package first: it chooses the backend (the user's, else torch) and imports keras, which
# imports TensorFlow on the tensorflow backend. On the others, Keras imports TensorFlow too
# where it is installed (keras.utils.set_random_seed seeds it), so main imports it quietly
# once the flags are checked: a user error costs no TensorFlow import (about 4 s here), and by
# then keras has imported torch (TF imported before torch segfaults when torchvision loads).
_quietly(lambda: importlib.import_module("keras_fmnist.run_config"))

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from keras_fmnist import run_config  # noqa: E402  (imported above, quietly)
from keras_fmnist import study  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("experiment", "baseline", study.EXPERIMENTS,
                  "Which experiment of the study to run; report only rewrites "
                  "<artifacts_dir>/REPORT.md from the recorded runs.")
flags.DEFINE_string("layers", None,
                    "Deformable stages: all (the 8 configurations; deform only), none, or "
                    "stages from 1,2,3 such as 1,3. Default: all for deform, 1,3 for "
                    "regularize and final, none otherwise.")
flags.DEFINE_enum("augment", None, (*study.AUGMENTATIONS, *study.EXTRA_AUGMENTATIONS, "all"),
                  "Training augmentation: none, basic, mixup, cutmix, or all (augment only). "
                  "Default: all for augment, cutmix for deform/regularize/final, none for "
                  "baseline.")
flags.DEFINE_enum("regularizer", "dropblock", study.REGULARIZERS,
                  "Regulariser of the regularize experiment.")
flags.DEFINE_string("p", "0.1", "Drop probability of the regulariser in (0, 1), or sweep "
                    "(p = 0.1 .. 1.0 in steps of 0.1).")
flags.DEFINE_boolean("force", False, "Retrain runs that already finished (default: a sweep "
                     "skips them and resumes the rest).")
flags.DEFINE_list("seeds", None, "Run each configuration once per seed, e.g. 0,1,2 (overrides "
                  "--seed); the report shows mean +- std over seeds.")
flags.DEFINE_integer("workers", 1, "Runs of a sweep trained at once, each in its own process "
                     "(the CPU's threads are divided among them; on a GPU they share it).",
                     lower_bound=1)
flags.DEFINE_enum("engine", "local", ("local", "ray"),
                  "local: this machine (--workers at once); ray: Ray Tune trials, on a local "
                  "Ray or the cluster at --ray_address (pip install 'keras_fmnist[ray]').")
flags.DEFINE_float("gpus_per_run", 0.0, "Ray engine: GPUs per run; fractions share a GPU "
                   "(0.25 puts four runs on each).", lower_bound=0.0)
flags.DEFINE_string("ray_address", None, "Ray engine: auto or HOST:PORT of a running cluster "
                    "(default: start Ray locally). --artifacts_dir must be storage every node "
                    "sees.")


def _define_setting(field):
    """`--<name>` for a RunConfig setting: its default, help, choices and bounds."""
    meta = field.metadata
    kind = run_config.value_type(field)
    if kind is bool:
        flags.DEFINE_boolean(field.name, field.default, meta["help"])
    elif meta["choices"] is not None:
        flags.DEFINE_enum(field.name, field.default, meta["choices"], meta["help"])
    elif kind in (int, float):
        define = flags.DEFINE_integer if kind is int else flags.DEFINE_float
        define(field.name, field.default, meta["help"], lower_bound=meta["lower"],
               upper_bound=meta["upper"])
    else:
        flags.DEFINE_string(field.name, field.default, meta["help"])


# Every other flag is a setting of the runs, defined once, in RunConfig.
for _field in run_config.flag_settings():
    _define_setting(_field)


def _parses(parse, text):
    """A flag checker that reports the parser's own message (it says what is wrong)."""
    try:
        parse(text)
    except study.PlanError as e:
        raise flags.ValidationError(str(e)) from None
    return True


def _valid_fraction(value):
    return 0.0 < value < 1.0


# absl's bounds let nan through (every comparison with nan is false) and take inf.
for _name in [f.name for f in run_config.flag_settings() if run_config.value_type(f) is float
              ] + ["gpus_per_run"]:
    flags.register_validator(
        _name, lambda value: value is None or math.isfinite(value),
        message=f"--{_name} must be a finite number")


flags.register_validator(
    "run_name", lambda name: name is None or run_config.plain_directory_name(name),
    message="--run_name must be a plain directory name: no path separator, not starting "
            "with '.'")


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


def _valid_seeds(values):
    try:
        seeds = [int(v) for v in values or []]
    except ValueError:
        return False
    return all(s >= 0 for s in seeds) and len(set(seeds)) == len(seeds) and (
        values is None or len(seeds) > 0)


flags.register_validator("seeds", _valid_seeds,
                         message="--seeds must be distinct integers >= 0, such as 0,1,2")


_HELP_FLAGS = {"--help", "--helpfull", "--helpshort", "--helpxml", "-h", "-?"}


def parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(e)
    except UnicodeDecodeError as e:  # absl reads --flagfile as text
        _fail(f"a --flagfile is not UTF-8 text ({e.reason} at byte {e.start})")
    except SystemExit:
        # absl exits 1 after printing help; asking for help is not a failure.
        if _HELP_FLAGS & set(argv[1:]):
            sys.exit(0)
        raise


def _fail(message):
    print(f"run.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def config_from_flags():
    """The RunConfig the flags describe: every setting flag by its name; with
    --experiment=strong, the strong recipe wherever a flag was left unset."""
    values = {f.name: FLAGS[f.name].value for f in run_config.flag_settings()}
    if FLAGS.experiment == "strong":
        values.update(strong_recipe_changes())
    check_recipe(types.SimpleNamespace(**values))
    # The whole-study experiments and the report plan runs of the run experiments; their
    # base config only carries the shared settings.
    experiment = FLAGS.experiment if FLAGS.experiment in run_config.RUN_EXPERIMENTS else "baseline"
    try:
        return run_config.RunConfig(experiment=experiment, **values)
    except ValueError as e:
        _fail(e)


def strong_recipe_changes():
    """The strong recipe's settings wherever the command line (or a flagfile) left a flag
    unset; the study's regularisers join it only when --regularizer is given."""
    from keras_fmnist import recipes

    changes = {k: v for k, v in recipes.STRONG.items() if k != "augment" and not FLAGS[k].present}
    if FLAGS["regularizer"].present:
        changes["regularizer"] = FLAGS.regularizer
    return changes


def check_recipe(config):
    """One line and exit 2 for recipe settings that contradict each other."""
    if config.warmup_epochs and config.lr_schedule != "cosine":
        _fail("--warmup_epochs needs --lr_schedule=cosine")
    if config.warmup_epochs and config.warmup_epochs >= config.epochs:
        _fail(f"--warmup_epochs={config.warmup_epochs} must be below "
              f"--epochs={config.epochs}")


def check_layout(config):
    """One line and exit 2 for a layout this backend cannot run here (channels-first on a
    TensorFlow CPU without oneDNN)."""
    from keras_fmnist.backend import layout
    from keras_fmnist.models.resnet import default_data_format

    try:
        layout.check_channels_first(config.data_format or default_data_format(), "--data_format")
    except ValueError as e:
        _fail(e)


def check_artifacts_dir(path):
    """One line and exit 2 unless `path` is (or can be made) a writable directory."""
    if os.path.exists(path) and not os.path.isdir(path):
        _fail(f"--artifacts_dir={path} is not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        _fail(f"--artifacts_dir={path} is not writable ({e.strerror or e})")


def check_weights(path):
    from keras_fmnist.models.torchvision_weights import load_state_dict_file

    try:
        load_state_dict_file(path)
    except ValueError as e:
        _fail(f"--torchvision_weights: {e}")




def main(argv):
    # absl.app routes Python logging to stderr at INFO; backends log their start-up there
    # (jax: "Unable to initialize backend 'tpu'"), which would break the one-line contract.
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
    if FLAGS.engine != "ray" and (FLAGS.gpus_per_run or FLAGS.ray_address):
        _fail("--gpus_per_run and --ray_address are for --engine=ray")
    check_artifacts_dir(FLAGS.artifacts_dir)
    if FLAGS.torchvision_weights:
        check_weights(FLAGS.torchvision_weights)
    import keras_fmnist
    from keras_fmnist import interrupt
    from keras_fmnist import runner
    from keras_fmnist import worker
    from keras_fmnist.executors import make_executor

    base = config_from_flags()
    check_layout(base)
    if base.tensorboard and not importlib.util.find_spec("tensorflow"):
        _fail("--tensorboard needs tensorflow (Keras' TensorBoard callback writes through "
              "tf.summary): pip install tensorflow tensorboard")
    if "tensorflow" not in sys.modules and importlib.util.find_spec("tensorflow"):
        _import_tensorflow_quietly()
    seeds = [int(s) for s in FLAGS.seeds] if FLAGS.seeds else None
    executor = make_executor(FLAGS.engine, FLAGS.workers, FLAGS.gpus_per_run, FLAGS.ray_address)
    outcomes = []

    def on_result(outcome):
        outcomes.append(outcome)
        print(f"run.py: {outcome.line()}", flush=True)

    def interrupted_line():
        return INTERRUPTED_LINE.format(sum(1 for o in outcomes if o.finished))

    def stop(signum, frame):
        # Handled here rather than by a KeyboardInterrupt, which Keras' fit can swallow (see
        # keras_fmnist.interrupt): stop the workers, release claims, remove temp files, leave.
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing
        executor.stop()
        interrupt.exit_now(interrupted_line())

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def args_dir():
        return os.path.abspath(FLAGS.artifacts_dir)

    try:
        _, report_path = runner.run_experiment(
            FLAGS.experiment, base, layers=FLAGS.layers, augment=FLAGS.augment,
            regularizer=FLAGS.regularizer, p=FLAGS.p, force=FLAGS.force, seeds=seeds,
            executor=executor, log=lambda line: print(line, flush=True), on_result=on_result,
            warn=lambda line: print(f"run.py: {line}", file=sys.stderr, flush=True),
        )
    except (keras_fmnist.DatasetError, study.PlanError) as e:
        _fail(e)
    except KeyboardInterrupt:  # one that a library raised instead of our handler
        executor.stop()
        interrupt.exit_now(interrupted_line())
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Every artifact is written atomically and a run replaces its directory only when
        # finished: what was written before is intact, and the same command resumes.
        executor.stop()
        kept = sum(1 for o in outcomes if o.finished)
        interrupt.exit_now(
            f"run.py: error: {e.strerror} writing {e.filename or args_dir()}; {kept} finished "
            "runs kept; free some space and rerun the same command to resume", code=1)
    if report_path is None:  # a sweep stopped early (e.g. Ray ended its trials)
        interrupt.exit_now(interrupted_line())
    print(f"run.py: report: {report_path}")
    bad = [o for o in outcomes if o.status in (worker.DIVERGED, worker.FAILED)]
    if bad:
        names = ", ".join(f"{o.run_dir} ({o.status})" for o in bad)
        print(f"run.py: error: {len(bad)} run(s) did not finish: {names}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    try:
        app.run(main, flags_parser=parse_flags)
    except KeyboardInterrupt:  # before main's own handler: nothing had started
        print(INTERRUPTED_LINE.format(0), file=sys.stderr)
        sys.exit(130)
