"""The command line: bad input is one line and exit code 2; a smoke run writes its artifacts."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_fmnist
from helpers import ROOT



def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "run.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


BAD_INPUT = [
    (["--experiment=nope"], "--experiment=nope: value should be one of"),
    (["--epochs=0"], "--epochs=0"),
    (["--val_fraction=1.5"], "--val_fraction must be in (0, 1)"),
    (["--stem=vgg"], "--stem=vgg: value should be one of <imagenet|cifar>"),
    (["--batch_size=abc"], "--batch_size"),
    (["--torchvision_weights=/nonexistent.pth"], "--torchvision_weights must name"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--data_dir=/nonexistent", "--epochs=1"], "/nonexistent/train-images-idx3-ubyte.gz"),
    (["--warmup_epochs=2"], "--warmup_epochs needs --lr_schedule=cosine"),
    (["--experiment=strong", "--epochs=2"], "--warmup_epochs=2 must be below --epochs=2"),
    (["--optimizer=rmsprop"], "--optimizer=rmsprop: value should be one of <adam|sgd>"),
]


def test_bad_input_is_one_line_and_exit_code_2(tmp_path, cases_for_this_backend,
                                               run_cli_cases):
    # A flag parser error, a data error, a recipe check.
    cases = cases_for_this_backend(BAD_INPUT, representative=[0, 7, 9])
    results = run_cli_cases(
        [([*args, f"--artifacts_dir={tmp_path}"], None) for args, _ in cases])
    for (args, expected), (code, stderr) in zip(cases, results):
        assert code == 2, (args, stderr)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1, (args, stderr)
        assert expected in lines[0]
        assert "Traceback" not in stderr


# Flag parsing runs before any Keras import: one pass (tensorflow's) checks it for all.
@pytest.mark.backend_independent
def test_helpfull_lists_the_flags_and_the_executors_engines():
    result = run_cli("--helpfull")
    assert result.returncode == 0
    for flag in ("--experiment", "--epochs", "--train_limit", "--val_fraction", "--stem"):
        assert flag in result.stdout
    # run.py declares its flags before importing Keras (bad input fails fast), so it spells
    # the engine choices out; they must stay the executors that exist.
    from keras_fmnist import executors

    assert f"--engine: <{'|'.join(executors.ENGINES)}>" in result.stdout


@pytest.mark.backend_independent
def test_flagfile_baseline_is_valid(tmp_path):
    # The shipped flagfile parses; the smoke settings after it keep the run tiny.
    result = run_cli(
        "--flagfile=flags/baseline.cfg", "--epochs=0", f"--artifacts_dir={tmp_path}"
    )
    assert result.returncode == 2 and "--epochs=0" in result.stderr


def test_smoke_run_writes_artifacts(tmp_path):
    result = run_cli(
        "--experiment=baseline",
        "--epochs=2",
        "--train_limit=600",
        "--test_limit=200",
        "--batch_size=64",
        f"--artifacts_dir={tmp_path}",
        "--run_name=smoke",
        "--verbose=0",
        "--tensorboard",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "baseline" / "smoke"
    for phase in ("train", "validation"):  # keras.callbacks.TensorBoard's event files
        assert list((run_dir / "tensorboard" / phase).glob("events.out.tfevents.*")), phase
    for name in ("model.keras", "history.csv", "metrics.json", "curves.png",
                 "confusion_matrix.png", "predictions.png"):
        assert (run_dir / name).stat().st_size > 0, name
    assert not [p for p in os.listdir(run_dir) if p.startswith(".tmp-")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    (_, y_train), _ = keras_fmnist.load_fashion_mnist()
    expected_val = sum(round(c * 0.1) for c in np.bincount(y_train[:600]))  # stratified
    assert metrics["split"] == {"train": 600 - expected_val, "val": expected_val, "test": 200}
    assert metrics["epochs_run"] == 2 and metrics["status"] == "finished"
    assert "run.py: " + str(run_dir) + " (trained): val_accuracy" in result.stdout
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["train_images_per_second"] > 0
    assert metrics["config"]["train_limit"] == 600
    assert metrics["versions"]["keras_backend"] == keras.backend.backend()
    history = (run_dir / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 3
    # The saved model predicts like the run measured it.
    from keras_fmnist import pipeline

    (_, _), (x_test, y_test) = keras_fmnist.load_fashion_mnist()
    model = keras.saving.load_model(run_dir / "model.keras")
    logits = model.predict(pipeline.to_model_inputs(x_test[:200]), verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == y_test[:200]))
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)


SMOKE = ["--train_limit=256", "--test_limit=64", "--epochs=1", "--batch_size=64", "--verbose=0"]


@pytest.mark.cli_orchestration
def test_deform_run_then_resume_skips_it(tmp_path):
    args = ["--experiment=deform", "--layers=1,3", *SMOKE, f"--artifacts_dir={tmp_path}"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "plan: 1 run(s), 0 already finished, 1 to train" in first.stdout
    (run_dir,) = (tmp_path / "deform").glob("aug-cutmix_deform-1-3_e1_seed0_n256-*")
    assert len(run_dir.name.rsplit("-", 1)[1]) == 8  # readable name, then the identity hash
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["config"]["deform_layers"] == [1, 3] and metrics["config"]["augment"] == "cutmix"
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "plan: 1 run(s), 1 already finished, 0 to train" in second.stdout
    assert f"run.py: {tmp_path}/deform/{run_dir.name} (done): val_accuracy" in second.stdout
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics  # untouched
    report = (tmp_path / "REPORT.md").read_text()
    assert "## 3. Deformable stages" in report and "| 1+3 |" in report


@pytest.mark.cli_orchestration
def test_regularize_and_final_runs(tmp_path):
    reg = run_cli("--experiment=regularize", "--regularizer=dropblock", "--p=0.2",
                  "--layers=none", *SMOKE, f"--artifacts_dir={tmp_path}")
    assert reg.returncode == 0, reg.stderr[-3000:]
    metrics = json.loads(next((tmp_path / "regularize").glob("*/metrics.json")).read_text())
    assert metrics["config"]["regularizer"] == "dropblock" and metrics["config"]["p"] == 0.2
    final = run_cli("--experiment=final", "--layers=none", *SMOKE, f"--artifacts_dir={tmp_path}")
    assert final.returncode == 0, final.stderr[-3000:]
    run_dir = next((tmp_path / "final").glob("*trainval*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"]["val"] == 0 and metrics["split"]["train"] == 256
    assert "val_accuracy" not in metrics and 0 <= metrics["test_accuracy"] <= 1
    assert (run_dir / "predictions.png").stat().st_size > 0
