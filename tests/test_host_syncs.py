"""The host-sync census (keras_fmnist.bench.host_syncs) finds what a captured CUDA step could
not keep, on the CPU: known syncs are counted and placed, and the baseline training step has
none (the gate a captured step on CUDA relies on)."""

import json

import pytest

import keras
from helpers import torch_only
from keras_fmnist.bench import host_syncs
from keras_fmnist.run_config import RunConfig


def _syncs(census):
    return {key: n for key, n in census.items() if key[0] != "aten::lift_fresh"}


@torch_only
def test_a_tensor_read_as_a_number_is_a_counted_host_sync():
    x = keras.ops.ones((3,))
    census = host_syncs.host_op_census(lambda: int(keras.ops.sum(x)))
    [(op, where)] = _syncs(census)
    assert op == "aten::_local_scalar_dense" and census[(op, where)] == 1
    assert "test_host_syncs.py:" in where  # the line that read it, not torch's internals


@torch_only
def test_keras_seeded_random_syncs_and_is_placed_in_keras_torch_backend():
    generator = keras.random.SeedGenerator(1)
    census = host_syncs.host_op_census(keras.random.uniform, (4,), seed=generator)
    assert any(op == "aten::_local_scalar_dense" and "keras/src/backend/torch/random.py" in where
               for op, where in _syncs(census))


@torch_only
def test_the_baseline_training_step_has_no_host_sync():
    census = host_syncs.training_step_census(RunConfig(), batch_size=4)
    assert _syncs(census) == {}
    # Python values made into tensors do occur (Keras' metrics and loss scalars): counted, so
    # a captured step can see what it must keep out.
    assert sum(census.values()) > 0


@torch_only
def test_the_command_writes_its_census(tmp_path, capsys):
    out = tmp_path / "census.json"
    assert host_syncs.main(["--configurations=baseline", "--batch-size=2",
                            f"--json={out}"]) == 0
    assert "baseline: 0 host sync(s)" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["batch_size"] == 2 and set(report["configurations"]) == {"baseline"}


@pytest.mark.parametrize("argv, message", [
    (["--configurations=nope"], "unknown configuration(s) nope"),
    (["--batch-size=0"], "--batch-size must be at least 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        host_syncs.main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_other_backends_are_refused_with_one_line(capsys):
    if keras.backend.backend() == "torch":
        pytest.skip("the refusal is for the jax and tensorflow backends")
    with pytest.raises(SystemExit) as exit_info:
        host_syncs.main(["--configurations=baseline"])
    assert exit_info.value.code == 2 and "KERAS_BACKEND=torch" in capsys.readouterr().err
