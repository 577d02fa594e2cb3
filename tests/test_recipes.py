"""The strong recipe's pieces: Keras' schedule, optimizers and EMA wired as documented, the
recipe applied where flags are unset, flip TTA reported beside the plain test accuracy, and
the identities of runs recorded before the recipe existed unchanged."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_fmnist  # noqa: F401
from keras_fmnist import experiments
from keras_fmnist import recipes
from keras_fmnist import training
from keras_fmnist.experiments import RunConfig
from helpers import ROOT
from helpers import torch_only



def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = training.learning_rate_schedule(0.1, "cosine", total_steps=100, warmup_steps=10)
    lr = [float(keras.ops.convert_to_numpy(schedule(step))) for step in (0, 5, 10, 55, 100)]
    np.testing.assert_allclose(lr, [0.0, 0.05, 0.1, 0.05, 0.0], atol=1e-6)
    assert training.learning_rate_schedule(0.1) == 0.1
    with pytest.raises(ValueError, match="warm-up needs"):
        training.learning_rate_schedule(0.1, "constant", warmup_steps=3)
    with pytest.raises(ValueError, match="total_steps > warmup_steps"):
        training.learning_rate_schedule(0.1, "cosine", total_steps=5, warmup_steps=5)


def test_make_optimizer_is_keras_own():
    sgd = training.make_optimizer("sgd", 0.1, momentum=0.8, weight_decay=5e-4, ema=True)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.8
    assert sgd.weight_decay == 5e-4 and sgd.use_ema and sgd.ema_momentum == 0.999
    adam = training.make_optimizer()
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None
    with pytest.raises(ValueError, match="optimizer must be one of"):
        training.make_optimizer("lamb")


def test_runs_recorded_before_the_recipe_keep_their_identity():
    settings = RunConfig().identity()["settings"]
    for key in ("optimizer", "momentum", "weight_decay", "lr_schedule", "warmup_epochs",
                "label_smoothing", "ema", "ema_momentum", "tta"):
        assert key not in settings
    strong = dataclasses.replace(RunConfig(), **{k: v for k, v in recipes.STRONG.items()})
    recipe_settings = strong.identity()["settings"]
    assert recipe_settings["optimizer"] == "sgd" and recipe_settings["momentum"] == 0.9
    assert recipe_settings["ema_momentum"] == 0.999 and recipe_settings["tta"] is True
    assert strong.identity_hash() != RunConfig().identity_hash()


def test_crop_flip_cutmix_chains_both_layers():
    layer = experiments.make_augment_layer("crop_flip_cutmix", seed=0)
    images = np.random.default_rng(0).uniform(size=(8, 28, 28, 1)).astype("float32")
    labels = np.eye(10, dtype="float32")[np.arange(8)]
    out = layer({"images": images, "labels": labels}, training=True)
    mixed = keras.ops.convert_to_numpy(out["labels"])
    np.testing.assert_allclose(mixed.sum(axis=1), 1.0, atol=1e-5)
    assert (mixed.max(axis=1) < 1.0).any()  # CutMix ran after the crop and flip


# run.py's strong experiment end to end, once (torch pass): its training pieces (SGD with a
# cosine schedule, weight averaging, label smoothing, crop/flip/CutMix) run on every backend
# in tests/test_resume.py's recipe and the tests above.
@pytest.mark.cli_orchestration
def test_strong_experiment_applies_the_recipe_and_reports_tta(tmp_path):
    """A tiny strong run (flags override the recipe, as for any flagfile)."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run.py"), "--experiment=strong",
         "--stem=imagenet", "--train_limit=200", "--test_limit=32", "--epochs=2",
         "--warmup_epochs=1", "--batch_size=50", "--verbose=0",
         f"--artifacts_dir={tmp_path}"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [d for d in os.listdir(tmp_path / "strong") if not d.startswith(".")]
    with open(tmp_path / "strong" / run_dir / "metrics.json") as f:
        metrics = json.load(f)
    config = metrics["config"]
    assert config["optimizer"] == "sgd" and config["ema"] and config["tta"]
    assert config["stem"] == "imagenet" and config["epochs"] == 2  # the flags won
    assert config["augment"] == "crop_flip" and config["patience"] == 0
    assert 0.0 <= metrics["test_accuracy_tta"] <= 1.0
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["status"] == "finished"

    from keras_fmnist import report

    text = open(report.write_report(str(tmp_path))).read()
    section = text[text.index("## 5. Beyond the study"):]
    assert "| study stem (7x7/2 + max-pool); epochs=2; warmup_epochs=1 |" in section
    figure = tmp_path / report.FIGURES_DIR / "strong_val_accuracy_vs_minutes.png"
    assert figure.stat().st_size > 0 and figure.name in section


def test_report_names_each_run_by_its_change_to_the_recipe():
    from keras_fmnist import report

    strong = dict(recipes.STRONG, deform_layers=[], regularizer=None, p=0.1)
    assert report.recipe_change(strong) == "the strong recipe"
    assert report.recipe_change(dict(strong, ema=False)) == "no weight averaging"
    assert report.recipe_change(dict(strong, stem="imagenet")) == "study stem (7x7/2 + max-pool)"
    assert report.recipe_change(dict(strong, augment="crop_flip_cutmix")) == "+ CutMix"
    assert report.recipe_change(dict(strong, regularizer="stodepth", p=0.1)) == \
        "+ stochastic depth p=0.1"
    assert report.recipe_change(dict(strong, epochs=3)) == "epochs=3"


# A benchmark of the torch training step (what README's cost table quotes).
@torch_only
def test_strong_cost_benchmark_writes_both_stems(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import strong_cost
    finally:
        sys.path.pop(0)
    strong_cost.main([str(tmp_path / "cost.json"), "--steps", "1", "--repeats", "1"])
    with open(tmp_path / "cost.json") as f:
        stems = json.load(f)["stems"]
    assert set(stems) == {"imagenet", "cifar"}
    assert all(s["images_per_s"] > 0 and s["epoch_minutes"] > 0 for s in stems.values())
