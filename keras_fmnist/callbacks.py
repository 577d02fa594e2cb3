"""Training callbacks that write artifacts atomically and measure throughput."""

import csv
import io
import math
import time

import keras

from keras_fmnist import artifacts


class BestModelCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever `monitor` improves, atomically (unlike ModelCheckpoint).

    Args:
        path: the `.keras` file.
        monitor: a log key, e.g. "val_accuracy".
        mode: "max" or "min".
    """

    def __init__(self, path, monitor="val_accuracy", mode="max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got {mode!r}")
        self.path = path
        self.monitor = monitor
        self.mode = mode
        self.best = None
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        better = self.best is None or (
            value > self.best if self.mode == "max" else value < self.best
        )
        if better:
            self.best, self.best_epoch = float(value), epoch + 1
            artifacts.save_model(self.model, self.path)

    def get_state(self):
        """What a resumed training needs (`keras_fmnist.resume`)."""
        return {"best": self.best, "best_epoch": self.best_epoch}, {}

    def set_state(self, state, arrays):
        self.best, self.best_epoch = state["best"], state["best_epoch"]


class HistoryCSV(keras.callbacks.Callback):
    """Rewrites the whole history CSV after every epoch (atomically, so never half a row)."""

    def __init__(self, path, extra_columns=None):
        super().__init__()
        self.path = path
        self.extra_columns = extra_columns or {}
        self.rows = []

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1, **self.extra_columns}
        row.update({k: float(v) for k, v in (logs or {}).items()})
        self.rows.append(row)
        columns = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        artifacts.write_text(self.path, buffer.getvalue())

    def get_state(self):
        """What a resumed training needs (`keras_fmnist.resume`): the rows so far."""
        return {"rows": self.rows}, {}

    def set_state(self, state, arrays):
        self.rows = [dict(row) for row in state["rows"]]


class Throughput(keras.callbacks.Callback):
    """Training images/s, timing only the training phase of each epoch (not validation)."""

    def __init__(self, examples_per_epoch):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.train_seconds = []
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def _stop(self):
        if self._start is not None:
            self.train_seconds.append(time.perf_counter() - self._start)
            self._start = None

    def on_test_begin(self, logs=None):
        self._stop()

    def on_epoch_end(self, epoch, logs=None):
        self._stop()

    def get_state(self):
        """What a resumed training needs (`keras_fmnist.resume`)."""
        return {"train_seconds": self.train_seconds}, {}

    def set_state(self, state, arrays):
        self.train_seconds = list(state["train_seconds"])

    @property
    def images_per_second(self):
        total = sum(self.train_seconds)
        return self.examples_per_epoch * len(self.train_seconds) / total if total else None


class StopOnNonFiniteLoss(keras.callbacks.TerminateOnNaN):
    """Keras' `TerminateOnNaN` that also records where the loss stopped being finite.

    Attributes:
        diverged_at: None, or {"epoch": e, "batch": b} (1-based epoch, 0-based batch).
    """

    def __init__(self):
        super().__init__(raise_error=False)
        self.diverged_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.diverged_at is None and loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = {"epoch": self._epoch, "batch": int(batch)}
        super().on_batch_end(batch, logs)
