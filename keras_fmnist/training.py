"""Training recipes with Keras: the study's (Adam 3e-4, early stopping) and the pieces of a
stronger one (SGD with Nesterov momentum, cosine decay with warm-up, label smoothing, weight
averaging), all Keras' own.

Labels are one-hot (or MixUp/CutMix soft) vectors, so the loss is categorical cross-entropy on
logits and accuracy compares argmaxes: the same compiled model serves plain and mixed batches.
"""

import os
import time

import keras

from keras_fmnist import callbacks as fm_callbacks
from keras_fmnist import optimizers
from keras_fmnist import resume

LEARNING_RATE = 3e-4
EPOCHS = 10
PATIENCE = 3
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(learning_rate, schedule="constant", total_steps=None,
                           warmup_steps=0):
    """`learning_rate` as a float ("constant") or Keras' `CosineDecay` ("cosine"): linear
    warm-up from 0 to `learning_rate` over `warmup_steps`, then cosine decay to 0 at
    `total_steps` (Loshchilov & Hutter 2017: lr_t = lr / 2 * (1 + cos(pi * t / T)))."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(LR_SCHEDULES)}; got {schedule!r}")
    if schedule == "constant":
        if warmup_steps:
            raise ValueError("warm-up needs schedule='cosine'")
        return learning_rate
    if not total_steps or total_steps <= warmup_steps:
        raise ValueError(
            f"cosine decay needs total_steps > warmup_steps; got total_steps={total_steps}, "
            f"warmup_steps={warmup_steps}"
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(name="adam", learning_rate=LEARNING_RATE, momentum=0.9, weight_decay=0.0,
                   ema=False, ema_momentum=0.999):
    """Keras' `Adam` or `SGD(nesterov=True)`; `weight_decay` is Keras' decoupled decay
    (w <- w - lr * weight_decay * w, Loshchilov & Hutter 2019); `ema` keeps Keras' moving
    average of the weights (`use_ema`; `fit` validates and keeps the averaged weights)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {name!r}")
    common = dict(
        learning_rate=learning_rate,
        weight_decay=weight_decay or None,
        use_ema=bool(ema),
        ema_momentum=ema_momentum,
    )
    if name == "sgd":
        return keras.optimizers.SGD(momentum=momentum, nesterov=True, **common)
    return default_adam(**common)


def default_adam(**kwargs):
    """Keras' Adam; on torch `FusedAdam` (the same update through one fused kernel, saved as
    `keras.optimizers.Adam`)."""
    if keras.backend.backend() == "torch":
        return optimizers.FusedAdam(**kwargs)
    return keras.optimizers.Adam(**kwargs)


def compile_model(model: keras.Model, learning_rate: float = LEARNING_RATE,
                  optimizer: keras.optimizers.Optimizer | None = None,
                  label_smoothing: float = 0.0) -> keras.Model:
    """Compiles with cross-entropy on logits and argmax accuracy; the optimizer is `optimizer`
    (e.g. from `make_optimizer`) or, by default, the study's Keras `Adam(learning_rate)`.

    The default optimizer is `default_adam` (on torch `FusedAdam`: Keras' update through one
    fused kernel, saved as `keras.optimizers.Adam`). Pass `keras_fmnist.accelerate(model)`
    for speed on torch.
    """
    model.compile(
        optimizer=optimizer or default_adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing
        ),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def fit(
    model,
    train_batches,
    val_batches=None,
    epochs=EPOCHS,
    patience=PATIENCE,
    run_dir=None,
    extra_callbacks=(),
    verbose=2,
    resume_dir=None,
    identity=None,
):
    """Trains with early stopping on validation accuracy, restoring the best weights.

    Args:
        model: a compiled model.
        train_batches: a PyDataset (or anything `model.fit` takes) of (images, one-hot labels).
        val_batches: validation batches, never augmented; None trains for `epochs` (the study's
            final retraining on train+validation).
        epochs: maximum epochs.
        patience: epochs without a validation-accuracy improvement before stopping; 0 never
            stops early. Either way the model ends with the best validation epoch's weights.
        run_dir: where `history.csv` and the best `model.keras` go (atomically, every epoch).
        extra_callbacks: more callbacks, e.g. the DropBlock schedule. Those with
            `get_state`/`set_state` are saved and restored with a resumed training.
        verbose: Keras' fit verbosity.
        resume_dir: where the mid-run checkpoint goes (`keras_fmnist.resume`, every epoch);
            a checkpoint found there for `identity` is resumed from. Needs `run_dir`.
        identity: the run's identity hash, recorded in and checked against the checkpoint.

    Returns:
        A dict: "history" (per-epoch logs, resumed epochs included), "epochs_run",
        "best_epoch", "stopped_early", "train_seconds", "train_images_per_second",
        "wall_seconds", "resumed_from_epoch" (epochs taken from the checkpoint, 0 if none).
    """
    if resume_dir is not None and run_dir is None:
        raise ValueError("resume_dir needs run_dir (the history the checkpoint continues)")
    throughput = fm_callbacks.Throughput(_num_examples(train_batches))
    callbacks = [throughput, *extra_callbacks]
    pieces = {"throughput": throughput}
    for callback in extra_callbacks:
        if hasattr(callback, "get_state"):  # named by type: other callbacks may come and go
            name = type(callback).__name__
            count = sum(1 for key in pieces if key.split("#")[0] == name)
            pieces[f"{name}#{count}"] = callback
    if hasattr(train_batches, "get_state"):
        pieces["train_batches"] = train_batches
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    if getattr(optimizer, "use_ema", False):
        # Validation, early stopping and the checkpoint see the averaged weights (listed
        # before the latter two); Keras keeps them in the model at the last epoch's end.
        swap = keras.callbacks.SwapEMAWeights(swap_on_epoch=True)
        callbacks.append(swap)
        pieces["swap_ema"] = resume.SwapEMAWeightsState(swap)
    early = None
    if val_batches is not None:
        # Keras restores the best epoch's weights at the end of training, stopped early or
        # not; patience 0 ("no early stopping") is a patience no run can exhaust, so the
        # model is still the best validation epoch's.
        early = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=patience or epochs + 1,
            restore_best_weights=True,
        )
        callbacks.append(early)
        pieces["early_stopping"] = resume.EarlyStoppingState(early)
    history_csv = None
    if run_dir is not None:
        history_csv = fm_callbacks.HistoryCSV(os.path.join(run_dir, "history.csv"))
        callbacks.append(history_csv)
        pieces["history"] = history_csv
        if val_batches is not None:
            checkpoint = fm_callbacks.BestModelCheckpoint(
                os.path.join(run_dir, "model.keras"), monitor="val_accuracy", mode="max"
            )
            callbacks.append(checkpoint)
            pieces["best_model"] = checkpoint
    initial_epoch = resumed_from = 0
    if resume_dir is not None:
        state = resume.load(resume_dir, identity)
        if state is not None:
            resumed_from = state.epoch
            initial_epoch = epochs if state.stopped else min(state.epoch, epochs)
        non_finite = [c for c in extra_callbacks if isinstance(c, fm_callbacks.StopOnNonFiniteLoss)]
        callbacks.append(resume.TrainingCheckpoint(  # last: after every other callback
            resume_dir, pieces, identity=identity, resume_from=state,
            skip_save=lambda: any(c.diverged_at is not None for c in non_finite),
        ))
    start = time.perf_counter()
    history = model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=callbacks,
        verbose=verbose,
    )
    wall = time.perf_counter() - start
    if history_csv is not None:  # every epoch, those before a resume included
        rows = history_csv.rows
        keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k != "epoch"]
        logs = {k: [row[k] for row in rows if k in row] for k in keys}
    else:
        logs = history.history
    epochs_run = len(next(iter(logs.values()))) if logs else 0
    if "val_accuracy" in logs:
        best_epoch = max(range(epochs_run), key=lambda i: logs["val_accuracy"][i]) + 1
    else:
        best_epoch = epochs_run
    return {
        "history": {k: [float(v) for v in vs] for k, vs in logs.items()},
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "stopped_early": bool(early is not None and early.stopped_epoch > 0),
        "train_seconds": sum(throughput.train_seconds),
        "train_images_per_second": throughput.images_per_second,
        "wall_seconds": wall,
        "resumed_from_epoch": resumed_from,
    }


def _num_examples(batches):
    if hasattr(batches, "images"):
        return len(batches.images)
    raise TypeError("train_batches must expose .images (use keras_fmnist.pipeline.ArrayBatches)")
