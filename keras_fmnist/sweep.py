"""Resumable sweeps: train a list of runs, skipping the finished ones, with plan and progress.

A run is finished when its `metrics.json` exists: `run_training` writes it last and
atomically, after the model and history. Killing a sweep therefore loses at most the run in
progress (which restarts from scratch next time) and never a recorded result.
"""

import math
import os
import time

import numpy as np

import keras

from keras_fmnist import artifacts


def metrics_path(config):
    return os.path.join(config.run_dir(), "metrics.json")


def is_finished(config):
    return os.path.isfile(metrics_path(config))


def measure_step_seconds(config, steps=3):
    """Seconds per training step of this configuration's model, from a few real steps."""
    from keras_fmnist import training
    from keras_fmnist.experiments import build_model

    model, _ = build_model(config)
    training.compile_model(model, config.learning_rate)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(config.batch_size, 28, 28, 1)).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, config.batch_size)]
    model.train_on_batch(x, y)  # warm-up: builds the optimizer and any compiled graph
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    seconds = (time.perf_counter() - start) / steps
    del model
    keras.backend.clear_session()
    return seconds


def estimate_seconds(config, step_seconds, n_train, n_val):
    """Epochs x (training steps + validation at about a third of a training step's cost)."""
    train_steps = math.ceil(n_train / config.batch_size)
    val_steps = math.ceil(n_val / config.batch_size)
    return config.epochs * (train_steps + val_steps / 3) * step_seconds


def _clock(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_sweep(configs, train_fn, n_train, n_val, force=False, skip=None, log=print,
              step_seconds=None):
    """Trains each config in order, unless finished (or `force`), and returns their metrics.

    Args:
        configs: RunConfigs.
        train_fn: called as train_fn(config) -> metrics (e.g. experiments.run_training).
        n_train, n_val: examples per epoch, for the time estimate.
        force: retrain finished runs too.
        skip: optional predicate; configs for which it returns a reason string are not trained.
        log: where plan and progress lines go.
        step_seconds: seconds per training step for the estimate; None measures it on the
            first run's model.

    Returns:
        A list of (config, metrics or None, status) with status "done", "trained" or a skip
        reason.
    """
    todo = [c for c in configs if force or not is_finished(c)]
    reasons = {id(c): skip(c) for c in configs} if skip else {}
    trainable = [c for c in todo if not reasons.get(id(c))]
    step = step_seconds
    if step is None:
        step = measure_step_seconds(trainable[0]) if trainable else 0.0
    per_run = [estimate_seconds(c, step, n_train, n_val) for c in trainable]
    log(
        f"plan: {len(configs)} run(s), {len(configs) - len(todo)} already finished, "
        f"{len(trainable)} to train, up to {configs[0].epochs} epoch(s) each; "
        f"measured {step * 1000:.0f} ms/step -> estimated {_clock(sum(per_run))} "
        "(upper bound: early stopping may end runs sooner)"
    )
    for c in configs:
        state = "finished" if c not in todo else (reasons.get(id(c)) or "to train")
        log(f"  - {c.run_dir()}: {state}")

    results, start = [], time.perf_counter()
    remaining = list(per_run)
    # Actual over estimated time of the runs done so far corrects the ETA as the sweep goes.
    spent, estimated_spent = 0.0, 0.0
    for i, config in enumerate(configs, 1):
        reason = reasons.get(id(config))
        if config not in todo:
            results.append((config, artifacts.read_json(metrics_path(config)), "done"))
            continue
        if reason:
            results.append((config, None, reason))
            continue
        elapsed = time.perf_counter() - start
        scale = spent / estimated_spent if estimated_spent else 1.0
        log(f"[{i}/{len(configs)}] {config.run_dir()} | elapsed {_clock(elapsed)} | "
            f"ETA {_clock(scale * sum(remaining))}")
        run_start = time.perf_counter()
        metrics = train_fn(config)
        spent += time.perf_counter() - run_start
        estimated_spent += remaining.pop(0)
        results.append((config, metrics, "trained"))
    log(f"sweep finished in {_clock(time.perf_counter() - start)}")
    return results
