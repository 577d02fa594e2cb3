"""The study's figures, drawn from a run's own numbers and written atomically as PNG."""

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_fmnist import artifacts  # noqa: E402
from keras_fmnist.data import CLASS_NAMES  # noqa: E402


def training_curves(history, path, title=""):
    """Train/validation loss and accuracy per epoch, side by side."""
    epochs = np.arange(1, len(history.get("loss", [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        if metric in history:
            ax.plot(epochs, history[metric], marker="o", label=f"train {metric}")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="o", label=f"val {metric}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def confusion_matrix(y_true, y_pred, num_classes=len(CLASS_NAMES)):
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def confusion_matrix_figure(matrix, path, title="Confusion matrix (test)"):
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black")
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def prediction_grid(images, y_true, y_pred, path, columns=6):
    """Test images titled with true and predicted class names (red where wrong)."""
    n = len(images)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.9, rows * 2.1))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.squeeze(images[k]), cmap="gray")
        correct = y_true[k] == y_pred[k]
        ax.set_title(
            f"true: {CLASS_NAMES[y_true[k]]}\npred: {CLASS_NAMES[y_pred[k]]}",
            fontsize=7,
            color="black" if correct else "red",
        )
    artifacts.save_figure(fig, path)
    plt.close(fig)


def sample_grid(images, soft_labels, path, title="", columns=8):
    """Augmented training samples titled with their (possibly mixed) label weights."""
    n = len(images)
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9))
    for k, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.squeeze(images[k]), cmap="gray", vmin=0.0, vmax=1.0)
        order = np.argsort(soft_labels[k])[::-1]
        parts = [
            f"{CLASS_NAMES[c][:7]} {soft_labels[k][c]:.2f}" for c in order[:2]
            if soft_labels[k][c] > 1e-3
        ]
        ax.set_title("\n".join(parts), fontsize=6)
    fig.suptitle(title)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def metric_per_run(histories, metric, path, title, ylabel=None):
    """One line per run of `history[metric]` against epoch (e.g. val accuracy per config)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, history in histories.items():
        values = history.get(metric, [])
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel or metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def train_val_per_run(histories, metric, path, title):
    """Training and validation `metric` per run, side by side (the study's Figures 10-11)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, name in zip(axes, (metric, f"val_{metric}"), ("training", "validation")):
        for label, history in histories.items():
            values = history.get(key, [])
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=label)
        ax.set_title(f"{name} {metric}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def accuracy_vs_p(series, path, title="Validation accuracy vs p"):
    """series: {regulariser: [(p, best val accuracy), ...]}."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in series.items():
        points = sorted(points)
        ax.plot([p for p, _ in points], [a for _, a in points], marker="o", label=label)
    ax.set_xlabel("p")
    ax.set_ylabel("best validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    artifacts.save_figure(fig, path)
    plt.close(fig)


def accuracy_bars(values, path, title="Test accuracy", reference=None):
    """values: {label: accuracy}; reference: {label: the study's accuracy} drawn beside."""
    labels = list(values)
    x = np.arange(len(labels))
    width = 0.38 if reference else 0.6
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(labels)), 4.5))
    bars = ax.bar(x - (width / 2 if reference else 0), [values[k] for k in labels], width,
                  label="this project")
    ax.bar_label(bars, fmt="%.4f", fontsize=7)
    if reference:
        ref = ax.bar(x + width / 2, [reference.get(k, np.nan) for k in labels], width,
                     label="study")
        ax.bar_label(ref, fmt="%.4f", fontsize=7)
        ax.legend()
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def accuracy_vs_compute(series, path, title="Validation accuracy vs training time",
                        references=()):
    """series: {label: [(training minutes, val accuracy), ...]}, one point per epoch.

    references: (label, accuracy) pairs drawn as dashed horizontal lines (published test
    accuracies, read as orientation, not as the same measurement).
    """
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for label, points in series.items():
        ax.plot([m for m, _ in points], [a for _, a in points], marker=".", label=label)
    for i, (label, accuracy) in enumerate(references):
        ax.axhline(accuracy, linestyle="--", linewidth=0.8, color=f"C{(i + 5) % 10}",
                   label=label)
    accuracies = [a for points in series.values() for _, a in points]
    if accuracies:
        # The first epochs of a weight average sit near chance; the useful range is the top.
        top = max(accuracies + [a for _, a in references])
        ax.set_ylim(max(0.0, min(0.85, top - 0.1)), min(1.0, top + 0.01))
    ax.set_xlabel("training minutes (this run's machine)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    artifacts.save_figure(fig, path)
    plt.close(fig)


def paired_differences(rows, path, title="Paired differences over seeds (points)"):
    """rows: [(label, per-seed differences, (low, high) or None, the study's difference or
    None)], drawn as one line each: the seeds' points, the 95% interval as a bar, the
    study's difference as a cross (clipped to the axis: the study's differences reach 17
    points, ours stay within a few), and zero."""
    ours = [d for _, ds, iv, _ in rows for d in (*ds, *(iv or ()))]
    span = max(1.0, max((abs(d) for d in ours), default=1.0) * 1.3)
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.4))
    for i, (label, differences, interval, study) in enumerate(rows):
        y = len(rows) - 1 - i
        if interval is not None:
            ax.plot(interval, [y, y], color="C0", linewidth=3, alpha=0.6,
                    label="95% interval (Student t)" if i == 0 else None)
        ax.scatter(differences, [y] * len(differences), color="C0", s=14, zorder=3,
                   label="one seed" if i == 0 else None)
        if study is not None:
            ax.scatter([min(max(study, -span), span)], [y], marker="x", color="C3", zorder=3,
                       label="the study (one run; clipped)" if i == 0 else None)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [label for label, *_ in reversed(rows)], fontsize=8)
    ax.set_xlim(-span, span)
    ax.set_xlabel("difference a - b (percentage points)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="lower right")
    artifacts.save_figure(fig, path)
    plt.close(fig)
