"""Runs the study's experiments: plan, check, train (resumably, by any executor), report.

`run_experiment` is what `run.py` calls. The study experiment (`--experiment=study`) runs the
study's 32 runs in its order and applies its selection rules to this project's own results:
the deformable configuration with the best validation accuracy is the one retrained on
train+validation for the final test and the one regularised; the best p of each regulariser
is read off its sweep by validation accuracy in the report. Nothing chosen is hard-coded.
"""

import dataclasses
import time

from keras_fmnist import artifacts
from keras_fmnist import claims
from keras_fmnist import experiments
from keras_fmnist import report
from keras_fmnist import study
from keras_fmnist import sweep
from keras_fmnist.executors import make_executor
from keras_fmnist.outcome import Status
from keras_fmnist.outcome import metrics_path
from keras_fmnist.outcome import read_recorded

# How long the study waits between looks at deformable runs that another worker is training
# (their results decide the rest of the study).
CLAIM_POLL_SECONDS = 10


def check_plan(configs, base):
    """User errors that only the planned runs reveal: raise PlanError before any training."""
    if base.run_name and len(configs) > 1:
        raise study.PlanError(
            f"--run_name names a single run; this command plans {len(configs)} runs "
            "(each sweep run gets its own directory from its settings)")
    for config in configs:
        try:
            experiments.check_split(config)
        except ValueError as e:
            raise study.PlanError(str(e)) from None
        if config.run_name:
            recorded = _recorded_identity(config)
            if recorded is not None and recorded != config.identity_hash():
                raise study.PlanError(
                    f"{config.run_dir()} holds a run with other settings (identity "
                    f"{recorded}, this one {config.identity_hash()}); choose another "
                    "--run_name or drop it")


def _recorded_identity(config):
    try:
        return artifacts.read_json(metrics_path(config.run_dir())).get("identity_hash")
    except (OSError, ValueError, AttributeError):
        return None


def plan_runs(experiment, base, seeds, **choices):
    """The experiment's runs for each seed (seed-major within the study's order)."""
    runs = []
    for config in study.plan(experiment, base, **choices):
        for seed in seeds:
            runs.append(dataclasses.replace(config, seed=seed))
    return runs


def run_experiment(experiment, base, layers=None, augment=None, regularizer="dropblock",
                   p="0.1", force=False, seeds=None, executor=None, log=print, on_result=None,
                   warn=None):
    """Plans, trains (resumably) and reports one experiment of the study.

    Args:
        experiment: a name from `study.EXPERIMENTS`; "report" only rewrites the report;
            "study" runs the whole study; "headline" the configurations behind its
            conclusions (`study.HEADLINE`), meant for several seeds.
        base: a RunConfig with the shared settings.
        layers, augment, regularizer, p: the experiment's choices (see `study.plan`).
        force: retrain runs that already finished.
        seeds: seeds to run each configuration with (default: base.seed).
        executor: a `keras_fmnist.executors.Executor` (default: `make_executor()`, in this
            process).
        log: where plan and progress go; on_result gets each run's Outcome as it ends.

    Returns:
        (outcomes, report_path): a list of `outcome.Outcome`; report_path is None when the
        sweep was interrupted (some outcome is `interrupted`: nothing after it was planned
        and the report was not rewritten).

    Raises:
        study.PlanError: a user error found in the plan (before any training).
    """
    executor = executor or make_executor()
    seeds = list(seeds or [base.seed])
    outcomes = []
    if experiment == "study":
        outcomes = _run_study(base, seeds, force, executor, log, on_result, warn)
    elif experiment == "headline":
        outcomes = _train(plan_headline(base, seeds), base, force, executor, log, on_result,
                          warn)
    elif experiment != "report":
        configs = plan_runs(experiment, base, seeds, layers=layers, augment=augment,
                            regularizer=regularizer, p=p)
        outcomes = _train(configs, base, force, executor, log, on_result, warn)
        if experiment == "augment" and not interrupted(outcomes):
            _write_samples(configs)
    if interrupted(outcomes):
        return outcomes, None
    return outcomes, report.write_report(base.artifacts_dir)


def interrupted(outcomes):
    """Whether a sweep stopped before every run had its outcome."""
    return any(o.status == Status.INTERRUPTED for o in outcomes)


def _not_trainable(config):
    return None if study.trainable(config) else "not trainable (p = 1.0)"


def _train(configs, base, force, executor, log, on_result, warn):
    check_plan(configs, base)
    sizes = experiments.split_sizes(configs[0])
    return sweep.run_sweep(configs, executor, sizes["train"], sizes["val"], force=force,
                           skip=_not_trainable, log=log, on_result=on_result, warn=warn)


def _write_samples(configs):
    seen = set()
    for config in configs:
        if config.augment != "none" and config.augment not in seen:
            seen.add(config.augment)
            experiments.write_augment_samples(config)


def plan_headline(base, seeds):
    """The study's headline configurations (`study.HEADLINE`) for each seed, seed by seed:
    a sweep stopped part-way has every configuration at the same number of seeds."""
    runs = []
    for seed in seeds:
        for experiment, choices in study.HEADLINE:
            runs += plan_runs(experiment, base, [seed], **choices)
    return runs


def plan_study_first(base, seeds):
    """Experiments 1-3 of the study: baseline, the 4 augmentations, the 8 deformable sets."""
    return (plan_runs("baseline", base, seeds)
            + plan_runs("augment", base, seeds, augment="all")
            + plan_runs("deform", base, seeds, layers="all"))


def plan_study_second(base, seeds, layers):
    """The rest, on the selected deformable stages: final retraining, both p sweeps."""
    layers = ",".join(str(s) for s in layers) or "none"
    return (plan_runs("final", base, seeds, layers=layers)
            + plan_runs("regularize", base, seeds, layers=layers,
                        regularizer="dropblock", p="sweep")
            + plan_runs("regularize", base, seeds, layers=layers,
                        regularizer="stodepth", p="sweep"))


def _run_study(base, seeds, force, executor, log, on_result, warn):
    """Experiments 1-4 in order; the later ones use what the earlier ones selected."""
    first = plan_study_first(base, seeds)
    check_plan(first, base)
    outcomes = _train(first, base, force, executor, log, on_result, warn)
    if interrupted(outcomes):
        return outcomes
    _write_samples([c for c in first if c.experiment == "augment"])
    best = select_best_layers([c for c in first if c.experiment == "deform"], log)
    if best is None:
        log("study: no deformable run finished; final and regularisation runs not planned")
        return outcomes
    log(f"study: best deformable stages by validation accuracy: {study.layers_name(best)}")
    second = plan_study_second(base, seeds, best)
    return outcomes + _train(second, base, force, executor, log, on_result, warn)


def select_best_layers(configs, log=print):
    """The deformable stages whose runs reach the best mean validation accuracy.

    Waits for runs that another worker is still training (their claims are live); runs that
    diverged or are missing take no part.
    """
    while True:
        waiting = [c for c in configs
                   if read_recorded(c) is None and claims.live_claim(c.run_dir())]
        if not waiting:
            break
        log(f"study: waiting for {len(waiting)} deformable run(s) claimed by other workers")
        time.sleep(CLAIM_POLL_SECONDS)
    scores = {}
    for config in configs:
        metrics = read_recorded(config)
        if metrics and metrics["status"] == "finished" and "val_accuracy" in metrics:
            scores.setdefault(tuple(config.deform_layers), []).append(metrics["val_accuracy"])
    if not scores:
        return None
    return max(scores, key=lambda k: sum(scores[k]) / len(scores[k]))
