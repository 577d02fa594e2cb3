"""`artifacts/REPORT.md` and the cross-run figures, regenerated from recorded metrics alone.

Every number in the report is read from a run's `metrics.json`; the study's numbers come from
`study.STUDY`. Nothing is typed by hand, so re-running `python run.py --experiment=report` after
any run brings the report up to date.
"""

import glob
import os
import time

from keras_fmnist import artifacts
from keras_fmnist import plots
from keras_fmnist import study

FIGURES_DIR = "figures"


def load_runs(artifacts_dir):
    """{experiment: [metrics, ...]} from every finished run under `artifacts_dir`."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(artifacts_dir, "*", "*", "metrics.json"))):
        try:
            metrics = artifacts.read_json(path)
        except (OSError, ValueError):
            continue  # unreadable: not a finished run
        metrics["_dir"] = os.path.dirname(path)
        runs.setdefault(metrics.get("experiment", "?"), []).append(metrics)
    return runs


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def _best_val(m):
    values = m.get("history", {}).get("val_accuracy") or []
    if not values:
        return None, None
    best = max(range(len(values)), key=values.__getitem__)
    return values[best], best + 1


def _subset(m):
    c = m["config"]
    parts = []
    if c.get("train_limit"):
        parts.append(f"train first {c['train_limit']}")
    if c.get("test_limit"):
        parts.append(f"test first {c['test_limit']}")
    return ", ".join(parts) or "full"


def _settings(m):
    c = m["config"]
    return (f"{m['epochs_run']}/{c['epochs']} | {c['seed']} | {_subset(m)} | "
            f"{m['wall_seconds'] / 60:.1f} min | {m['versions']['keras_backend']}")


def _diff(ours, theirs):
    if ours is None or theirs is None:
        return "-"
    return f"{100 * ours - theirs:+.2f} pts"


def _rel(path, root):
    return os.path.relpath(path, root)


def _layers(m):
    return study.layers_name(tuple(m["config"].get("deform_layers") or ()))


SETTINGS_HEADER = "epochs run/max | seed | data | wall | backend"


def baseline_section(runs, root, fig_dir):
    s = study.STUDY["baseline"]
    lines = ["## 1. Baseline (unmodified adapted ResNet-18)", "",
             f"| run | val acc epoch 1 | best val (epoch) | val acc last epoch | test acc | "
             f"{SETTINGS_HEADER} |", "|---|---|---|---|---|---|---|---|---|---|",
             f"| study | {s['val_epoch1']:.2f}% | {s['best_val']:.2f}% ({s['best_epoch']}) | "
             f"{s['val_epoch10']:.2f}% (epoch 10) | - | 10/10 | - | full | - | PyTorch |"]
    for m in runs:
        val = m["history"].get("val_accuracy", [])
        best, epoch = _best_val(m)
        lines.append(
            f"| {os.path.basename(m['_dir'])} | {_pct(val[0] if val else None)} | "
            f"{_pct(best)} ({epoch}) | {_pct(val[-1] if val else None)} "
            f"(epoch {len(val)}) | {_pct(m.get('test_accuracy'))} | {_settings(m)} |")
    notes = []
    for m in runs:
        if _subset(m) != "full":
            continue
        name, val = os.path.basename(m["_dir"]), m["history"].get("val_accuracy", [])
        note = f"{name}: epoch 1 {_diff(val[0] if val else None, s['val_epoch1'])}"
        if m["config"]["epochs"] >= 10:  # the study's budget: its best epoch is comparable
            note += f", best {_diff(_best_val(m)[0], s['best_val'])}"
        notes.append(note)
    if notes:
        lines += ["", "Difference from the study's validation accuracy: " + "; ".join(notes)
                  + "."]
    for m in runs[:1]:
        lines += ["", f"![curves]({_rel(os.path.join(m['_dir'], 'curves.png'), root)})"]
    return lines


def augment_section(runs, root, fig_dir):
    s = study.STUDY["augment"]
    lines = ["## 2. Augmentation, each alone", "",
             f"| technique | best val (epoch) | study best val | difference | test acc | "
             f"{SETTINGS_HEADER} |", "|---|---|---|---|---|---|---|---|---|---|"]
    histories = {}
    for m in runs:
        aug = m["config"]["augment"]
        best, epoch = _best_val(m)
        ref = s.get(aug)
        lines.append(
            f"| {aug} | {_pct(best)} ({epoch}) | {'-' if ref is None else f'{ref:.2f}%'} | "
            f"{_diff(best, ref)} | {_pct(m.get('test_accuracy'))} | {_settings(m)} |")
        histories.setdefault(f"{aug} ({_subset(m)})", m["history"])
    if histories:
        for metric in ("loss", "accuracy"):
            path = os.path.join(fig_dir, f"augment_{metric}.png")
            plots.train_val_per_run(histories, metric, path, f"Augmentation: {metric}")
            lines += ["", f"![augment {metric}]({_rel(path, root)})"]
    for aug in ("basic", "mixup", "cutmix"):
        grid = os.path.join(root, "augment", f"samples_{aug}.png")
        if os.path.isfile(grid):
            lines += ["", f"{aug} samples:", "", f"![{aug} samples]({_rel(grid, root)})"]
    return lines


def deform_section(runs, root, fig_dir):
    s = study.STUDY["deform"]
    lines = ["## 3. Deformable stages (CutMix)", "",
             f"| deformed stages | best val (epoch) | test acc | {SETTINGS_HEADER} |",
             "|---|---|---|---|---|---|---|---|",
             f"| study, best: {study.layers_name(s['best_layers'])} | {s['best_val']:.2f}% | - | "
             "10 max | - | full | - | PyTorch |"]
    histories, best_run = {}, None
    for m in sorted(runs, key=lambda m: (len(m["config"]["deform_layers"] or ()),
                                         m["config"]["deform_layers"] or ())):
        best, epoch = _best_val(m)
        lines.append(f"| {_layers(m)} | {_pct(best)} ({epoch}) | "
                     f"{_pct(m.get('test_accuracy'))} | {_settings(m)} |")
        histories[f"{_layers(m)} ({_subset(m)})"] = m["history"]
        if best is not None and (best_run is None or best > _best_val(best_run)[0]):
            best_run = m
    if best_run is not None:
        lines += ["", f"Best here: stages {_layers(best_run)} "
                      f"({_pct(_best_val(best_run)[0])}); the study's best: "
                      f"{study.layers_name(s['best_layers'])} ({s['best_val']:.2f}%)."]
        path = os.path.join(fig_dir, "deform_val_accuracy.png")
        plots.metric_per_run(histories, "val_accuracy", path,
                             "Validation accuracy per deformable configuration",
                             "validation accuracy")
        lines += ["", f"![deform]({_rel(path, root)})"]
    return lines


def final_section(runs, root, fig_dir):
    s = study.STUDY["final"]
    lines = ["## 3b. Final model retrained on train + validation", "",
             f"| deformed stages | test acc | study test | difference | {SETTINGS_HEADER} |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in runs:
        ref = s["test"] if tuple(m["config"]["deform_layers"] or ()) == s["layers"] else None
        lines.append(f"| {_layers(m)} | {_pct(m.get('test_accuracy'))} | "
                     f"{'-' if ref is None else f'{ref:.2f}%'} | "
                     f"{_diff(m.get('test_accuracy'), ref)} | {_settings(m)} |")
    for m in runs[:1]:
        for name in ("predictions.png", "confusion_matrix.png"):
            lines += ["", f"![{name}]({_rel(os.path.join(m['_dir'], name), root)})"]
    return lines


def regularize_section(runs, root, fig_dir):
    s = study.STUDY["regularize"]
    lines = ["## 4. Regularisation (DropBlock, stochastic depth; CutMix, stages 1+3)", "",
             f"| regulariser | p | best val (epoch) | test acc | {SETTINGS_HEADER} |",
             "|---|---|---|---|---|---|---|---|---|"]
    series, best = {}, {}
    for m in sorted(runs, key=lambda m: (m["config"]["regularizer"], m["config"]["p"])):
        reg, p = m["config"]["regularizer"], m["config"]["p"]
        val, epoch = _best_val(m)
        lines.append(f"| {reg} | {p:g} | {_pct(val)} ({epoch}) | "
                     f"{_pct(m.get('test_accuracy'))} | {_settings(m)} |")
        series.setdefault(reg, []).append((p, val))
        if val is not None and (reg not in best or val > _best_val(best[reg])[0]):
            best[reg] = m
    lines += ["", "p = 1.0 (in the study's sweep) drops every unit or block: no unit is left "
                  "to rescale, so it is not trained here."]
    if series:
        path = os.path.join(fig_dir, "regularize_val_accuracy_vs_p.png")
        plots.accuracy_vs_p(series, path)
        lines += ["", f"![accuracy vs p]({_rel(path, root)})"]
    lines += ["", "| regulariser | best p here (study) | test acc at best p | study test | "
                  "difference |", "|---|---|---|---|---|"]
    for reg in study.REGULARIZERS:
        m = best.get(reg)
        p_here = "-" if m is None else f"{m['config']['p']:g}"
        test = None if m is None else m.get("test_accuracy")
        lines.append(f"| {reg} | {p_here} ({s['best_p'][reg]:g}) | {_pct(test)} | "
                     f"{s['test'][reg]:.2f}% | {_diff(test, s['test'][reg])} |")
    if best:
        path = os.path.join(fig_dir, "regularize_test_accuracy.png")
        plots.accuracy_bars({reg: m["test_accuracy"] for reg, m in best.items()}, path,
                            "Test accuracy at the best p",
                            reference={reg: s["test"][reg] / 100 for reg in best})
        lines += ["", f"![test accuracy]({_rel(path, root)})"]
    return lines


FLAGFILES = {
    "baseline": "baseline.cfg",
    "augment": "augment.cfg",
    "deform": "deform_sweep.cfg",
    "final": "final.cfg",
    "regularize": "regularize_dropblock_sweep.cfg",
}

SECTIONS = (
    ("baseline", "1. Baseline", baseline_section),
    ("augment", "2. Augmentation", augment_section),
    ("deform", "3. Deformable stages", deform_section),
    ("final", "3b. Final model", final_section),
    ("regularize", "4. Regularisation", regularize_section),
)


def write_report(artifacts_dir):
    """Regenerates `<artifacts_dir>/REPORT.md` and its figures; returns the report's path."""
    runs = load_runs(artifacts_dir)
    fig_dir = os.path.join(artifacts_dir, FIGURES_DIR)
    lines = ["# keras_fmnist: results against the study", "",
             "Generated by `python run.py --experiment=report` from the runs' `metrics.json` "
             f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; do not edit by hand. "
             "Accuracies are on the stratified validation split (10% of the training set "
             "unless the run says otherwise) or on the test set, as labelled. Runs on a data "
             "subset (smoke runs) are marked in the data column and are not comparable with "
             "the study.", ""]
    for name, title, section in SECTIONS:
        if runs.get(name):
            lines += section(runs[name], artifacts_dir, fig_dir) + [""]
        else:
            lines += [f"## {title}", "", f"No finished run yet (`python run.py "
                      f"--flagfile=flags/{FLAGFILES[name]}`).", ""]
    path = os.path.join(artifacts_dir, "REPORT.md")
    artifacts.write_text(path, "\n".join(lines))
    return path
