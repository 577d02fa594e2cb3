"""The benchmark runs end to end at a tiny size (no timing is asserted), and the fast torch
paths it measures compute what Keras' own layers and optimizer compute."""

import json

import numpy as np
import pytest

import keras
import keras_fmnist  # noqa: F401
from keras_fmnist.bench import __main__ as bench_main
from keras_fmnist.bench import training as bench_training
from helpers import torch_only


def _device():
    """Where Keras' torch backend puts models: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@torch_only
def test_compare_reports_both_sides_and_ratios():
    r = bench_training.compare(batch_size=4, repeats=2, steps=1, warmup=1, device=_device())
    for mode in ("train", "inference"):
        for side in ("keras", "torch"):
            s = r[mode]["images_per_s"][side]
            assert s["min"] <= s["median"] <= s["max"] and s["min"] > 0
            assert len(s["values"]) == 2
        assert r[mode]["ratio_wall"] > 0 and r[mode]["ratio_cpu"] > 0


@torch_only
def test_torch_reference_matches_the_study_architecture():
    torch = pytest.importorskip("torch")
    model = bench_training.torch_resnet18(deform_layers=(1, 3))
    keras_model = keras_fmnist.build_resnet18(deform_layers=(1, 3))
    n_torch = sum(p.numel() for p in model.parameters())
    n_keras = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert n_torch == n_keras
    block = model.layer1[1]
    # DCNv2: 2*k*k offsets + k*k masks, zero-initialised -> a plain conv scaled by 0.5.
    assert block.offset_conv.out_channels == 27
    x = torch.randn(2, 64, 7, 7)
    block.eval()
    plain = torch.nn.functional.conv2d(x, block.weight, padding=1) * 0.5
    expected = torch.relu(block.bn(plain))
    torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)


@torch_only
def test_main_writes_json(tmp_path):
    path = tmp_path / "bench.json"
    bench_main.main(["--batch-size", "4", "--repeats", "1", "--steps", "1", "--warmup", "1",
                     "--skip-memory", "--device", _device(), "--json", str(path)])
    report = json.loads(path.read_text())
    assert {"machine", "baseline", "deform_1_3_cutmix", "deform_conv2d"} <= set(report)
    assert report["deform_1_3_cutmix"]["cutmix"] is True
    assert set(report["baseline"]["train"]["ratios_wall"]) == {"keras", "keras_user",
                                                               "keras_stock"}
    assert set(report["adam_update"]) == {"default", "amsgrad"}


def test_peak_rss_is_positive():
    assert bench_training.peak_rss_mb() > 0


def test_bad_flags_are_rejected():
    with pytest.raises(SystemExit):
        bench_main.parse_args(["--repeats", "0"])


@torch_only
def test_a_device_keras_would_not_use_is_refused():
    other = "cpu" if _device() == "cuda" else "cuda"
    with pytest.raises(ValueError, match="device="):
        bench_training.compare(batch_size=2, repeats=1, steps=1, warmup=0, device=other)


def test_optimizer_update_times_reports_both_sides():
    r = bench_training.optimizer_update_times(configs=("default",), repeats=1, steps=1,
                                              warmup=1)
    sides = r["default"]["seconds_per_update"]
    assert sides["keras_adam"]["median"] > 0 and sides["fused_adam"]["median"] > 0
    if keras.backend.backend() == "torch":
        assert r["default"]["fused_counts"]["fused"] == 2  # warm-up + 1 timed


@torch_only
def test_batch_norm_benchmark_runs_every_candidate_and_restores_the_chosen_op():
    from keras_fmnist.accelerate import kernels
    from keras_fmnist.bench import batch_norm as bench_batch_norm

    chosen = kernels.batch_norm_training
    isolated = bench_batch_norm.isolated_errors(cases=[((4, 3, 5, 5), 0.0, 1.0)])
    (rows,) = isolated.values()
    assert set(rows) == {"native", "contiguous", "float64", "accelerate", "exact_statistics",
                         "stock_keras_formula"}
    assert all(0 <= e < 1e-3 for errors in rows.values() for e in errors.values())
    times = bench_batch_norm.step_times(repeats=1, steps=1, batch_size=4)
    assert set(times) == {"native", "contiguous", "accelerate", "exact_statistics"}
    assert kernels.batch_norm_training is chosen
