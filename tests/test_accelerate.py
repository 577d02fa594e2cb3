"""`keras_fmnist.accelerate`: the same numbers as the stock model (outputs, gradients, every
tap), every planned fast path really taken on the pinned versions, in-place only where safe,
nothing silent, and saving writes the stock model."""

import warnings

import numpy as np
import pytest

import keras
import keras_fmnist
from keras_fmnist import accelerate
from keras_fmnist import training
from keras_fmnist.accelerate import AcceleratedModel
from keras_fmnist.backend import private_api
from keras_fmnist.optimizers import FusedAdam
from keras_fmnist.optimizers import as_fused

from helpers import ON_TORCH as on_torch
from helpers import assert_within
from helpers import float64_twin
from helpers import numerics
from helpers import to_numpy as _np
from helpers import torch_only
from helpers import worst_relative_error


def _images(n=3, seed=5):
    return np.random.default_rng(seed).uniform(size=(n, 28, 28, 1)).astype("float32")


def _output_and_grads(model, x, training):
    """The model's output and (on torch) the gradients of its weights, from a fixed loss."""
    if not on_torch:
        return _np(model(x, training=training)), []
    weights = model.trainable_weights
    for w in weights:
        w.value.grad = None
    out = model(keras.ops.convert_to_tensor(x), training=training)
    (out * keras.ops.arange(10, dtype=out.dtype)).sum().backward()
    return _np(out), [_np(w.value.grad) for w in weights]


def _training_call(model, x):
    """What one training call computes: logits, every weight's gradient (of a fixed loss),
    every batch norm's moving statistics (reset first), then the inference logits."""
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    logits, grads = _output_and_grads(model, x, training=True)
    return {
        "logits": [logits],
        "gradients": grads,
        "moving_mean": [_np(l.moving_mean) for l in bns],
        "moving_variance": [_np(l.moving_variance) for l in bns],
        "inference logits": [_np(model(x, training=False))],
    }


# The configurations the accelerated path runs, with the batch size of their test: 16
# images, so that each batch norm of the 2x2 stage normalises 64 values (with fewer, a
# channel can have almost no variance and every float32 path is ill-conditioned there); 8
# for the 28x28 maps of the cifar stem.
NUMERIC_CONFIGS = [
    ({}, 16),
    ({"stages": 2}, 16),
    ({"deform_layers": (1, 3), "deform_implementation": "keras"}, 16),
    ({"regularizer": "stodepth", "p": 0.0}, 16),
    ({"regularizer": "dropblock", "p": 0.0, "seed": 0}, 16),
    ({"data_format": "channels_first", "input_mean": 0.3, "input_variance": 0.1}, 16),
    ({"stem": "cifar", "stages": 1}, 8),
]


@torch_only
@numerics
@pytest.mark.parametrize("kwargs, batch", NUMERIC_CONFIGS)
def test_accelerated_training_is_as_accurate_as_the_stock_graph(kwargs, batch):
    """Against the same model in float64: logits, gradients, moving statistics and inference
    logits of the accelerated path within 10x of the stock float32 graph's own error.

    Medians over three image batches: a ReLU input that lies within rounding of zero flips
    in some batch for any float32 path (stock or accelerated alike), and one flipped unit
    moves a gradient by ~1e-2 of its size; such a batch measures luck, not precision.
    """
    keras.utils.set_random_seed(0)
    stock, reference = float64_twin(keras_fmnist.build_resnet18, **kwargs)
    fast = accelerate(stock)
    errors = {"stock": {}, "accelerated": {}}
    for seed in range(3):
        x = np.random.default_rng(seed).uniform(size=(batch, 28, 28, 1))
        truth = _training_call(reference, x)
        for name, model in (("stock", stock), ("accelerated", fast)):
            got = _training_call(model, x.astype("float32"))
            for quantity, values in got.items():
                errors[name].setdefault(quantity, []).append(
                    worst_relative_error(values, truth[quantity]))
    for quantity, values in errors["stock"].items():
        stock_error = float(np.median(values))
        # The premise: float32 is well-conditioned on these batches (about 1e-6 here).
        assert stock_error < 1e-4, f"{quantity}: stock float32 error {stock_error:.1e}"
        assert_within(float(np.median(errors["accelerated"][quantity])), stock_error, 10,
                      f"{kwargs} {quantity}")
    assert fast.acceleration_counts["stock"] == 0


@torch_only  # elsewhere accelerate returns the model itself: nothing to compare
def test_every_tap_equals_the_stock_models_tap():
    """Tapping any layer's output beside the logits gives what the stock model gives: an
    in-place op never overwrites a tensor that is a model output."""
    model = keras_fmnist.build_resnet18(regularizer="dropblock", p=0.0)
    x = _images(2)
    for layer in model.layers[1:]:
        tap = keras.Model(model.inputs, [layer.output, model.outputs[0]])
        fast = accelerate(tap)
        for training in (False, True):
            ref = [_np(t) for t in tap(x, training=training)]
            out = [_np(t) for t in fast(x, training=training)]
            for a, b in zip(out, ref):
                np.testing.assert_allclose(a, b, atol=1e-4, err_msg=layer.name)


def test_the_issue_example_bn1_is_not_overwritten_by_the_relu():
    m = keras_fmnist.build_resnet18()
    tapped = accelerate(keras.Model(m.inputs, [m.get_layer("bn1").output, m.outputs[0]]))
    bn1, _ = tapped(_images(2), training=False)
    alone = keras.Model(m.inputs, m.get_layer("bn1").output)(_images(2), training=False)
    np.testing.assert_allclose(_np(bn1), _np(alone), atol=1e-6)
    assert _np(bn1).min() < 0


def _decisions(model):
    return {d.layers[-1]: d for d in model.decisions}


@torch_only
def test_every_fast_path_is_taken_on_the_pinned_versions():
    assert private_api.check_versions() is None
    model = accelerate(keras_fmnist.build_resnet18())
    assert isinstance(model, AcceleratedModel)
    decisions = _decisions(model)
    stock = model.stock_model
    convs = [l for l in stock.layers if type(l) is keras.layers.Conv2D]
    bns = [l for l in stock.layers if type(l) is keras.layers.BatchNormalization]
    relus = [l for l in stock.layers if type(l) is keras.layers.ReLU]
    adds = [l for l in stock.layers if type(l) is keras.layers.Add]
    assert all("torch conv2d" in decisions[l.name].what for l in convs)
    # A batch norm whose only reader is a ReLU runs with it as one op; the others alone.
    fused = {d.layers for d in model.decisions if d.what == "torch fused batch norm + ReLU, one op"}
    assert fused == {("bn1", "relu")} | {
        (f"layer{s}_{b}_bn1", f"layer{s}_{b}_relu1") for s in (1, 2, 3) for b in (0, 1)}
    alone = [l for l in bns if (l.name,) not in {f[:1] for f in fused}]
    assert alone and all(decisions[l.name].what == "torch fused batch norm" for l in alone)
    unfused_relus = [l for l in relus if not any(l.name in f for f in fused)]
    assert unfused_relus and all(decisions[l.name].what == "ReLU in place" for l in unfused_relus)
    assert all(decisions[l.name].what.startswith("Add in place") for l in adds)
    folded = {d.layers for d in model.decisions if "folded" in d.what}
    assert folded == {
        ("conv1_pad", "conv1"),
        ("maxpool_pad", "maxpool"),
        ("layer2_0_conv1_pad", "layer2_0_conv1"),
        ("layer3_0_conv1_pad", "layer3_0_conv1"),
    }
    for conv in convs:  # kernels channels-last in memory: (out, kh, kw, in) order
        value = conv.kernel.value
        assert value.permute(3, 0, 1, 2).is_contiguous()


@torch_only
def test_training_takes_the_planned_path_and_the_fused_adam_update(fashion_mnist):
    (x, y), _ = fashion_mnist
    x = x[:64, :, :, None].astype("float32") / 255.0
    y = keras.utils.to_categorical(y[:64], 10)
    model = accelerate(keras_fmnist.build_resnet18(regularizer="dropblock", p=0.1, seed=0))
    training.compile_model(model)
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert model.acceleration_counts["stock"] == 0
    assert model.acceleration_counts["accelerated"] >= 2  # and Keras' build call
    assert isinstance(model.optimizer, FusedAdam)
    counts = model.optimizer.counts.as_dict()
    assert counts == {"fused": 2, "keras": 0, "reasons": {}}
    assert _decisions(model)["optimizer"].what == "Adam updated by torch's fused kernel"


@torch_only
def test_in_place_only_where_nothing_else_reads_the_tensor():
    inputs = keras.Input((4, 4, 3))
    a = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    b = keras.layers.BatchNormalization(name="bn")(a)
    c = keras.layers.ReLU(name="relu_shared")(b)  # b also read by the Add below
    d = keras.layers.Add(name="add")([c, b])  # c: a ReLU's output, its backward reads it
    e = keras.layers.ReLU(name="relu_last")(d)  # d: an Add's, read once -> in place
    f = keras.layers.ReLU(name="relu_on_relu")(e)  # e: a ReLU's output -> not in place
    sig = keras.layers.Activation("sigmoid", name="sigmoid")(f)
    g = keras.layers.ReLU(name="relu_after_unknown")(sig)
    model = keras.Model(inputs, [g, a])  # a is a model output
    fast = accelerate(model)
    decisions = _decisions(fast)
    assert decisions["relu_shared"].what == "ReLU, not in place"
    assert "2 readers" in decisions["relu_shared"].why
    assert decisions["add"].what == "Add, not in place"
    assert decisions["relu_last"].what == "ReLU in place"
    assert decisions["relu_on_relu"].what == "ReLU, not in place"
    assert "backward reads its output" in decisions["relu_on_relu"].why
    assert decisions["relu_after_unknown"].what == "ReLU, not in place"
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype("float32")
    for training in (False, True):
        for out, ref in zip(fast(x, training=training), model(x, training=training)):
            np.testing.assert_allclose(_np(out), _np(ref), atol=1e-6)


@torch_only
def test_a_convolution_with_an_activation_is_not_overwritten_and_trains():
    # sigmoid's and tanh's backward read their output: an in-place Add or ReLU after such a
    # Conv2D would corrupt the gradient (torch raises "modified by an inplace operation").
    inputs = keras.Input((4, 4, 2))
    a = keras.layers.Conv2D(2, 1, activation="sigmoid", name="conv_sigmoid")(inputs)
    b = keras.layers.Conv2D(2, 1, name="conv_linear")(inputs)
    c = keras.layers.Add(name="add")([a, b])
    d = keras.layers.Conv2D(10, 1, activation="tanh", name="conv_tanh")(c)
    e = keras.layers.ReLU(name="relu")(d)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(e))
    fast = accelerate(model)
    decisions = _decisions(fast)
    assert decisions["add"].what == "Add in place into input 1"  # conv_linear's output
    assert decisions["relu"].what == "ReLU, not in place"
    assert "activation may read its output" in decisions["relu"].why
    x = np.random.default_rng(3).normal(size=(4, 4, 4, 2)).astype("float32")
    _, fast_grads = _output_and_grads(fast, x, training=True)
    _, stock_grads = _output_and_grads(model, x, training=True)
    for f, r in zip(fast_grads, stock_grads):
        np.testing.assert_allclose(f, r, atol=1e-6)
    fast.compile(optimizer="sgd", loss="mse")
    fast.fit(x, np.zeros((4, 10), "float32"), epochs=1, verbose=0)
    assert fast.acceleration_counts["stock"] == 0


@torch_only
def test_an_accelerated_model_is_tapped_like_the_stock_one():
    fast = accelerate(keras_fmnist.build_resnet18(stages=1))
    assert fast.inputs is fast.stock_model.inputs and fast.outputs is fast.stock_model.outputs
    tapped = keras.Model(fast.inputs, [fast.get_layer("bn1").output, fast.outputs[0]])
    alone = keras.Model(fast.input, fast.get_layer("bn1").output)
    bn1, _ = accelerate(tapped)(_images(2), training=False)
    np.testing.assert_allclose(_np(bn1), _np(alone(_images(2), training=False)), atol=1e-6)
    assert _np(bn1).min() < 0


@torch_only
def test_max_pool_padding_is_folded_only_when_its_input_is_non_negative():
    inputs = keras.Input((3, 6, 6))
    x = keras.layers.ZeroPadding2D(1, data_format="channels_first", name="pad")(inputs)
    x = keras.layers.MaxPooling2D(3, 2, data_format="channels_first", name="pool")(x)
    model = keras.Model(inputs, x)
    fast = accelerate(model)
    assert _decisions(fast)["pool"].layers == ("pool",)  # not folded: input may be < 0
    x = -np.random.default_rng(1).uniform(1, 2, size=(2, 3, 6, 6)).astype("float32")
    np.testing.assert_allclose(_np(fast(x)), _np(model(x)))  # zeros win, as in the stock model
    assert _np(model(x)).max() == 0.0


def test_other_graphs_two_inputs_two_outputs_a_shared_layer():
    a, b = keras.Input((3,)), keras.Input((3,))
    shared = keras.layers.Dense(4, name="shared")
    outputs = [keras.layers.Add()([shared(a), shared(b)]), keras.layers.ReLU()(b)]
    model = keras.Model([a, b], outputs)
    fast = accelerate(model)
    x = [np.random.default_rng(7).normal(size=(2, 3)).astype("float32") for _ in range(2)]
    for f, r in zip(fast(x), model(x)):
        np.testing.assert_allclose(_np(f), _np(r), atol=1e-6)
    if on_torch:
        assert fast.acceleration_counts["accelerated"] == 1


@torch_only
def test_calls_the_plan_cannot_take_run_the_stock_model_warn_once_and_say_why():
    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    x = _images(2)
    ref = _np(model.stock_model(x, training=False))
    seen = []
    handle = model.get_layer("layer1_1_relu2").register_forward_hook(
        lambda module, args, out: seen.append(tuple(out.shape)))
    try:
        with pytest.warns(UserWarning, match=r"runs the stock model.*torch forward hooks"):
            np.testing.assert_allclose(_np(model(x, training=False)), ref, atol=1e-6)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model(x, training=False)
        assert not [w for w in caught if "stock model" in str(w.message)]  # once per reason
    finally:
        handle.remove()
    assert len(seen) == 2 and seen[0][0] == 2  # the hook fired: the stock call ran
    assert model.acceleration_counts["reasons"] == {
        "torch forward hooks are registered (the stock call runs them)": 2,
    }
    with pytest.warns(UserWarning, match="a mask was given"):
        model(x, training=False, mask=keras.ops.ones((2,)))


@torch_only
def test_the_loaders_arrays_take_the_accelerated_path(fashion_mnist):
    """uint8 images without a channel axis, as load_fashion_mnist returns them, and x / 255.0
    (float64): cast and given their channel axis as the stock model does, then accelerated."""
    (x, _), _ = fashion_mnist
    pixels = x[:4]
    assert pixels.dtype == np.uint8 and pixels.shape == (4, 28, 28)
    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for images in (pixels, pixels / 255.0, pixels[..., None]):
            np.testing.assert_allclose(
                _np(model(images, training=False)),
                _np(model.stock_model(images, training=False)),
                rtol=1e-5, atol=1e-5,
            )
    assert not [w for w in caught if "stock model" in str(w.message)]
    assert model.acceleration_counts == {"accelerated": 3, "stock": 0, "reasons": {}}
    training.compile_model(model)
    labels = np.eye(10, dtype="float32")[np.arange(4)]
    model.fit(pixels / 255.0, labels, epochs=1, batch_size=4, verbose=0)
    assert model.acceleration_counts["stock"] == 0


def test_other_backends_and_unsupported_versions_get_the_stock_model(monkeypatch, capsys):
    model = keras_fmnist.build_resnet18(stages=1)
    if not on_torch:
        assert accelerate(model, verbose=True) is model
        assert "nothing to do" in capsys.readouterr().out
        with pytest.raises(ValueError, match="runs on the torch backend"):
            AcceleratedModel(model)
        return
    private_api.check_versions.cache_clear()
    monkeypatch.setattr(private_api.keras, "__version__", "3.99.0")
    try:
        with pytest.warns(UserWarning, match="keras 3.99.0 is outside"):
            assert accelerate(model) is model
    finally:
        monkeypatch.undo()
        private_api.check_versions.cache_clear()
    assert private_api.check_versions() is None


@torch_only
def test_no_fast_path_is_built_by_hand_on_unsupported_versions(monkeypatch):
    model = keras_fmnist.build_resnet18(stages=1)
    monkeypatch.setattr(private_api, "check_versions", lambda: "torch 9.0 is outside ...")
    with pytest.raises(RuntimeError, match="torch 9.0 is outside"):
        AcceleratedModel(model)
    optimizer = FusedAdam(1e-2)  # steps aside to Keras' own update, and says why
    variable = keras.Variable(np.ones(3, "float32"))
    optimizer.apply([keras.ops.ones(3)], [variable])
    assert optimizer.counts.as_dict() == {
        "fused": 0, "keras": 1, "reasons": {"torch 9.0 is outside ...": 1}}
    assert np.abs(_np(variable) - 0.99).max() < 1e-6


@torch_only
@pytest.mark.parametrize("amsgrad", [False, True])
def test_verbose_says_which_adam_update_runs(amsgrad):
    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    model.compile(optimizer=keras.optimizers.Adam(amsgrad=amsgrad), loss="mse")
    decision = _decisions(model)["optimizer"]
    if amsgrad:
        assert (decision.what, decision.why) == (
            "left alone", "amsgrad: Keras' own Adam update runs")
    else:
        assert decision.what == "Adam updated by torch's fused kernel"


@torch_only
def test_mixed_precision_is_left_to_the_stock_model(capsys):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras_fmnist.build_resnet18(stages=1)
    finally:
        keras.config.set_dtype_policy("float32")
    assert accelerate(model, verbose=True) is model
    assert "computes in mixed_float16, not float32" in capsys.readouterr().out


@torch_only
def test_verbose_says_what_was_applied_and_what_was_left_alone(capsys):
    accelerate(keras_fmnist.build_resnet18(deform_layers=(1,)), verbose=True)
    out = capsys.readouterr().out
    assert "conv1_pad + conv1: padding (3, 3) folded into the convolution" in out
    assert "layer1_1_deform_conv: direct call" in out
    assert "layer1_0_bn1 + layer1_0_relu1: torch fused batch norm + ReLU, one op" in out
    assert "layer1_0_relu2: ReLU in place (layer1_0_add's output has no other reader)" in out


def test_release_parsing():
    assert private_api._release("2.14.1+cpu") == (2, 14)
    assert private_api._release("3.15.1") == (3, 15)
    assert private_api._release("2.11.0a0+git") == (2, 11)


def test_save_writes_the_stock_model_with_its_optimizer(tmp_path):
    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    training.compile_model(model)
    x = _images(8)
    y = np.eye(10, dtype="float32")[np.arange(8) % 10]
    model.train_on_batch(x, y)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded).__name__ == "Functional"
    assert type(loaded.optimizer).__name__ == "Adam"
    assert int(_np(loaded.optimizer.iterations)) == 1
    np.testing.assert_allclose(
        _np(loaded(x, training=False)), _np(model(x, training=False)), atol=1e-5
    )


# --- Adam, fused -------------------------------------------------------------------------


def _adam_steps(variables, optimizer, steps=6):
    rng = np.random.default_rng(1)
    for t in range(steps):
        scale = 1e-3 if t % 2 else 1.0
        grads = [(scale * rng.standard_normal(v.shape)).astype("float32") for v in variables]
        if on_torch:
            import torch

            # Gradients arrive laid out like their weights, as autograd hands them over.
            grads = [torch.empty_like(v.value).copy_(torch.from_numpy(g))
                     for g, v in zip(grads, variables)]
        optimizer.apply(grads, variables)
    return [_np(v) for v in variables]


@pytest.mark.parametrize("amsgrad", [False, True])
def test_fused_adam_updates_equal_keras_adam(amsgrad):
    """On channels-last kernels (the accelerated model's) and on C-ordered ones."""
    results, start = [], None
    for fused in (False, True):
        keras.utils.set_random_seed(0)
        model = keras_fmnist.build_resnet18(stages=1)
        if fused:
            model = accelerate(model)
        start = start or [_np(v) for v in model.trainable_variables]
        optimizer = keras.optimizers.Adam(1e-2, amsgrad=amsgrad)
        counts = as_fused(optimizer).counts if fused and on_torch else None
        results.append(_adam_steps(model.trainable_variables, optimizer))
        if counts is not None:
            expected = {"fused": 0, "keras": 6, "reasons": {"amsgrad": 6}} if amsgrad else {
                "fused": 6, "keras": 0, "reasons": {}}
            assert counts.as_dict() == expected
    for a, b, s in zip(*results, start):
        assert np.abs(a - s).max() > 1e-3
        np.testing.assert_allclose(b, a, atol=1e-5)


@torch_only
@numerics
def test_fused_adam_is_as_accurate_as_keras_adam():
    """Six updates of the accelerated model's weights from the same gradients (two scales,
    1 and 1e-3, so that v mixes both): Keras' Adam on float64 copies is the truth; the fused
    kernel's error is within 10x of Keras' own float32 update's."""
    import torch

    keras.utils.set_random_seed(0)
    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    start = [_np(v) for v in model.trainable_variables]
    rng = np.random.default_rng(1)
    grads = [[(1e-3 if t % 2 else 1.0) * rng.standard_normal(a.shape) for a in start]
             for t in range(6)]
    results = {}
    for name, dtype in (("float64", "float64"), ("keras", "float32"), ("fused", "float32")):
        if name == "fused":
            variables = model.trainable_variables
            for v, a in zip(variables, start):
                v.assign(a)
        else:
            variables = [keras.Variable(a.astype(dtype)) for a in start]
        optimizer = FusedAdam(1e-2) if name == "fused" else keras.optimizers.Adam(1e-2)
        counts = optimizer.counts if name == "fused" else None
        for step in grads:
            optimizer.apply(
                [torch.empty_like(v.value).copy_(torch.from_numpy(g.astype(dtype)))
                 for g, v in zip(step, variables)],
                variables,
            )
        results[name] = [_np(v) for v in variables]
        if counts is not None:
            assert counts.as_dict() == {"fused": 6, "keras": 0, "reasons": {}}
    truth = results["float64"]
    keras_error = worst_relative_error([r - s for r, s in zip(results["keras"], start)],
                                       [t - s for t, s in zip(truth, start)])
    fused_error = worst_relative_error([r - s for r, s in zip(results["fused"], start)],
                                       [t - s for t, s in zip(truth, start)])
    assert keras_error < 1e-4  # the premise: float32 is well-conditioned here
    assert_within(fused_error, keras_error, 10, "fused Adam: weight change after 6 steps")


@torch_only
def test_fused_adam_relays_moments_out_like_their_weights():
    """A moment restored into another memory layout is re-laid out, not walked in the wrong
    order and not a reason to leave the fused path."""
    import torch

    model = accelerate(keras_fmnist.build_resnet18(stages=1))
    reference = keras_fmnist.build_resnet18(stages=1)
    reference.set_weights(model.get_weights())
    optimizer, ref_optimizer = FusedAdam(1e-2), keras.optimizers.Adam(1e-2)
    counts = optimizer.counts
    optimizer.build(model.trainable_variables)
    kernel = model.get_layer("conv1").kernel
    moment = optimizer._momentums[optimizer._get_variable_index(kernel)]
    moment.value.data = moment.value.data.contiguous()
    assert moment.value.stride() != kernel.value.stride()
    a = _adam_steps(model.trainable_variables, optimizer, steps=3)
    b = _adam_steps(reference.trainable_variables, ref_optimizer, steps=3)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=1e-5)
    assert counts.fused == 3 and counts.keras == 0
    assert moment.value.stride() == kernel.value.stride()
    assert isinstance(moment.value, torch.Tensor)


@pytest.mark.not_tensorflow(
    reason="Keras' TensorFlow optimizers refuse stateless_apply (incompatible with tf.distribute)"
)
def test_fused_adam_stateless_apply_matches_keras_and_leaves_variables_alone():
    rng = np.random.default_rng(4)
    init = [rng.standard_normal(s).astype("float32") for s in [(3, 3, 2, 4), (4,)]]
    grads = [keras.ops.convert_to_tensor(rng.standard_normal(a.shape).astype("float32"))
             for a in init]
    results = []
    for fused in (False, True):
        variables = [keras.Variable(a) for a in init]
        optimizer = keras.optimizers.Adam(learning_rate=1e-2)
        if fused and on_torch:
            as_fused(optimizer)
        optimizer.build(variables)
        new_trainable, _ = optimizer.stateless_apply(
            [keras.ops.copy(v.value) for v in optimizer.variables], grads,
            [keras.ops.copy(v.value) for v in variables])
        for v, a in zip(variables, init):
            np.testing.assert_array_equal(_np(v), a)  # stateless: nothing changed in place
        results.append([_np(x) for x in new_trainable])
    for a, b, start in zip(*results, init):
        assert np.abs(a - start).max() > 1e-3  # it did move
        np.testing.assert_allclose(a, b, atol=1e-6)


@torch_only
def test_batch_norm_statistics_go_through_a_stateless_scope():
    inputs = keras.Input((3, 5, 5))
    model = accelerate(keras.Model(inputs, keras.layers.BatchNormalization(axis=1, momentum=0.9)(inputs)))
    layer = model.layers[-1]
    x = np.random.default_rng(3).normal(2.0, 3.0, (4, 3, 5, 5)).astype("float32")
    before = [_np(v).copy() for v in layer.non_trainable_variables]
    with keras.StatelessScope() as scope:
        model(keras.ops.convert_to_tensor(x), training=True)
    for b, v in zip(before, layer.non_trainable_variables):
        np.testing.assert_array_equal(_np(v), b)  # the variables themselves are untouched
    new_mean = _np(scope.get_current_value(layer.moving_mean))
    np.testing.assert_allclose(new_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    model(keras.ops.convert_to_tensor(x), training=True)  # outside a scope: updated
    np.testing.assert_allclose(_np(layer.moving_mean), new_mean, rtol=1e-5)
    assert model.acceleration_counts["accelerated"] == 2


def test_accelerate_rejects_what_it_cannot_plan():
    with pytest.raises(TypeError, match="functional keras.Model"):
        accelerate(keras.layers.Dense(3))


def test_no_warnings_from_accelerating_the_study_models():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accelerate(keras_fmnist.build_resnet18(deform_layers=(1, 3)))
