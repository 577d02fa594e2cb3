"""The study's training recipe with Keras: Adam 3e-4, soft-target cross-entropy, early stopping.

Labels are one-hot (or MixUp/CutMix soft) vectors, so the loss is categorical cross-entropy on
logits and accuracy compares argmaxes: the same compiled model serves plain and mixed batches.
"""

import os
import time

import keras

from keras_fmnist import callbacks as fm_callbacks

LEARNING_RATE = 3e-4
EPOCHS = 10
PATIENCE = 3


def compile_model(model, learning_rate=LEARNING_RATE):
    """Compiles with Keras' Adam(learning_rate), cross-entropy on logits, argmax accuracy.

    Pass `keras_fmnist.accelerate(model)` for speed on torch: its `compile` then also runs
    Adam's update through torch's fused kernel (the same update).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
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
        extra_callbacks: more callbacks, e.g. the DropBlock schedule.
        verbose: Keras' fit verbosity.

    Returns:
        A dict: "history" (per-epoch logs), "epochs_run", "best_epoch", "train_seconds",
        "train_images_per_second", "wall_seconds".
    """
    throughput = fm_callbacks.Throughput(_num_examples(train_batches))
    callbacks = [throughput, *extra_callbacks]
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
    checkpoint = None
    if run_dir is not None:
        callbacks.append(fm_callbacks.HistoryCSV(os.path.join(run_dir, "history.csv")))
        if val_batches is not None:
            checkpoint = fm_callbacks.BestModelCheckpoint(
                os.path.join(run_dir, "model.keras"), monitor="val_accuracy", mode="max"
            )
            callbacks.append(checkpoint)
    start = time.perf_counter()
    history = model.fit(
        train_batches,
        validation_data=val_batches,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    wall = time.perf_counter() - start
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
    }


def _num_examples(batches):
    if hasattr(batches, "images"):
        return len(batches.images)
    raise TypeError("train_batches must expose .images (use keras_fmnist.pipeline.ArrayBatches)")
