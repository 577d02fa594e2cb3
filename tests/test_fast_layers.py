"""The torch fast paths compute what the plain Keras layers compute, on every backend:
torch-style symmetric padding, channels-last kernels, in-place ReLU, fused Adam on them."""

import numpy as np
import pytest

import keras
from keras.src import testing

import keras_fmnist  # noqa: F401
from keras_fmnist.layers import FastBatchNormalization
from keras_fmnist.layers import FastConv2D
from keras_fmnist.layers import FastMaxPooling2D
from keras_fmnist.layers import InplaceAdd
from keras_fmnist.layers import InplaceReLU
from keras_fmnist.optimizers import FusedAdam

on_torch = keras.backend.backend() == "torch"


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _nchw(x, data_format):
    return x if data_format == "channels_first" else np.transpose(x, (0, 3, 1, 2))


class FastLayersContractTest(testing.TestCase):
    def test_fast_conv2d_layer_basics(self):
        self.run_layer_test(
            FastConv2D,
            init_kwargs={"filters": 4, "kernel_size": 3, "strides": 2, "symmetric_padding": 1},
            input_shape=(2, 8, 8, 3),
            expected_output_shape=(2, 4, 4, 4),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
            supports_masking=False,
        )

    def test_fast_max_pooling2d_layer_basics(self):
        self.run_layer_test(
            FastMaxPooling2D,
            init_kwargs={"pool_size": 3, "strides": 2, "symmetric_padding": 1,
                         "data_format": "channels_first"},
            input_shape=(2, 3, 14, 14),
            expected_output_shape=(2, 3, 7, 7),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
            supports_masking=False,
        )

    def test_inplace_relu_layer_basics(self):
        self.run_layer_test(
            InplaceReLU,
            init_kwargs={},
            input_shape=(2, 5, 3),
            expected_output_shape=(2, 5, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_losses=0,
            supports_masking=True,
        )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("kernel_size, strides, pad", [(7, 2, 3), (3, 2, 1), (3, 1, (1, 2))])
def test_symmetric_padding_is_zero_padding_then_valid(data_format, kernel_size, strides, pad):
    shape = (2, 10, 9, 3) if data_format == "channels_last" else (2, 3, 10, 9)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    fast = FastConv2D(5, kernel_size, strides=strides, symmetric_padding=pad,
                      data_format=data_format)
    ref = keras.Sequential([
        keras.Input(shape[1:]),
        keras.layers.ZeroPadding2D(pad, data_format=data_format),
        keras.layers.Conv2D(5, kernel_size, strides=strides, data_format=data_format),
    ])
    fast.build(shape)
    fast.set_weights(ref.layers[-1].get_weights())
    out = _np(fast(x))
    np.testing.assert_allclose(out, _np(ref(x)), atol=1e-5)
    assert out.shape == fast.compute_output_shape(shape)


def test_kernels_are_channels_last_in_memory_with_keras_values():
    keras.utils.set_random_seed(3)
    fast = FastConv2D(6, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    plain = keras.layers.Conv2D(6, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=1))
    fast.build((1, 5, 5, 4))
    plain.build((1, 5, 5, 4))
    np.testing.assert_array_equal(_np(fast.kernel), _np(plain.kernel))
    if on_torch:
        import torch

        weight = fast.kernel.value.permute(3, 2, 0, 1)  # (out, in, kh, kw)
        assert weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("bad", [-1, (1,), (1, 2, 3), 1.5, True, "same"])
def test_symmetric_padding_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="symmetric_padding"):
        FastConv2D(2, 3, symmetric_padding=bad)


def test_symmetric_padding_needs_valid_padding_and_fits_the_pool():
    with pytest.raises(ValueError, match="requires padding='valid'"):
        FastConv2D(2, 3, padding="same", symmetric_padding=1)
    with pytest.raises(ValueError, match="at most half the pool size"):
        FastMaxPooling2D(3, symmetric_padding=2)


def test_config_round_trip_keeps_symmetric_padding():
    for layer in (FastConv2D(2, 3, symmetric_padding=(1, 0)),
                  FastMaxPooling2D(3, strides=2, symmetric_padding=1)):
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.symmetric_padding == layer.symmetric_padding


def _max_pool_reference(x_nchw, k, s, p):
    """Max over windows of the -inf-padded map, as torch.nn.MaxPool2d(k, s, p) defines it."""
    n, c, h, w = x_nchw.shape
    padded = np.full((n, c, h + 2 * p, w + 2 * p), -np.inf, np.float32)
    padded[:, :, p:p + h, p:p + w] = x_nchw
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = np.empty((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = padded[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_max_pooling_pads_with_minus_infinity_like_torch(data_format):
    shape = (2, 14, 13, 3) if data_format == "channels_last" else (2, 3, 14, 13)
    x = np.random.default_rng(1).standard_normal(shape).astype("float32") - 2.0  # negatives
    pool = FastMaxPooling2D(3, strides=2, symmetric_padding=1, data_format=data_format)
    out = _np(pool(x))
    np.testing.assert_allclose(_nchw(out, data_format),
                               _max_pool_reference(_nchw(x, data_format), 3, 2, 1))
    assert out.shape == pool.compute_output_shape(shape)


def test_inplace_relu_values_and_fallbacks():
    x = np.array([[-2.0, -0.5, 0.5, 8.0]], "float32")
    np.testing.assert_array_equal(_np(InplaceReLU()(keras.ops.convert_to_tensor(x))),
                                  np.maximum(x, 0))
    capped = InplaceReLU(max_value=6.0)
    source = keras.ops.convert_to_tensor(x)
    np.testing.assert_array_equal(_np(capped(source)), np.clip(x, 0, 6))
    np.testing.assert_array_equal(_np(source), x)  # not the plain ReLU: input untouched


def test_inplace_add_values_and_broadcasting_fallback():
    a = np.arange(6, dtype="float32").reshape(2, 3)
    b = np.full((2, 3), 10.0, "float32")
    out = InplaceAdd()([keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)])
    np.testing.assert_array_equal(_np(out), a + b)
    row = keras.ops.convert_to_tensor(np.ones((1, 3), "float32"))
    first = keras.ops.convert_to_tensor(np.zeros((1, 3), "float32"))
    np.testing.assert_array_equal(_np(InplaceAdd()([first, row])), np.ones((1, 3)))


@pytest.mark.torch_only
def test_inplace_add_accumulates_into_the_first_input_on_torch():
    import torch

    x = torch.tensor([[1.0, -2.0]], requires_grad=True)
    branch, shortcut = x * 2.0, x * 3.0
    out = InplaceAdd()([branch, shortcut])
    assert out.data_ptr() == branch.data_ptr()
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[5.0, 5.0]])


def test_batch_norm_statistics_go_through_a_stateless_scope():
    layer = FastBatchNormalization(axis=1, momentum=0.9, epsilon=1e-5)
    layer.build((4, 3, 5, 5))
    x = np.random.default_rng(3).normal(2.0, 3.0, (4, 3, 5, 5)).astype("float32")
    before = [_np(v).copy() for v in layer.non_trainable_variables]
    with keras.StatelessScope() as scope:
        layer(keras.ops.convert_to_tensor(x), training=True)
    after = [_np(v) for v in layer.non_trainable_variables]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)  # the variables themselves are untouched
    new_mean = _np(scope.get_current_value(layer.moving_mean))
    np.testing.assert_allclose(new_mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    layer(keras.ops.convert_to_tensor(x), training=True)  # outside a scope: updated
    np.testing.assert_allclose(_np(layer.moving_mean), new_mean, rtol=1e-5)


@pytest.mark.torch_only
def test_inplace_relu_overwrites_its_input_on_torch_and_keeps_gradients():
    import torch

    x = torch.tensor([[-1.0, 2.0, -3.0, 4.0]], requires_grad=True)
    y = x * 1.0  # not a leaf: autograd allows the in-place op
    out = InplaceReLU()(y)
    assert out.data_ptr() == y.data_ptr()
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 1.0, 0.0, 1.0]])


def _adam_on(variables, cls, steps=6):
    optimizer = cls(learning_rate=1e-2)
    rng = np.random.default_rng(1)
    for t in range(steps):
        scale = 1e-3 if t % 2 else 1.0
        grads = [keras.ops.convert_to_tensor(
            (scale * rng.standard_normal(v.shape)).astype("float32")) for v in variables]
        if on_torch:
            import torch

            # Gradients arrive laid out like their weights, as autograd hands them over.
            grads = [torch.empty_like(v.value).copy_(g) for g, v in zip(grads, variables)]
            with torch.no_grad():
                optimizer.apply(grads, variables)
        else:
            optimizer.apply(grads, variables)
    return [_np(v) for v in variables]


def test_fused_adam_on_channels_last_kernels_matches_keras_adam():
    layers = {}
    for name in ("keras", "fused"):
        conv = FastConv2D(4, 3, use_bias=True)
        conv.build((1, 6, 6, 5))
        layers[name] = conv
    layers["fused"].set_weights(layers["keras"].get_weights())
    start = layers["keras"].get_weights()
    ref = _adam_on(layers["keras"].trainable_variables, keras.optimizers.Adam)
    out = _adam_on(layers["fused"].trainable_variables, FusedAdam)
    for a, b, s in zip(out, ref, start):
        assert np.abs(a - s).max() > 1e-2
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.torch_only
def test_fused_adam_takes_keras_path_when_layouts_disagree():
    """A moment laid out unlike its weight (state restored into a contiguous tensor, say)
    must not be walked in memory order against the weight: the update falls back to Keras'
    elementwise path and stays exact."""
    import torch

    conv, ref_conv = FastConv2D(4, 3), FastConv2D(4, 3)
    for layer in (conv, ref_conv):
        layer.build((1, 6, 6, 5))
    ref_conv.set_weights(conv.get_weights())
    optimizer, ref_optimizer = FusedAdam(learning_rate=1e-2), keras.optimizers.Adam(1e-2)
    rng = np.random.default_rng(2)
    for step in range(4):
        grads = [rng.standard_normal(v.shape).astype("float32")
                 for v in conv.trainable_variables]
        for opt, layer in ((optimizer, conv), (ref_optimizer, ref_conv)):
            with torch.no_grad():
                opt.apply([torch.empty_like(v.value).copy_(torch.from_numpy(g))
                           for g, v in zip(grads, layer.trainable_variables)],
                          layer.trainable_variables)
        if step == 0:  # same values, C-ordered memory
            moment = optimizer._momentums[optimizer._get_variable_index(conv.kernel)]
            moment._value = torch.nn.Parameter(
                torch.zeros(moment.shape, device=moment.value.device).copy_(moment.value),
                requires_grad=False)
            assert moment.value.stride() != conv.kernel.value.stride()
    for a, b in zip(conv.get_weights(), ref_conv.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_fused_adam_stateless_apply_matches_keras_and_leaves_variables_alone():
    rng = np.random.default_rng(4)
    init = [rng.standard_normal(s).astype("float32") for s in [(3, 3, 2, 4), (4,)]]
    grads = [keras.ops.convert_to_tensor(rng.standard_normal(a.shape).astype("float32"))
             for a in init]
    results = []
    for cls in (keras.optimizers.Adam, FusedAdam):
        variables = [keras.Variable(a) for a in init]
        optimizer = cls(learning_rate=1e-2)
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
