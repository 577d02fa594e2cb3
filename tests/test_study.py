"""Experiment plans, resumable sweeps and the generated report (no training here)."""

import dataclasses
import os
import subprocess
import sys

import pytest

from keras_fmnist import artifacts
from keras_fmnist import claims
from keras_fmnist import report
from keras_fmnist import study
from keras_fmnist import sweep
from keras_fmnist import worker
from keras_fmnist.executors.in_process import InProcess
from keras_fmnist.experiments import RunConfig
from helpers import ROOT
from helpers import torch_only



def test_deform_sweep_is_the_8_subsets_with_cutmix():
    runs = study.plan("deform", RunConfig(), layers="all")
    assert [r.deform_layers for r in runs] == [
        (), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3)]
    assert {r.augment for r in runs} == {"cutmix"} and {r.experiment for r in runs} == {"deform"}
    assert len({r.run_dir() for r in runs}) == 8


def test_regularize_sweep_and_untrainable_p1():
    runs = study.plan("regularize", RunConfig(), regularizer="stodepth", p="sweep")
    assert [r.p for r in runs] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert all(r.deform_layers == (1, 3) and r.regularizer == "stodepth" for r in runs)
    assert [study.trainable(r) for r in runs] == [True] * 9 + [False]


def test_final_trains_on_train_plus_val_without_early_stopping():
    (run,) = study.plan("final", RunConfig())
    assert run.train_on_full and run.patience == 0 and run.deform_layers == (1, 3)
    assert "trainval" in run.run_dir()


def test_augment_all_and_defaults():
    runs = study.plan("augment", RunConfig())
    assert [r.augment for r in runs] == ["none", "basic", "mixup", "cutmix"]
    (baseline,) = study.plan("baseline", RunConfig())
    assert baseline.augment == "none" and baseline.deform_layers == ()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"experiment": "deform", "layers": "4"}, "--layers must be"),
        ({"experiment": "final", "layers": "all"}, "--layers=all is for --experiment=deform"),
        ({"experiment": "baseline", "augment": "all"}, "--augment=all is for"),
        ({"experiment": "regularize", "p": "1.5"}, "--p must be sweep or a number"),
        ({"experiment": "regularize", "regularizer": "dropout"}, "--regularizer must be"),
    ],
)
def test_plan_errors(kwargs, match):
    experiment = kwargs.pop("experiment")
    with pytest.raises(study.PlanError, match=match):
        study.plan(experiment, RunConfig(), **kwargs)


def _fake_metrics(config, val):
    identity = config.identity()
    return {
        "status": "finished", "identity": identity,
        "identity_hash": config.identity_hash(),
        "experiment": config.experiment, "run_dir": config.run_dir(),
        "val_accuracy": val, "test_accuracy": val - 0.01, "epochs_run": 2, "best_epoch": 2,
        "history": {"loss": [1.0, 0.5], "accuracy": [0.5, val], "val_loss": [1.1, 0.6],
                    "val_accuracy": [val - 0.1, val]},
        "wall_seconds": 60.0, "config": dataclasses.asdict(config),
        "versions": {"keras_backend": "torch"},
    }


def _trainer(calls, fail_on=None):
    def train(config, extra_callbacks=(), output_dir=None):
        calls.append(config.run_dir())
        if fail_on is not None and len(calls) == fail_on:
            raise KeyboardInterrupt  # a sweep killed mid-run
        metrics = _fake_metrics(config, 0.9 + 0.001 * len(calls))
        artifacts.write_json(os.path.join(output_dir, "metrics.json"), metrics)
        return metrics
    return train


def test_sweep_resumes_after_a_kill_and_skips_finished(tmp_path):
    base = RunConfig(artifacts_dir=str(tmp_path), epochs=2)
    configs = study.plan("deform", base, layers="all")
    calls, log = [], []
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(configs, InProcess(_trainer(calls, fail_on=3)), 100, 10, log=log.append,
                        step_seconds=0.1)
    finished = [c for c in configs if worker.read_recorded(c)]
    assert len(finished) == 2  # the run in progress is lost, nothing else
    recorded = {c.run_dir(): worker.read_recorded(c) for c in finished}
    # The interrupted run released its claim: nothing stops the next sweep from taking it.
    assert claims.read_claim(configs[2].run_dir()) is None

    calls2, log2 = [], []
    results = sweep.run_sweep(configs, InProcess(_trainer(calls2)), 100, 10, log=log2.append,
                              step_seconds=0.1)
    assert calls2 == [c.run_dir() for c in configs[2:]]
    assert [o.status for o in results] == ["done"] * 2 + ["trained"] * 6
    for c in finished:  # recorded results untouched by the resumed sweep
        assert worker.read_recorded(c) == recorded[c.run_dir()]
    assert log2[0].startswith("plan: 8 run(s), 2 already finished, 6 to train")
    assert any(line.startswith("[2/8] started") and "ETA" in line for line in log2)
    assert f"{configs[0].run_dir()} (done): val_accuracy" in "\n".join(log2)

    calls3 = []
    sweep.run_sweep(configs, InProcess(_trainer(calls3)), 100, 10, force=True,
                    log=lambda s: None, step_seconds=0.1)
    assert len(calls3) == 8


def test_sweep_estimate_uses_the_measured_step():
    config = RunConfig(epochs=10, batch_size=100)
    assert sweep.estimate_seconds(config, 0.5, n_train=1000, n_val=300) == pytest.approx(
        10 * (10 + 3 / 3) * 0.5)


def test_report_is_generated_from_recorded_metrics(tmp_path):
    base = RunConfig(artifacts_dir=str(tmp_path))
    for config, val in [(study.plan("baseline", base)[0], 0.9123),
                        (study.plan("deform", base, layers="1,3")[0], 0.9345),
                        (study.plan("final", base)[0], 0.9222)]:
        artifacts.write_json(os.path.join(config.run_dir(), "metrics.json"),
                             _fake_metrics(config, val))
    for p, val in [(0.1, 0.93), (0.2, 0.92)]:
        (config,) = study.plan("regularize", base, p=str(p))
        artifacts.write_json(os.path.join(config.run_dir(), "metrics.json"),
                             _fake_metrics(config, val))
    # A half-written run (no metrics.json) is not reported.
    os.makedirs(tmp_path / "deform" / "partial")
    (tmp_path / "deform" / "partial" / "history.csv").write_text("epoch\n1\n")
    path = report.write_report(str(tmp_path))
    text = open(path).read()
    assert "91.23%" in text and "93.69%" in text  # ours and the study's best baseline val
    assert "93.45%" in text and "93.84%" in text  # deform 1+3
    assert "| 1+3 | 91.22% | 92.96% | -1.74 pts |" in text  # final test (fake: val - 0.01)
    # Other selected stages: still the study's final model beside ours, its stages named.
    (other,) = study.plan("final", base, layers="3")
    artifacts.write_json(os.path.join(other.run_dir(), "metrics.json"),
                         _fake_metrics(other, 0.95))
    text = open(report.write_report(str(tmp_path))).read()
    assert "| 3 | 94.00% | 92.96% (its stages 1+3) | +1.04 pts |" in text
    assert "92.79%" in text and "81.50%" in text  # the study's regularisation tests
    assert "partial" not in text
    for figure in ("deform_val_accuracy.png", "regularize_val_accuracy_vs_p.png",
                   "regularize_test_accuracy.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 0


def test_every_flagfile_parses_and_plans():
    script = (
        "import glob, run\n"
        "from keras_fmnist import runner, study\n"
        "from keras_fmnist.experiments import RunConfig\n"
        "for path in sorted(glob.glob('flags/*.cfg')):\n"
        "    run.FLAGS.unparse_flags()\n"
        "    run.FLAGS(['run.py', '--flagfile=' + path])\n"
        "    F = run.FLAGS\n"
        "    if F.experiment == 'study':\n"
        "        base = RunConfig(epochs=F.epochs)\n"
        "        runs = (runner.plan_study_first(base, [0])\n"
        "                + runner.plan_study_second(base, [0], (1, 3)))\n"
        "        print(path, F.experiment, sum(map(study.trainable, runs)))\n"
        "        continue\n"
        "    if F.experiment == 'headline':\n"
        "        seeds = [int(s) for s in F.seeds]\n"
        "        runs = runner.plan_headline(RunConfig(epochs=F.epochs), seeds)\n"
        "        print(path, F.experiment, len(runs))\n"
        "        continue\n"
        "    runs = study.plan(F.experiment, RunConfig(epochs=F.epochs), layers=F.layers,\n"
        "                      augment=F.augment, regularizer=F.regularizer, p=F.p)\n"
        "    print(path, F.experiment, len(runs))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    counts = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert counts == {
        "flags/augment.cfg": "augment 4",
        "flags/baseline.cfg": "baseline 1",
        "flags/deform_1_3.cfg": "deform 1",
        "flags/deform_sweep.cfg": "deform 8",
        "flags/final.cfg": "final 1",
        "flags/headline.cfg": "headline 27",  # nine configurations x seeds 0, 1, 2
        "flags/regularize_dropblock_sweep.cfg": "regularize 10",
        "flags/regularize_stodepth_sweep.cfg": "regularize 10",
        "flags/strong.cfg": "strong 1",  # one configuration; --seeds=0,1,2 makes it 3 runs
        "flags/study.cfg": "study 32",
    }


def test_report_points_to_existing_flagfiles():
    for name in report.FLAGFILES.values():
        assert os.path.isfile(os.path.join(ROOT, "flags", name)), name


# The committed runs were trained on torch; the backend is part of a run's identity.
@torch_only
def test_the_headline_runs_of_seed_0_are_the_committed_study_runs(fashion_mnist):
    """`--experiment=headline` plans, for seed 0, the very runs the study committed (same
    identities, so they are not trained again); other seeds get their own directories."""
    base = RunConfig(artifacts_dir=os.path.join(ROOT, "artifacts"), epochs=10, patience=3)
    from keras_fmnist import runner

    runs = runner.plan_headline(base, [0, 1])
    assert len(runs) == 2 * len(study.HEADLINE)
    assert [r.seed for r in runs] == [0] * 9 + [1] * 9  # seed by seed
    for config in runs[:9]:
        assert os.path.exists(os.path.join(config.run_dir(), "metrics.json")), config.run_dir()
    assert {(r.experiment, r.augment, r.deform_layers, r.regularizer) for r in runs[:9]} == {
        ("baseline", "none", (), None), ("augment", "basic", (), None),
        ("augment", "mixup", (), None), ("augment", "cutmix", (), None),
        ("deform", "cutmix", (3,), None), ("deform", "cutmix", (1, 3), None),
        ("regularize", "cutmix", (3,), "dropblock"), ("regularize", "cutmix", (3,), "stodepth"),
        ("final", "cutmix", (3,), None)}
