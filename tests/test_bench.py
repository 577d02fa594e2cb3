"""The benchmark runs end to end at a tiny size (no timing is asserted), and the fast torch
paths it measures compute what Keras' own layers and optimizer compute."""

import json

import numpy as np
import pytest

import keras
import keras_fmnist  # noqa: F401
from keras_fmnist.bench import __main__ as bench_main
from keras_fmnist.bench import training as bench_training
from keras_fmnist.layers import FastBatchNormalization
from keras_fmnist.layers import FastConv2D
from keras_fmnist.optimizers import FusedAdam

torch_only = pytest.mark.skipif(
    keras.backend.backend() != "torch", reason="the benchmark compares against plain PyTorch"
)


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


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_fast_layers_match_keras_layers(data_format):
    rng = np.random.default_rng(0)
    shape = (3, 6, 6, 5) if data_format == "channels_last" else (3, 5, 6, 6)
    x = rng.standard_normal(shape).astype("float32")
    for kwargs in (dict(filters=4, kernel_size=3, padding="same"),
                   dict(filters=4, kernel_size=3, strides=2, padding="valid", use_bias=True),
                   dict(filters=4, kernel_size=1, strides=2)):
        ref = keras.layers.Conv2D(data_format=data_format, **kwargs)
        fast = FastConv2D(data_format=data_format, **kwargs)
        ref.build(shape)
        fast.build(shape)
        fast.set_weights(ref.get_weights())
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(x)),
                                   keras.ops.convert_to_numpy(ref(x)), atol=1e-5)
    axis = -1 if data_format == "channels_last" else 1
    ref = keras.layers.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5)
    fast = FastBatchNormalization(axis=axis, momentum=0.9, epsilon=1e-5)
    ref.build(shape)
    fast.build(shape)
    fast.set_weights([w + 0.1 * i for i, w in enumerate(ref.get_weights())])
    ref.set_weights(fast.get_weights())
    for training in (True, False):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(fast(x, training=training)),
                                   keras.ops.convert_to_numpy(ref(x, training=training)),
                                   atol=1e-4)
    for a, b in zip(fast.get_weights(), ref.get_weights()):  # moving statistics
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_fused_adam_matches_keras_adam():
    rng = np.random.default_rng(0)
    shapes = [(3, 3, 2, 4), (4,)]
    init = [rng.standard_normal(s).astype("float32") for s in shapes]
    finals = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        variables = [keras.Variable(a) for a in init]
        optimizer = cls(learning_rate=1e-2)
        grads_rng = np.random.default_rng(1)
        for t in range(8):
            scale = 1e-3 if t % 2 else 1.0  # small gradients make epsilon matter
            grads = [keras.ops.convert_to_tensor(
                (scale * grads_rng.standard_normal(s)).astype("float32")) for s in shapes]
            if keras.backend.backend() == "torch":
                import torch

                with torch.no_grad():
                    optimizer.apply(grads, variables)
            else:
                optimizer.apply(grads, variables)
        finals.append([keras.ops.convert_to_numpy(v) for v in variables])
    for a, b, start in zip(*finals, init):
        assert np.abs(a - start).max() > 1e-2  # it did move
        np.testing.assert_allclose(a, b, atol=1e-5)
