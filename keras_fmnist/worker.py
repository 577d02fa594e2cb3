"""One run handled by one worker: check, claim, train, release, and say what happened.

`handle_run` is what every engine calls for each run of a sweep, in this process, in a
child process (`python -m keras_fmnist.worker`, the local engine with `--workers` > 1) or in a
Ray trial. The "finished?" check happens under the run's claim lock right before training
(`claims.try_claim`), so concurrent workers and sweeps train each run once between them.
"""

import argparse
import dataclasses
import json
import os
import signal
import sys

from keras_fmnist import artifacts
from keras_fmnist import claims
from keras_fmnist import experiments
from keras_fmnist import interrupt
from keras_fmnist import staging

# How a run ended, as `run.py: <run dir> (<status>): ...` reports it.
TRAINED, DONE, CLAIMED, DIVERGED, SKIPPED, INTERRUPTED, FAILED = (
    "trained", "done", "claimed", "diverged", "skipped", "interrupted", "failed")
# Exit codes of `python -m keras_fmnist.worker` (the result file says more).
EXIT_CODES = {TRAINED: 0, DONE: 0, SKIPPED: 0, CLAIMED: 0, DIVERGED: 0, INTERRUPTED: 130,
              FAILED: 1}
SUMMARY_KEYS = ("val_accuracy", "test_accuracy")


@dataclasses.dataclass
class Outcome:
    """What became of one run."""

    status: str
    run_dir: str
    metrics: dict | None = None
    detail: str = ""

    def line(self):
        """`<run dir> (<status>): <detail>`, the run's one line in run.py's output."""
        return f"{self.run_dir} ({self.status}): {self.detail}"

    def to_json(self):
        return {"status": self.status, "run_dir": self.run_dir, "detail": self.detail}

    @property
    def finished(self):
        """A run with a recorded result (finished or diverged)."""
        return self.status in (TRAINED, DONE, DIVERGED)


def summary(metrics):
    if metrics.get("status") == "diverged":
        at = metrics.get("diverged_at") or {}
        return (f"training loss not finite at epoch {at.get('epoch', '?')}, batch "
                f"{at.get('batch', '?')}; no model kept, test set not used")
    parts = [f"{k} {metrics[k]:.4f}" for k in SUMMARY_KEYS if metrics.get(k) is not None]
    return ", ".join(parts) or "no accuracy recorded"


def metrics_path(run_dir):
    return os.path.join(run_dir, "metrics.json")


def read_recorded(config, warn=None):
    """The run's recorded metrics when it finished (or diverged) with this identity, else None.

    A `metrics.json` that cannot be read, lacks a status, or belongs to another identity
    counts as unfinished; `warn` gets one line saying so.
    """
    path = metrics_path(config.run_dir())
    if not os.path.exists(path):
        return None
    try:
        metrics = artifacts.read_json(path)
        status = metrics.get("status")
    except (OSError, ValueError, AttributeError) as e:
        if warn:
            warn(f"warning: {path} cannot be read ({type(e).__name__}); the run is retrained")
        return None
    if status not in ("finished", "diverged"):
        if warn:
            warn(f"warning: {path} records no final status; the run is retrained")
        return None
    if metrics.get("identity_hash") != config.identity_hash():
        if warn:
            warn(f"warning: {path} records a run with other settings "
                 f"({metrics.get('identity_hash')}); the run is retrained")
        return None
    return metrics


def recorded_outcome(config, metrics):
    status = DIVERGED if metrics["status"] == "diverged" else DONE
    return Outcome(status, config.run_dir(), metrics, summary(metrics))


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
    status = DIVERGED if metrics.get("status") == "diverged" else TRAINED
    detail = summary(metrics)
    if metrics.get("resumed_from_epoch"):
        detail = (f"resumed at epoch {metrics['resumed_from_epoch'] + 1} of "
                  f"{config.epochs}; {detail}")
    return Outcome(status, run_dir, metrics, detail)


def config_to_json(config):
    return json.dumps(dataclasses.asdict(config))


def config_from_json(text):
    fields = json.loads(text)
    fields["deform_layers"] = tuple(fields.get("deform_layers") or ())
    return experiments.RunConfig(**fields)


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
    [--parent_pid=PID]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True, help="the RunConfig as JSON")
    parser.add_argument("--result", required=True, help="where the Outcome is written (JSON)")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--parent_pid", type=int, default=0,
                        help="stop (SIGTERM) when this parent process dies")
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
        outcome = handle_run(config, experiments.run_training, force=args.force,
                             warn=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        outcome = Outcome(INTERRUPTED, config.run_dir(), None, "interrupted")
    artifacts.write_json(args.result, outcome.to_json())
    return EXIT_CODES[outcome.status]


if __name__ == "__main__":
    sys.exit(main())
