"""Training-time schedules of regularisation strength."""

import warnings

import keras

from keras_fmnist.backend import private_api
from keras_fmnist.layers.drop_block import DropBlock2D
from keras_fmnist.validation import validate_positive_int


class DropBlockSchedule(keras.callbacks.Callback):
    """Ramps every DropBlock2D's drop rate linearly from 0 to its `rate`.

    Ghiasi et al. 2018 found DropBlock works best when the keep probability
    decreases linearly from 1 to its target over training instead of starting
    at the target. Before each training batch, with `step` the number of
    training batches this callback has already seen (0 for the first batch, and
    counting on across `fit` calls), every `DropBlock2D` in the model, nested
    models and layers held by custom layers included, gets

        current_rate = layer.rate * min(1, step / total_steps)

    so the first batch trains without DropBlock and every batch from
    `total_steps` on trains at the layer's full `rate`. The update is per batch
    (the paper's schedule is per iteration); with `steps_per_execution > 1`
    Keras calls batch callbacks once per execution, so each execution then
    counts as one step. Each layer is ramped to its own `rate`, so layers with
    different rates keep their ratio.

    The rate is written into `DropBlock2D.current_rate`, a non-trainable
    variable, so nothing is rebuilt or recompiled. On the JAX backend the
    trainer keeps the variables' values outside the model during an epoch; the
    callback makes it write them back (through `self.model`) only on the
    batches where the rate changes, i.e. not any more once the ramp is over.

    Args:
        total_steps: Int >= 1, the number of training batches over which the
            rate goes from 0 to its target. `None` (default) uses the whole of
            the first `fit` call it is used in, `epochs * steps_per_epoch` from
            that call (which needs a dataset of known length or an explicit
            `steps_per_epoch`).

    Example:

    ```python
    model.fit(x, y, epochs=10, callbacks=[DropBlockSchedule()])
    # or, ramping over the first 3 epochs of 469 steps only:
    model.fit(x, y, epochs=10, callbacks=[DropBlockSchedule(total_steps=3 * 469)])
    ```
    """

    def __init__(self, total_steps=None):
        super().__init__()
        self.total_steps = validate_positive_int("total_steps", total_steps, allow_none=True)
        self.step = 0
        self._layers = []
        self._applied_fraction = None

    def get_state(self):
        """What a resumed training needs (`keras_fmnist.resume`): the steps seen."""
        return {"step": self.step}, {}

    def set_state(self, state, arrays):
        self.step = int(state["step"])

    def fraction(self, step):
        """The fraction of each layer's `rate` applied at training batch `step`."""
        return min(1.0, step / self.total_steps)

    def on_train_begin(self, logs=None):
        if self.total_steps is None:
            epochs = self.params.get("epochs")
            steps = self.params.get("steps")
            if not epochs or not steps:
                raise ValueError(
                    "DropBlockSchedule(total_steps=None) takes the ramp length "
                    "from fit's epochs * steps per epoch, which is unknown here "
                    f"(epochs={epochs}, steps={steps}). Pass `total_steps`, or "
                    "`steps_per_epoch` to fit."
                )
            self.total_steps = int(epochs) * int(steps)
        # Also layers stored as attributes of custom layers, which `model.layers` does
        # not list.
        self._layers = [
            layer for layer in private_api.all_layers(self.model) if isinstance(layer, DropBlock2D)
        ]
        if not self._layers:
            warnings.warn(
                "DropBlockSchedule: the model has no DropBlock2D layer; the "
                "callback does nothing.",
                stacklevel=2,
            )
        # Force a write on the first batch: the variables may hold anything
        # (their initial `rate`, or the value of an earlier fit).
        self._applied_fraction = None

    def on_train_batch_begin(self, batch, logs=None):
        fraction = self.fraction(self.step)
        if fraction == self._applied_fraction:
            return
        # On JAX, reading `self.model` syncs the trainer's state back into the
        # variables and makes it re-read them before the step; without it the
        # assignment would be overwritten by the trainer's stale copy.
        self.model  # noqa: B018
        for layer in self._layers:
            layer.current_rate.assign(layer.rate * fraction)
        self._applied_fraction = fraction

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
