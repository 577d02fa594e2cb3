"""`artifacts/REPORT.md` and the cross-run figures, regenerated from recorded metrics alone.

Every number in the report is read from a run's `metrics.json`; the study's numbers come from
`study.STUDY`. Nothing is typed by hand, so re-running `python run.py --experiment=report` after
any run brings the report up to date. Only runs with `"status": "finished"` enter the accuracy
tables; diverged runs are listed apart. Runs that differ only in their seed form one row:
mean ± sample standard deviation and n.
"""

import copy
import glob
import os
import statistics
import time

from keras_fmnist import artifacts
from keras_fmnist import evidence
from keras_fmnist import plots
from keras_fmnist import recipes
from keras_fmnist import run_identity
from keras_fmnist import study
from keras_fmnist.report_markdown import Bullets
from keras_fmnist.report_markdown import Figure
from keras_fmnist.report_markdown import Image
from keras_fmnist.report_markdown import Section
from keras_fmnist.report_markdown import Table
from keras_fmnist.report_markdown import Text
from keras_fmnist.report_markdown import render

FIGURES_DIR = "figures"


def _read_all(artifacts_dir):
    out = []
    for path in sorted(glob.glob(os.path.join(artifacts_dir, "*", "*", "metrics.json"))):
        try:
            metrics = artifacts.read_json(path)
        except (OSError, ValueError):
            continue  # unreadable: not a finished run
        if isinstance(metrics, dict):
            metrics["_dir"] = os.path.dirname(path)
            out.append(metrics)
    return out


def load_runs(artifacts_dir, status="finished", recorded=None):
    """{experiment: [metrics, ...]} of the runs under `artifacts_dir` with this status
    (`recorded`: the metrics already read, to read each file once)."""
    runs = {}
    for metrics in _read_all(artifacts_dir) if recorded is None else recorded:
        if metrics.get("status") == status:
            runs.setdefault(metrics.get("experiment", "?"), []).append(metrics)
    return runs


def _seedless_key(m):
    identity = m.get("identity")
    if not identity:
        return m["_dir"]
    identity = copy.deepcopy(identity)
    identity["settings"].pop("seed", None)
    return run_identity.identity_hash(identity)


class Group:
    """Runs of one configuration that differ only in their seed (often just one run)."""

    def __init__(self, runs):
        self.runs = sorted(runs, key=lambda m: m["config"]["seed"])
        self.first = self.runs[0]
        self.config = self.first["config"]
        self.n = len(self.runs)

    def values(self, fn):
        return [v for v in (fn(m) for m in self.runs) if v is not None]

    def mean(self, fn):
        values = self.values(fn)
        return statistics.fmean(values) if values else None

    def pct(self, fn):
        """"93.12%" for one run; "93.12% +- 0.21 (n=3)" over seeds."""
        values = self.values(fn)
        if not values:
            return "-"
        if len(values) == 1:
            return f"{100 * values[0]:.2f}%"
        return (f"{100 * statistics.fmean(values):.2f}% ± "
                f"{100 * statistics.stdev(values):.2f} (n={len(values)})")

    @property
    def name(self):
        base = os.path.basename(self.first["_dir"])
        return base if self.n == 1 else f"{base} and {self.n - 1} more seed(s)"


def group_by_seed(runs):
    groups = {}
    for m in runs:
        groups.setdefault(_seedless_key(m), []).append(m)
    return [Group(v) for v in groups.values()]


def _pct(value):
    return "-" if value is None else f"{100 * value:.2f}%"


def _best_val(m):
    values = [v for v in (m.get("history", {}).get("val_accuracy") or [])]
    if not values or any(v is None for v in values):
        return None, None
    best = max(range(len(values)), key=values.__getitem__)
    return values[best], best + 1


def _best_val_value(m):
    return _best_val(m)[0]


def _best_epochs(g):
    epochs = [str(_best_val(m)[1]) for m in g.runs if _best_val(m)[1] is not None]
    return ",".join(epochs) or "-"


def _test(m):
    return m.get("test_accuracy")


def _subset(c):
    parts = []
    if c.get("train_limit"):
        parts.append(f"train first {c['train_limit']}")
    if c.get("test_limit"):
        parts.append(f"test first {c['test_limit']}")
    return ", ".join(parts) or "full"


SETTINGS_COLUMNS = ("epochs run/max", "seed(s)", "data", "wall (mean)", "backend")


def _settings(g):
    """The cells under SETTINGS_COLUMNS."""
    c = g.config
    epochs = ",".join(str(m["epochs_run"]) for m in g.runs)
    seeds = ",".join(str(m["config"]["seed"]) for m in g.runs)
    minutes = statistics.fmean(m["wall_seconds"] for m in g.runs) / 60
    return (f"{epochs}/{c['epochs']}", seeds, _subset(c), f"{minutes:.1f} min",
            g.first['versions']['keras_backend'])


def _diff(ours, theirs):
    if ours is None or theirs is None:
        return "-"
    return f"{100 * ours - theirs:+.2f} pts"


def _layers(g):
    return study.layers_name(tuple(g.config.get("deform_layers") or ()))


def baseline_section(runs, root, fig_dir):
    s = study.STUDY["baseline"]
    groups = group_by_seed(runs)
    first_val = lambda m: (m["history"].get("val_accuracy") or [None])[0]  # noqa: E731
    last_val = lambda m: (m["history"].get("val_accuracy") or [None])[-1]  # noqa: E731
    rows = [("study", f"{s['val_epoch1']:.2f}%", f"{s['best_val']:.2f}% ({s['best_epoch']})",
             f"{s['val_epoch10']:.2f}% (epoch 10)", "-", "10/10", "-", "full", "-", "PyTorch")]
    rows += [(g.name, g.pct(first_val), f"{g.pct(_best_val_value)} ({_best_epochs(g)})",
              g.pct(last_val), g.pct(_test), *_settings(g)) for g in groups]
    blocks = [Table(("run", "val acc epoch 1", "best val (epoch)", "val acc last epoch",
                     "test acc", *SETTINGS_COLUMNS), tuple(rows))]
    notes = []
    for g in groups:
        if _subset(g.config) != "full":
            continue
        note = f"{g.name}: epoch 1 {_diff(g.mean(first_val), s['val_epoch1'])}"
        if g.config["epochs"] >= 10:  # the study's budget: its best epoch is comparable
            note += f", best {_diff(g.mean(_best_val_value), s['best_val'])}"
        notes.append(note)
    if notes:
        blocks.append(Text("Difference from the study's validation accuracy: "
                           + "; ".join(notes) + "."))
    for g in groups[:1]:
        blocks.append(Image("curves", os.path.join(g.first["_dir"], "curves.png")))
    return Section("1. Baseline (unmodified adapted ResNet-18)", tuple(blocks))


def augment_section(runs, root, fig_dir):
    s = study.STUDY["augment"]
    rows, histories = [], {}
    for g in group_by_seed(runs):
        aug = g.config["augment"]
        ref = s.get(aug)
        rows.append((aug, f"{g.pct(_best_val_value)} ({_best_epochs(g)})",
                     "-" if ref is None else f"{ref:.2f}%",
                     _diff(g.mean(_best_val_value), ref), g.pct(_test), *_settings(g)))
        histories.setdefault(f"{aug} ({_subset(g.config)})", g.first["history"])
    blocks = [Table(("technique", "best val (epoch)", "study best val", "difference",
                     "test acc", *SETTINGS_COLUMNS), tuple(rows))]
    if histories:
        for metric in ("loss", "accuracy"):
            blocks.append(Figure(
                f"augment {metric}", os.path.join(fig_dir, f"augment_{metric}.png"),
                lambda path, metric=metric: plots.train_val_per_run(
                    histories, metric, path, f"Augmentation: {metric}")))
    for aug in ("basic", "mixup", "cutmix"):
        grid = os.path.join(root, "augment", f"samples_{aug}.png")
        if os.path.isfile(grid):
            blocks += [Text(f"{aug} samples:"), Image(f"{aug} samples", grid)]
    return Section("2. Augmentation, each alone", tuple(blocks))


def deform_section(runs, root, fig_dir):
    s = study.STUDY["deform"]
    rows = [(f"study, best: {study.layers_name(s['best_layers'])}", f"{s['best_val']:.2f}%",
             "-", "10 max", "-", "full", "-", "PyTorch")]
    histories, best = {}, None
    groups = sorted(group_by_seed(runs), key=lambda g: (len(g.config["deform_layers"] or ()),
                                                          g.config["deform_layers"] or ()))
    for g in groups:
        rows.append((_layers(g), f"{g.pct(_best_val_value)} ({_best_epochs(g)})",
                     g.pct(_test), *_settings(g)))
        histories[f"{_layers(g)} ({_subset(g.config)})"] = g.first["history"]
        score = g.mean(_best_val_value)
        if score is not None and (best is None or score > best.mean(_best_val_value)):
            best = g
    blocks = [Table(("deformed stages", "best val (epoch)", "test acc", *SETTINGS_COLUMNS),
                    tuple(rows))]
    if best is not None:
        blocks += [
            Text(f"Best here: stages {_layers(best)} ({best.pct(_best_val_value)}); the "
                 f"study's best: {study.layers_name(s['best_layers'])} ({s['best_val']:.2f}%)."),
            Figure("deform", os.path.join(fig_dir, "deform_val_accuracy.png"),
                   lambda path: plots.metric_per_run(
                       histories, "val_accuracy", path,
                       "Validation accuracy per deformable configuration",
                       "validation accuracy"))]
    return Section("3. Deformable stages (CutMix)", tuple(blocks))


def final_section(runs, root, fig_dir):
    s = study.STUDY["final"]
    groups = group_by_seed(runs)
    rows = []
    for g in groups:
        # Final model against final model, each with the stages its own sweep selected.
        ref = f"{s['test']:.2f}%"
        if tuple(g.config["deform_layers"] or ()) != s["layers"]:
            ref += f" (its stages {'+'.join(map(str, s['layers']))})"
        rows.append((_layers(g), g.pct(_test), ref, _diff(g.mean(_test), s["test"]),
                     *_settings(g)))
    blocks = [Table(("deformed stages", "test acc", "study test", "difference",
                     *SETTINGS_COLUMNS), tuple(rows))]
    for g in groups[:1]:
        blocks += [Image(name, os.path.join(g.first["_dir"], name))
                   for name in ("predictions.png", "confusion_matrix.png")]
    return Section("3b. Final model retrained on train + validation", tuple(blocks))


def regularize_section(runs, root, fig_dir):
    s = study.STUDY["regularize"]
    groups = sorted(group_by_seed(runs),
                    key=lambda g: (g.config["regularizer"], g.config["p"]))
    stages = sorted({_layers(g) for g in groups})
    rows, series, best = [], {}, {}
    for g in groups:
        reg, p = g.config["regularizer"], g.config["p"]
        rows.append((reg, f"{p:g}", _layers(g), f"{g.pct(_best_val_value)} ({_best_epochs(g)})",
                     g.pct(_test), *_settings(g)))
        val = g.mean(_best_val_value)
        series.setdefault(reg, []).append((p, val))
        if val is not None and (reg not in best or val > best[reg].mean(_best_val_value)):
            best[reg] = g
    blocks = [Table(("regulariser", "p", "deformed stages", "best val (epoch)", "test acc",
                     *SETTINGS_COLUMNS), tuple(rows)),
              Text("p = 1.0 (in the study's sweep) drops every unit or block: no unit is left "
                   "to rescale, so it is not trained here. The best p is chosen by validation "
                   "accuracy, as the study chose it.")]
    if series:
        blocks.append(Figure(
            "accuracy vs p", os.path.join(fig_dir, "regularize_val_accuracy_vs_p.png"),
            lambda path: plots.accuracy_vs_p({k: [(p, v) for p, v in pts if v is not None]
                                              for k, pts in series.items()}, path)))
    best_rows = []
    for reg in study.REGULARIZERS:
        g = best.get(reg)
        p_here = "-" if g is None else f"{g.config['p']:g}"
        test = None if g is None else g.mean(_test)
        best_rows.append((reg, f"{p_here} ({s['best_p'][reg]:g})",
                          "-" if g is None else g.pct(_test), f"{s['test'][reg]:.2f}%",
                          _diff(test, s["test"][reg])))
    blocks.append(Table(("regulariser", "best p here (study)", "test acc at best p",
                         "study test", "difference"), tuple(best_rows)))
    if best:
        blocks.append(Figure(
            "test accuracy", os.path.join(fig_dir, "regularize_test_accuracy.png"),
            lambda path: plots.accuracy_bars(
                {reg: g.mean(_test) for reg, g in best.items()}, path,
                "Test accuracy at the best p",
                reference={reg: s["test"][reg] / 100 for reg in best})))
    return Section("4. Regularisation (DropBlock, stochastic depth; CutMix, deformable stages "
                   f"{', '.join(stages) or '-'})", tuple(blocks))


# Published Fashion-MNIST test accuracies the strong recipe is read against (docs/STUDY.md).
ANCHORS = (
    ("ResNet18, the dataset's benchmark table (flips, translation, rotation)", 94.9),
    ("ResNet-20 + random erasing (Zhong et al. 2017)", 96.0),
    ("WRN-28-10 + random erasing (Zhong et al. 2017)", 96.35),
    ("WRN-40-4, the dataset's benchmark table", 96.7),
)


def recipe_change(config):
    """How a run's settings differ from `recipes.STRONG`, in the ablation's words."""
    changes = []
    differing = {k for k, v in recipes.STRONG.items() if config.get(k) != v}
    for name, undo in recipes.STRONG_ABLATIONS.items():
        if undo and all(config.get(k) == v for k, v in undo.items()):
            changes.append(name)
            differing -= set(undo)
    augment = config.get("augment")
    if augment == "crop_flip_cutmix":
        changes.append("+ CutMix")
        differing.discard("augment")
    if config.get("deform_layers"):
        changes.append(f"+ deformable {study.layers_name(tuple(config['deform_layers']))}")
    if config.get("regularizer"):
        name = {"dropblock": "DropBlock", "stodepth": "stochastic depth"}[config["regularizer"]]
        changes.append(f"+ {name} p={config['p']:g}")
    changes += [f"{k}={config.get(k)!r}" for k in sorted(differing)]
    return "; ".join(changes) or "the strong recipe"


def strong_section(runs, root, fig_dir):
    groups = sorted(group_by_seed(runs), key=lambda g: (recipe_change(g.config) !=
                                                        "the strong recipe",
                                                        recipe_change(g.config)))
    rows = tuple((recipe_change(g.config), g.pct(_test),
                  g.pct(lambda m: m.get("test_accuracy_tta")),
                  f"{g.pct(_best_val_value)} ({_best_epochs(g)})", *_settings(g))
                 for g in groups)
    blocks = [Text("`python run.py --flagfile=flags/strong.cfg` (keras_fmnist/recipes.py). Test "
                   "accuracy is plain evaluation of the model chosen on the validation split, "
                   "the test set touched once per run; flip test-time augmentation is reported "
                   "apart."),
              Table(("configuration", "test acc", "test acc, flip TTA", "best val (epoch)",
                     *SETTINGS_COLUMNS), rows),
              Text("Published anchors (test accuracy): " + "; ".join(
                  f"{name} {value:.2f}%" for name, value in ANCHORS) + ".")]
    series = {}
    for g in groups:
        for m in g.runs:
            points = _val_accuracy_vs_minutes(m)
            if points:
                series[f"{recipe_change(g.config)}, seed {m['config']['seed']}"] = points
    if series:
        name, value = ANCHORS[0]
        blocks += [
            Text("Accuracy against compute: validation accuracy after each epoch against the "
                 "run's cumulative training time on the machine that ran it (its "
                 "`train_seconds` spread evenly over its epochs; the table's wall column also "
                 "counts evaluation and saving)."),
            Figure("accuracy vs compute",
                   os.path.join(fig_dir, "strong_val_accuracy_vs_minutes.png"),
                   lambda path: plots.accuracy_vs_compute(
                       series, path, references=[(f"{name} (test)", value / 100)]))]
    return Section("5. Beyond the study: the strong recipe (from scratch)", tuple(blocks))


def _val_accuracy_vs_minutes(m):
    """[(training minutes after epoch i, val accuracy)], from the run's mean epoch time."""
    values = (m.get("history") or {}).get("val_accuracy") or []
    seconds, epochs = m.get("train_seconds"), m.get("epochs_run")
    if not values or not seconds or not epochs or any(v is None for v in values):
        return []
    per_epoch = seconds / epochs / 60
    return [(per_epoch * (i + 1), v) for i, v in enumerate(values)]


def diverged_section(runs, root):
    """Runs whose training loss stopped being finite: listed, never in accuracy tables."""
    rows = []
    for m in runs:
        at = m.get("diverged_at") or {}
        rows.append((os.path.relpath(m["_dir"], root), m.get("experiment", "?"),
                     f"epoch {at.get('epoch', '?')}, batch {at.get('batch', '?')}",
                     m["config"].get("learning_rate"), m["config"].get("seed")))
    return Section("Diverged runs", (
        Text("Stopped at the first non-finite training loss; no model was kept and the test "
             "set was not used. They take no part in the tables above."),
        Table(("run", "experiment", "stopped at", "learning rate", "seed"), tuple(rows))))


def _mean_std(values):
    values = list(values)
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}% (n=1)"
    return (f"{statistics.fmean(values):.2f}% ± {statistics.stdev(values):.2f} "
            f"(n={len(values)})")


def _sweep_pick(groups, seed_std, what):
    """A sentence on whether a sweep's pick (best mean validation accuracy) stands out of
    the seed-to-seed noise."""
    scored = sorted(((g.mean(_best_val_value), g) for g in groups
                     if g.mean(_best_val_value) is not None), key=lambda t: -t[0])
    if len(scored) < 2 or seed_std is None:
        return None
    (best, g1), (second, g2) = scored[0], scored[1]
    margin = 100 * (best - second)
    inside = evidence.within_noise(margin, seed_std)
    return (f"{what}: the study's rule (best validation accuracy) picks {g1.label} over "
            f"{g2.label} by {margin:.2f} points; two runs differing only in their seed differ "
            f"by up to {1.96 * 2 ** 0.5 * seed_std:.2f} points at 95% (seed std "
            f"{seed_std:.2f}), so the pick is "
            + ("**inside the noise**: another seed may well pick otherwise." if inside else
               "outside the noise."))


def evidence_section(all_runs, root, fig_dir):
    """The study's conclusions against seeds: per-configuration mean ± std, paired
    differences with 95% intervals, a verdict each (keras_fmnist.evidence)."""
    runs = [m for group in all_runs.values() for m in group]
    summaries = evidence.summaries(runs)
    summary_rows = []
    for key, (val, test) in summaries.items():
        seeds = ",".join(str(s) for s in sorted(set(val) | set(test))) or "-"
        summary_rows.append((evidence.CONFIGURATIONS[key].label, _mean_std(val.values()),
                             _mean_std(test.values()), seeds))
    comparison_rows, figure_rows = [], []
    for row in evidence.evaluate(runs):
        c, d = row.comparison, row.difference
        label = (f"{evidence.CONFIGURATIONS[c.a].label} vs "
                 f"{evidence.CONFIGURATIONS[c.b].label}")
        study_text = "-" if c.study_difference is None else f"{c.study_difference:+.2f}"
        if d.n == 0:
            here = "no paired run"
        elif d.interval is None:
            here = f"{d.mean:+.2f} (n=1, no interval)"
        else:
            low, high = d.interval
            here = f"{d.mean:+.2f} [{low:+.2f}, {high:+.2f}] (n={d.n})"
        metric = "best val" if c.metric == "val" else "test"
        comparison_rows.append((label, metric, study_text, here, row.verdict, c.study_claim))
        figure_rows.append((f"{c.a} - {c.b} ({metric})", d.differences, d.interval,
                            c.study_difference))
    blocks = [
        Text("The headline configurations over seeds "
             f"(`python run.py --flagfile=flags/{FLAGFILES['headline']}`; seed 0 is the "
             "study's run). Best validation accuracy (the study compared those) and test "
             "accuracy, mean ± sample standard deviation (n seeds):"),
        Table(("configuration", "best val", "test", "seeds"), tuple(summary_rows)),
        Text("Each comparison pairs the two configurations' runs by seed: mean paired "
             "difference a - b in percentage points, its 95% confidence interval (Student "
             "t, n - 1 degrees of freedom, the spread of the per-seed differences), and a "
             "verdict beside the study's own difference (one run each): *reproduced* "
             "(the interval excludes zero on the study's side), *reversed* (it excludes "
             "zero on the other side), *not distinguishable at this n* (it holds zero)."),
        Table(("a vs b", "metric", "study: a - b", "here: mean a - b [95% CI] (n)", "verdict",
               "the study's claim"), tuple(comparison_rows))]
    if any(d for _, d, _, _ in figure_rows):
        blocks.append(Figure("paired differences",
                             os.path.join(fig_dir, "evidence_paired_differences.png"),
                             lambda path: plots.paired_differences(figure_rows, path)))
    seed_std = evidence.pooled_seed_std(val.values() for val, _ in summaries.values())
    notes = []
    deform = [g for g in group_by_seed(all_runs.get("deform", []))
              if _subset(g.config) == "full" and g.config["epochs"] == 10]
    for g in deform:
        g.label = f"stages {_layers(g)}"
    note = _sweep_pick(deform, seed_std, "Deformable sweep (8 subsets)")
    if note:
        notes.append(note)
    for reg in study.REGULARIZERS:
        sweep_groups = [g for g in group_by_seed(all_runs.get("regularize", []))
                        if g.config["regularizer"] == reg and _subset(g.config) == "full"]
        for g in sweep_groups:
            g.label = f"p = {g.config['p']:g}"
        note = _sweep_pick(sweep_groups, seed_std, f"{reg} p sweep")
        if note:
            notes.append(note)
    if notes:
        blocks += [Text("Selections the study made from one run each, read against the seed "
                        "spread pooled over the configurations above:"), Bullets(tuple(notes))]
    blocks.append(Text(
        "The runs of seeds other than 0 were trained by a release whose `accelerate` runs an "
        "accurate batch-norm backward; the committed seed-0 runs by the release before, on "
        "torch's batch-norm kernel alone. Both compute the same function; the old kernel's "
        "float32 gradients were off by up to 5e-3 relative (5e-6 for the stock graph); its "
        "effect on accuracy was not measured on its own. flags/headline.cfg asks for seeds 0, "
        "1, 2; a row with fewer seeds shows its n."))
    return Section("6. What the evidence says: seeds and paired intervals", tuple(blocks))


FLAGFILES = {
    "study": "study.cfg",
    "baseline": "baseline.cfg",
    "augment": "augment.cfg",
    "deform": "deform_sweep.cfg",
    "final": "final.cfg",
    "regularize": "regularize_dropblock_sweep.cfg",
    "strong": "strong.cfg",
    "headline": "headline.cfg",
}

SECTIONS = (
    ("baseline", "1. Baseline", baseline_section),
    ("augment", "2. Augmentation", augment_section),
    ("deform", "3. Deformable stages", deform_section),
    ("final", "3b. Final model", final_section),
    ("regularize", "4. Regularisation", regularize_section),
    ("strong", "5. Beyond the study: the strong recipe", strong_section),
)


def write_report(artifacts_dir):
    """Regenerates `<artifacts_dir>/REPORT.md` and its figures; returns the report's path."""
    recorded = _read_all(artifacts_dir)
    runs = load_runs(artifacts_dir, recorded=recorded)
    fig_dir = os.path.join(artifacts_dir, FIGURES_DIR)
    preamble = [Text(
        "Generated by `python run.py --experiment=report` from the runs' `metrics.json` "
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; do not edit by hand. "
        "Accuracies are on the stratified validation split (10% of the training set "
        "unless the run says otherwise) or on the test set, as labelled. Runs on a data "
        "subset (smoke runs) are marked in the data column and are not comparable with "
        "the study. Rows over several seeds show mean ± standard deviation (n); the "
        f"whole study runs with `python run.py --flagfile=flags/{FLAGFILES['study']}`.")]
    sections = []
    for name, title, section in SECTIONS:
        if runs.get(name):
            sections.append(section(runs[name], artifacts_dir, fig_dir))
        else:
            sections.append(Section(title, (Text(
                f"No finished run yet (`python run.py --flagfile=flags/{FLAGFILES[name]}`)."),)))
    sections.append(evidence_section(runs, artifacts_dir, fig_dir))
    diverged = [m for group in load_runs(artifacts_dir, "diverged", recorded).values()
                for m in group]
    if diverged:
        sections.append(diverged_section(diverged, artifacts_dir))
    path = os.path.join(artifacts_dir, "REPORT.md")
    text = render("keras_fmnist: results against the study", preamble, sections, artifacts_dir)
    artifacts.write_text(path, text)
    return path
