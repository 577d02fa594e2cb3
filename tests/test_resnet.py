import numpy as np
import pytest

import keras
import keras_fmnist
from keras_fmnist import training
from keras_fmnist.backend.layout import channels_first_unsupported
from keras_fmnist.models import resnet

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def study_torchvision_resnet18(num_classes=10, in_channels=1):
    """torchvision's resnet18 with the study's surgery: 1-channel stem, no layer4, 256 -> 10."""
    model = torchvision.models.resnet18(weights=None)
    model.conv1 = torch.nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    model.layer4 = torch.nn.Identity()
    model.fc = torch.nn.Linear(256, num_classes)
    return model


def _randomise_batchnorm(model):
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)


def _logits(keras_model, torch_model, x):
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    out = keras.ops.convert_to_numpy(keras_model(x, training=False))
    return out, ref


def test_shapes_follow_the_study():
    model = keras_fmnist.build_resnet18(data_format="channels_last")
    assert model.output_shape == (None, 10)
    assert model.get_layer("maxpool").output.shape[1:3] == (7, 7)
    assert model.get_layer("layer1_1_relu2").output.shape[1:] == (7, 7, 64)
    assert model.get_layer("layer2_1_relu2").output.shape[1:] == (4, 4, 128)
    assert model.get_layer("layer3_1_relu2").output.shape[1:] == (2, 2, 256)
    assert model.get_layer("fc").kernel.shape == (256, 10)
    # Downsampling only where the shape changes, as torchvision decides.
    names = {layer.name for layer in model.layers}
    assert "layer1_0_downsample_0" not in names
    assert {"layer2_0_downsample_0", "layer3_0_downsample_0"} <= names


def test_cifar_stem_keeps_resolution():
    model = keras_fmnist.build_resnet18(stem="cifar", data_format="channels_last")
    assert model.get_layer("layer1_1_relu2").output.shape[1:] == (28, 28, 64)


def test_parameter_count_matches_torchvision():
    model = keras_fmnist.build_resnet18()
    reference = study_torchvision_resnet18()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(p.numel() for p in reference.parameters())


def test_torchvision_weight_parity():
    reference = study_torchvision_resnet18()
    _randomise_batchnorm(reference)
    reference.eval()
    model = keras_fmnist.build_resnet18()
    report = keras_fmnist.load_torchvision_weights(model, reference.state_dict())
    assert not report["not_loaded"] and not report["mismatched"]
    x = np.random.default_rng(0).normal(size=(4, 28, 28, 1)).astype("float32")
    out, ref = _logits(model, reference, x)
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


def test_imagenet_state_dict_rgb_stem_and_layer4_are_handled(tmp_path):
    full = torchvision.models.resnet18(weights=None)  # 3-channel stem, layer4, 1000-class fc
    full.eval()
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    model = keras_fmnist.build_resnet18()
    report = keras_fmnist.load_torchvision_weights(model, str(path), verbose=False)
    assert any(k.startswith("layer4.") for k in report["skipped_keys"])
    assert report["mismatched"] == ["fc"]
    summed = full.conv1.weight.detach().numpy().sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model.get_layer("conv1").kernel),
        np.transpose(summed, (2, 3, 1, 0)),
        atol=1e-6,
    )


def test_save_load_round_trip(tmp_path):
    model = keras_fmnist.build_resnet18(input_mean=0.3, input_variance=0.1)
    x = np.random.default_rng(1).uniform(size=(3, 28, 28, 1)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(loaded(x, training=False)),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stem": "vgg"}, "stem must be one of"),
        ({"stages": 5}, "stages must be"),
        ({"deform_layers": (4,)}, "deform_layers must name stages in 1..3"),
        ({"regularizer": "dropout"}, "regularizer must be"),
        ({"regularizer": "dropblock", "p": 1.0}, r"p must be in \[0, 1\)"),
        ({"block_size": 0}, "block_size must be an integer >= 1"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        keras_fmnist.build_resnet18(**kwargs)


def test_torchvision_module_name():
    assert resnet.torchvision_module_name("layer2_0_downsample_1") == "layer2.0.downsample.1"
    assert resnet.torchvision_module_name("fc") == "fc"


def test_deformed_stage_is_basic_block_then_deform_conv_block():
    model = keras_fmnist.build_resnet18(deform_layers=(1, 3), data_format="channels_last")
    names = [layer.name for layer in model.layers]
    for stage in (1, 3):
        assert f"layer{stage}_0_conv2" in names  # the stage's BasicBlock stays
        assert f"layer{stage}_1_deform_conv" in names and f"layer{stage}_1_conv1" not in names
        deform = model.get_layer(f"layer{stage}_1_deform_conv")
        assert deform.modulated and deform.kernel_size == (3, 3)
    assert "layer2_1_conv1" in names and "layer2_1_deform_conv" not in names
    assert model.get_layer("layer3_1_relu").output.shape[1:] == (2, 2, 256)


def test_regularised_blocks():
    dropblock = keras_fmnist.build_resnet18(regularizer="dropblock", p=0.2, block_size=5,
                                            seed=0)
    drops = [l for l in dropblock.layers if isinstance(l, keras_fmnist.layers.DropBlock2D)]
    assert len(drops) == 12 and {(l.rate, l.block_size) for l in drops} == {(0.2, 5)}
    assert len({l.seed for l in drops}) == 12  # distinct masks per layer
    stodepth = keras_fmnist.build_resnet18(regularizer="stodepth", p=0.3,
                                           stochastic_depth_rule="linear")
    rates = [l.rate for l in stodepth.layers
             if isinstance(l, keras_fmnist.layers.StochasticDepth)]
    np.testing.assert_allclose(rates, [0.3 * i / 6 for i in range(1, 7)])
    uniform = keras_fmnist.build_resnet18(regularizer="stodepth", p=0.3)
    assert {l.rate for l in uniform.layers
            if isinstance(l, keras_fmnist.layers.StochasticDepth)} == {0.3}


def test_model_with_every_custom_layer_round_trips(tmp_path):
    model = keras_fmnist.build_resnet18(deform_layers=(1, 2, 3), regularizer="dropblock",
                                        seed=0, deform_implementation="keras")
    x = np.random.default_rng(2).uniform(size=(2, 28, 28, 1)).astype("float32")
    model.save(tmp_path / "all.keras")
    loaded = keras.saving.load_model(tmp_path / "all.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, training=False)),
        keras.ops.convert_to_numpy(loaded(x, training=False)), atol=1e-6)


def test_channels_first_gives_the_same_logits():
    """Both layouts hold the same weights in the same layer order and compute the same thing
    (where the backend runs channels-first; elsewhere the builder refuses it, saying why)."""
    if channels_first_unsupported():
        with pytest.raises(ValueError, match="build_resnet18: data_format='channels_first'"):
            keras_fmnist.build_resnet18(data_format="channels_first")
        return
    last = keras_fmnist.build_resnet18(deform_layers=(1, 3), deform_implementation="keras",
                                       data_format="channels_last")
    first = keras_fmnist.build_resnet18(deform_layers=(1, 3), deform_implementation="keras",
                                        data_format="channels_first")
    rng = np.random.default_rng(4)
    for layer in last.layers:  # real offsets, not DCNv2's zero start
        if isinstance(layer, keras_fmnist.layers.DeformConv2D):
            layer.offset_kernel.assign(
                rng.normal(0, 0.05, layer.offset_kernel.shape).astype("float32"))
    first.set_weights(last.get_weights())
    x = np.random.default_rng(3).uniform(size=(2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first(x, training=False)),
        keras.ops.convert_to_numpy(last(x, training=False)), atol=1e-4)


def test_the_builders_layout_runs_everywhere_and_runs_train_the_faster_one():
    """build_resnet18() is channels-last on every backend (its graph and saved file run on
    any CPU); run.py trains torch's faster channels-first (default_data_format)."""
    model = keras_fmnist.build_resnet18()
    assert model.get_layer("conv1").data_format == "channels_last"
    assert resnet.default_data_format("torch") == "channels_first"


def test_the_graph_is_stock_keras_layers_with_torchs_padding():
    model = keras_fmnist.build_resnet18(deform_layers=(1,), regularizer="dropblock")
    assert type(model).__name__ == "Functional"
    study_layers = (keras_fmnist.layers.DeformConv2D, keras_fmnist.layers.DropBlock2D,
                    keras_fmnist.layers.StochasticDepth)
    for layer in model.layers:
        stock = type(layer).__module__.startswith("keras.")
        assert stock or isinstance(layer, study_layers), type(layer)
    # Stride 1, odd kernel: Keras' "same" is torch's padding. Otherwise explicit zeros.
    assert model.get_layer("layer1_0_conv1").padding == "same"
    for name, pad in (("conv1", 3), ("layer2_0_conv1", 1), ("maxpool", 1)):
        assert model.get_layer(name).padding == "valid"
        assert model.get_layer(f"{name}_pad").padding == ((pad, pad), (pad, pad))
    assert not any(isinstance(l, keras.layers.Permute) for l in model.layers[2:])


SAVED_MODEL_CHECK = """
import sys
import numpy as np
import keras
assert "keras_fmnist" not in sys.modules
model = keras.saving.load_model(sys.argv[1])
x, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
got = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
assert "keras_fmnist" not in sys.modules
np.testing.assert_allclose(got, expected, atol=1e-5)
print("ok", type(model).__name__)
"""


def test_a_saved_model_loads_and_predicts_without_keras_fmnist(tmp_path):
    import subprocess
    import sys

    model = keras_fmnist.accelerate(keras_fmnist.build_resnet18(input_mean=0.3,
                                                                input_variance=0.1))
    training.compile_model(model)
    x = np.random.default_rng(8).uniform(size=(4, 28, 28, 1)).astype("float32")
    model.train_on_batch(x, np.eye(10, dtype="float32")[[1, 2, 3, 4]])
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
    env = {**__import__("os").environ, "KERAS_BACKEND": keras.backend.backend()}
    result = subprocess.run(
        [sys.executable, "-c", SAVED_MODEL_CHECK, str(tmp_path / "m.keras"),
         str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ok Functional" in result.stdout


def test_direct_forward_passes_training_to_random_layers():
    model = keras_fmnist.accelerate(
        keras_fmnist.build_resnet18(regularizer="dropblock", p=0.3, block_size=3, seed=0))
    x = np.random.default_rng(6).uniform(size=(2, 28, 28, 1)).astype("float32")
    infer = [keras.ops.convert_to_numpy(model(x, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(infer[0], infer[1])
    train = [keras.ops.convert_to_numpy(model(x, training=True)) for _ in range(2)]
    assert np.abs(train[0] - train[1]).max() > 1e-4  # fresh DropBlock masks per call
