"""One run handled by one worker: check, claim, train, release, and say what happened.

`handle_run` is what every executor (`keras_fmnist.executors`) calls for each run of a sweep:
in this process, in a worker process (`python -m keras_fmnist.worker`, `--workers` > 1) or in
a Ray trial. The "finished?" check happens under the run's claim lock right before training
(`claims.try_claim`), so concurrent workers and sweeps train each run once between them.
"""

import argparse
import dataclasses
import importlib
import json
import os
import signal
import sys

from keras_fmnist import artifacts
from keras_fmnist import claims
from keras_fmnist import experiments
from keras_fmnist import interrupt
from keras_fmnist import staging
from keras_fmnist.outcome import Outcome  # noqa: F401 (re-exported)
from keras_fmnist.outcome import Status
from keras_fmnist.outcome import metrics_path  # noqa: F401 (re-exported)
from keras_fmnist.outcome import read_recorded
from keras_fmnist.outcome import recorded_outcome
from keras_fmnist.outcome import summary  # noqa: F401 (re-exported)
from keras_fmnist.outcome import trained_outcome

# The outcome vocabulary, kept importable from here where callers have always found it.
TRAINED, DONE, CLAIMED, DIVERGED, SKIPPED, INTERRUPTED, FAILED = (
    Status.TRAINED, Status.DONE, Status.CLAIMED, Status.DIVERGED, Status.SKIPPED,
    Status.INTERRUPTED, Status.FAILED)
# Exit codes of `python -m keras_fmnist.worker` (the result file says more).
EXIT_CODES = {TRAINED: 0, DONE: 0, SKIPPED: 0, CLAIMED: 0, DIVERGED: 0, INTERRUPTED: 130,
              FAILED: 1}
DEFAULT_TRAIN_FN = "keras_fmnist.experiments:run_training"


def handle_run(config, train_fn, force=False, warn=None):
    """Trains `config` unless finished (or `force`) or claimed by a live worker.

    The run trains in its staging directory and replaces its directory in one atomic step
    when it has finished (`keras_fmnist.staging`): a retrain (`force`, a corrupt
    metrics.json) interrupted at any point leaves the finished run it was replacing intact.
    A run interrupted before (kill -9, SIGTERM, Ctrl-C, a lost machine) resumes from its last
    completed epoch (`keras_fmnist.resume`).

    Args:
        config: a RunConfig.
        train_fn: called as train_fn(config, extra_callbacks=[...], output_dir=...) ->
            metrics; the callbacks keep the claim alive (experiments.run_training).
        force: retrain a finished run.
        warn: where a one-line warning about an unreadable metrics.json goes.

    Returns:
        An Outcome: trained, diverged (now or before), done or claimed.
    """
    run_dir = config.run_dir()
    finished = (lambda: None) if force else (lambda: read_recorded(config, warn))
    state, value = claims.try_claim(run_dir, finished)
    if state == "done":
        return recorded_outcome(config, value)
    if state == "claimed":
        return Outcome(CLAIMED, run_dir, None, f"claimed by {claims.describe(value)}")
    claim = value
    try:
        metrics = train_fn(config, extra_callbacks=[claims.ClaimHeartbeat(claim)],
                           output_dir=staging.staging_dir(run_dir))
        staging.commit(run_dir)
    finally:
        claim.release()
    return trained_outcome(config, metrics)


def config_to_json(config):
    return json.dumps(dataclasses.asdict(config))


def config_from_json(text):
    fields = json.loads(text)
    fields["deform_layers"] = tuple(fields.get("deform_layers") or ())
    return experiments.RunConfig(**fields)


def train_fn_name(train_fn):
    """`module:qualname` of a module-level function, the form a worker process imports.

    Raises:
        ValueError: `train_fn` cannot be imported by name (a lambda, a nested function, or
            one defined in `__main__`), so a worker process could not run it.
    """
    module = getattr(train_fn, "__module__", None)
    qualname = getattr(train_fn, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"train_fn {train_fn!r} must be a module-level function importable by name "
            "to run in worker processes; use workers=1 (in this process) for others")
    return f"{module}:{qualname}"


def import_train_fn(name):
    """The function `train_fn_name` named."""
    module, _, qualname = name.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def set_threads(threads):
    """Caps the backend's intra-op threads (the CPU share of one of several workers)."""
    if not threads:
        return
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if os.environ.get("KERAS_BACKEND", "torch") == "torch":
        import torch

        torch.set_num_threads(threads)


def stop_with_parent(parent_pid):
    """Has the kernel send this process SIGTERM when its parent dies (Linux), so that a
    sweep killed with kill -9 leaves no worker training on under init."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv=None):
    """`python -m keras_fmnist.worker --config=JSON --result=PATH [--force] [--threads=N]
    [--parent_pid=PID] [--train_fn=MODULE:FUNCTION]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True, help="the RunConfig as JSON")
    parser.add_argument("--result", required=True, help="where the Outcome is written (JSON)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--parent_pid", type=int, default=0,
                        help="stop (SIGTERM) when this parent process dies")
    parser.add_argument("--train_fn", default=DEFAULT_TRAIN_FN,
                        help="the training function, as module:function")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    config = config_from_json(args.config)

    def stop(signum, frame):
        # The parent stops its children with SIGTERM (or the terminal sends SIGINT): release
        # the claim, remove temporary files, record "interrupted" and leave at once.
        outcome = Outcome(INTERRUPTED, config.run_dir(), None, "interrupted")
        artifacts.write_json(args.result, outcome.to_json())
        interrupt.exit_now(None, EXIT_CODES[INTERRUPTED])

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.parent_pid:
        stop_with_parent(args.parent_pid)
    try:
        outcome = handle_run(config, import_train_fn(args.train_fn), force=args.force,
                             warn=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        outcome = Outcome(INTERRUPTED, config.run_dir(), None, "interrupted")
    artifacts.write_json(args.result, outcome.to_json())
    return EXIT_CODES[outcome.status]


if __name__ == "__main__":
    sys.exit(main())
