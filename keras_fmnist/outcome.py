"""What became of one run of a sweep: its `Status`, its directory, its recorded metrics.

Two words describe a run and they answer different questions. A run's record
(`metrics.json`, written by `experiments.run_training`) says how its training ended:
`"finished"` or `"diverged"`. An `Outcome` says what this sweep did with the run, in one
vocabulary (`Status`) that every executor returns and `run.py` prints as
`run.py: <run dir> (<status>): <detail>`.
"""

import dataclasses
import enum
import os

from keras_fmnist import artifacts

# The statuses a run's record (metrics.json) can end with.
RECORD_FINISHED, RECORD_DIVERGED = "finished", "diverged"
SUMMARY_KEYS = ("val_accuracy", "test_accuracy")


class Status(enum.StrEnum):
    """What a sweep did with a run."""

    TRAINED = "trained"  # trained to the end now
    DONE = "done"  # finished before, with this identity: not trained again
    CLAIMED = "claimed"  # another live worker is training it
    DIVERGED = "diverged"  # its training loss stopped being finite (now or before)
    SKIPPED = "skipped"  # the plan leaves it out (e.g. p = 1.0 drops every block)
    INTERRUPTED = "interrupted"  # stopped, or never started because the sweep stopped
    FAILED = "failed"  # a worker process or a Ray trial died without a result

    @property
    def recorded(self) -> bool:
        """The run has a final record (finished or diverged)."""
        return self in (Status.TRAINED, Status.DONE, Status.DIVERGED)


@dataclasses.dataclass
class Outcome:
    """What became of one run."""

    status: Status
    run_dir: str
    metrics: dict | None = None
    detail: str = ""

    def __post_init__(self):
        self.status = Status(self.status)  # "trained" from a worker's JSON, or a Status

    def line(self) -> str:
        """`<run dir> (<status>): <detail>`, the run's one line in run.py's output."""
        return f"{self.run_dir} ({self.status}): {self.detail}"

    def to_json(self) -> dict:
        return {"status": str(self.status), "run_dir": self.run_dir, "detail": self.detail}

    @property
    def finished(self) -> bool:
        """A run with a recorded result (finished or diverged)."""
        return self.status.recorded


def summary(metrics: dict) -> str:
    """The detail of a recorded run's line: its accuracies, or where it diverged."""
    if metrics.get("status") == RECORD_DIVERGED:
        at = metrics.get("diverged_at") or {}
        return (f"training loss not finite at epoch {at.get('epoch', '?')}, batch "
                f"{at.get('batch', '?')}; no model kept, test set not used")
    parts = [f"{k} {metrics[k]:.4f}" for k in SUMMARY_KEYS if metrics.get(k) is not None]
    return ", ".join(parts) or "no accuracy recorded"


def metrics_path(run_dir: str) -> str:
    return os.path.join(run_dir, "metrics.json")


def read_recorded(config, warn=None) -> dict | None:
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
    if status not in (RECORD_FINISHED, RECORD_DIVERGED):
        if warn:
            warn(f"warning: {path} records no final status; the run is retrained")
        return None
    if metrics.get("identity_hash") != config.identity_hash():
        if warn:
            warn(f"warning: {path} records a run with other settings "
                 f"({metrics.get('identity_hash')}); the run is retrained")
        return None
    return metrics


def recorded_outcome(config, metrics: dict) -> Outcome:
    """The outcome of a run that has a record from before: done, or diverged."""
    status = Status.DIVERGED if metrics["status"] == RECORD_DIVERGED else Status.DONE
    return Outcome(status, config.run_dir(), metrics, summary(metrics))


def trained_outcome(config, metrics: dict) -> Outcome:
    """The outcome of a run trained now (resumed or not) from the record it wrote."""
    status = Status.DIVERGED if metrics.get("status") == RECORD_DIVERGED else Status.TRAINED
    detail = summary(metrics)
    if metrics.get("resumed_from_epoch"):
        detail = (f"resumed at epoch {metrics['resumed_from_epoch'] + 1} of "
                  f"{config.epochs}; {detail}")
    return Outcome(status, config.run_dir(), metrics, detail)


def reported_outcome(config, status, detail: str) -> Outcome:
    """The outcome a worker process or a Ray trial reported (status and detail), with the
    metrics read back from the run's record when it has one."""
    status = Status(status)
    metrics = read_recorded(config) if status.recorded else None
    return Outcome(status, config.run_dir(), metrics, detail)
