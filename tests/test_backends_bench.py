"""benchmarks/backends.py on a tiny setting: the backend of this pass, one timed step."""

import json
import os
import subprocess
import sys

import keras
from helpers import ROOT

SCRIPT = os.path.join(ROOT, "benchmarks", "backends.py")


def test_measures_this_pass_backend_in_its_own_process(tmp_path):
    backend = keras.backend.backend()
    out = tmp_path / "results" / "backends.json"
    # KERAS_BACKEND of the parent is not what the child gets: --backends decides.
    env = {**os.environ, "KERAS_BACKEND": "jax" if backend != "jax" else "torch"}
    result = subprocess.run(
        [sys.executable, SCRIPT, f"--backends={backend}", "--steps=1", "--repeats=2",
         "--warmup=1", "--images=128", f"--out={out}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert list(report["backends"]) == [backend]
    entry = report["backends"][backend]
    assert entry["images_per_second"] > 0
    assert len(entry["repeats_images_per_second"]) == 2
    # torch is measured stock and accelerated (run.py's path); the others have one figure.
    assert ("accelerated_images_per_second" in entry) == (backend == "torch")
    if backend == "torch":
        assert entry["accelerated_images_per_second"] > 0
        assert len(entry["accelerated_repeats_images_per_second"]) == 2
        assert entry["pytorch_reference_images_per_second"] > 0
        assert len(entry["pytorch_reference_repeats_images_per_second"]) == 2
    assert entry["batch_size"] == 128
    assert backend in entry["versions"] and entry["versions"]["keras"] == keras.__version__
    assert report["cpu_count"] == os.cpu_count() and len(report["loadavg_before"]) == 3
    assert [p.name for p in out.parent.iterdir()] == ["backends.json"]  # no temporary left


def test_rejects_unknown_backends_before_any_work():
    result = subprocess.run([sys.executable, SCRIPT, "--backends=torch,mxnet"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "expected distinct names from torch,jax,tensorflow" in result.stderr
