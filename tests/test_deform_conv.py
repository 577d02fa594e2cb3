"""Tests of keras_fmnist.ops.deform_conv2d and keras_fmnist.layers.DeformConv2D.

References: torchvision's kernel (torch backend only), a plain-loop numpy implementation
(every backend) and keras.layers.Conv2D for the undeformed special cases.
"""

import math

import numpy as np
import pytest

import keras_fmnist  # noqa: F401  (default backend)
import keras
from keras import ops
from keras.src import testing

from keras_fmnist.backend.layout import channels_first_unsupported
from keras_fmnist.bench import deform_conv as bench
from keras_fmnist.layers import DeformConv2D
from keras_fmnist.ops import deform_conv2d
from keras_fmnist.ops.deform_conv import conv_output_size
from keras_fmnist.ops.deform_conv import select_implementation
from helpers import assert_within
from helpers import numerics
from helpers import relative_error
from helpers import BACKEND
from helpers import to_numpy
from helpers import torch_only






def _case(seed, n=2, h=7, w=6, c=4, filters=3, groups=1, offset_groups=1, strides=1,
          padding=1, dilation=1, kernel_size=3, offset_scale=2.5, dtype="float32"):
    """Random inputs for one deform_conv2d call, with offsets large enough that a good
    share of the samples falls partly or wholly outside the image."""
    rng = np.random.default_rng(seed)
    out_h, out_w = conv_output_size((h, w), kernel_size, strides, padding, dilation)
    taps = kernel_size * kernel_size
    return dict(
        inputs=rng.standard_normal((n, h, w, c)).astype(dtype),
        offset=(offset_scale * rng.standard_normal(
            (n, out_h, out_w, 2 * offset_groups * taps))).astype(dtype),
        kernel=rng.standard_normal((kernel_size, kernel_size, c // groups, filters)).astype(dtype),
        mask=rng.uniform(size=(n, out_h, out_w, offset_groups * taps)).astype(dtype),
        bias=rng.standard_normal((filters,)).astype(dtype),
    )


def _sample(image, y, x):
    """Bilinear sample of `image` (H, W, C) zero-extended, torchvision's rule."""
    height, width, channels = image.shape
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return np.zeros(channels)
    y0, x0 = math.floor(y), math.floor(x)
    value = np.zeros(channels)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * image[yy, xx]
    return value


def reference_deform_conv2d(inputs, offset, kernel, mask, bias, strides, padding, dilation):
    """DCNv2 with plain loops in float64 (symmetric int padding, no kernel groups)."""
    x = inputs.astype("float64")
    n, height, width, channels = x.shape
    kh, kw, _, filters = kernel.shape
    _, out_h, out_w, offset_channels = offset.shape
    groups = offset_channels // (2 * kh * kw)
    per_group = channels // groups
    out = np.zeros((n, out_h, out_w, filters))
    for b in range(n):
        for oy in range(out_h):
            for ox in range(out_w):
                column = np.zeros((kh, kw, channels))
                for i in range(kh):
                    for j in range(kw):
                        tap = i * kw + j
                        for g in range(groups):
                            dy = offset[b, oy, ox, g * 2 * kh * kw + 2 * tap]
                            dx = offset[b, oy, ox, g * 2 * kh * kw + 2 * tap + 1]
                            y = oy * strides - padding + i * dilation + dy
                            xx = ox * strides - padding + j * dilation + dx
                            chans = slice(g * per_group, (g + 1) * per_group)
                            value = _sample(x[b, :, :, chans], y, xx)
                            if mask is not None:
                                value = value * mask[b, oy, ox, g * kh * kw + tap]
                            column[i, j, chans] = value
                out[b, oy, ox] = np.tensordot(column, kernel, axes=3)
    if bias is not None:
        out = out + bias
    return out


def _outside_fraction(case, strides, padding, dilation):
    """Share of samples with at least one bilinear neighbour outside the image."""
    _, h, w, _ = case["inputs"].shape
    kh, kw = case["kernel"].shape[:2]
    off = case["offset"]
    n, out_h, out_w, _ = off.shape
    off = off.reshape(n, out_h, out_w, -1, kh * kw, 2)
    ty = (np.arange(kh)[:, None] * dilation + np.zeros((1, kw))).reshape(-1)
    tx = (np.zeros((kh, 1)) + np.arange(kw)[None, :] * dilation).reshape(-1)
    y = (np.arange(out_h) * strides - padding)[None, :, None, None, None] + ty + off[..., 0]
    x = (np.arange(out_w) * strides - padding)[None, None, :, None, None] + tx + off[..., 1]
    return float(np.mean((y < 0) | (y > h - 1) | (x < 0) | (x > w - 1)))


# --------------------------------------------------------------------------- op


class DeformConv2dOpTest(testing.TestCase):
    def test_matches_numpy_reference(self):
        for impl in ("keras", "auto") + (("torchvision",) if BACKEND == "torch" else ()):
            for strides, dilation, groups in ((2, 1, 2), (1, 2, 1)):
                case = _case(1, n=2, h=6, w=5, c=4, offset_groups=groups, strides=strides,
                             dilation=dilation, padding=1)
                expected = reference_deform_conv2d(
                    case["inputs"], case["offset"], case["kernel"], case["mask"],
                    case["bias"], strides, 1, dilation,
                )
                got = deform_conv2d(**case, strides=strides, padding=1,
                                    dilation_rate=dilation, implementation=impl)
                self.assertAllClose(to_numpy(got), expected, atol=1e-4, rtol=1e-4)

    def test_dcn_v1_without_mask_matches_reference(self):
        case = _case(2, offset_groups=2)
        del case["mask"]
        expected = reference_deform_conv2d(
            case["inputs"], case["offset"], case["kernel"], None, case["bias"], 1, 1, 1
        )
        got = deform_conv2d(**case, padding=1, implementation="keras")
        self.assertAllClose(to_numpy(got), expected, atol=1e-4, rtol=1e-4)

    def test_sample_points_outside_image_read_zero(self):
        # Every tap shifted far outside: the output is the bias alone.
        case = _case(3)
        case["offset"] = np.full_like(case["offset"], 50.0)
        got = deform_conv2d(**case, padding=1, implementation="keras")
        expected = np.broadcast_to(case["bias"], got.shape)
        self.assertAllClose(to_numpy(got), expected, atol=1e-6)

    def test_integer_offsets_shift_the_convolution(self):
        # Offsets of exactly (+1, 0) move every tap one row down: the plain convolution
        # of the input padded with 0 rows on top and 2 below (instead of 1 and 1).
        # Bilinear sampling at integer points is exact.
        case = _case(4, n=1, h=6, w=6, c=2, filters=2)
        case["offset"] = np.zeros_like(case["offset"])
        case["offset"][..., 0::2] = 1.0
        padded = np.pad(case["inputs"], ((0, 0), (0, 2), (1, 1), (0, 0)))
        got = deform_conv2d(case["inputs"], case["offset"], case["kernel"],
                            padding=1, implementation="keras")
        expected = ops.conv(padded, case["kernel"], padding="valid")
        self.assertAllClose(to_numpy(got), to_numpy(expected), atol=1e-5)

    def test_zero_offsets_unit_mask_equal_conv2d(self):
        settings = [
            dict(strides=1, padding="same", dilation=1, groups=1),
            dict(strides=2, padding="same", dilation=1, groups=2),  # asymmetric "same"
            dict(strides=1, padding="valid", dilation=2, groups=1),
            dict(strides=1, padding="same", dilation=2, groups=4),
        ]
        for s in settings:
            case = _case(5, h=8, w=7, c=4, filters=4, groups=s["groups"], offset_groups=2,
                         strides=s["strides"], padding=s["padding"], dilation=s["dilation"])
            conv = keras.layers.Conv2D(
                4, 3, strides=s["strides"], padding=s["padding"],
                dilation_rate=s["dilation"], groups=s["groups"],
            )
            conv.build(case["inputs"].shape)
            conv.set_weights([case["kernel"], case["bias"]])
            got = deform_conv2d(
                case["inputs"], np.zeros_like(case["offset"]), case["kernel"],
                mask=np.ones_like(case["mask"]), bias=case["bias"], strides=s["strides"],
                padding=s["padding"], dilation_rate=s["dilation"], implementation="keras",
            )
            self.assertAllClose(to_numpy(got), to_numpy(conv(case["inputs"])), atol=1e-4, rtol=1e-4)

    def test_int_padding_equals_zero_padding_then_valid(self):
        case = _case(6, h=5, w=5, padding=2)
        padded = np.pad(case["inputs"], ((0, 0), (2, 2), (2, 2), (0, 0)))
        a = deform_conv2d(**case, padding=2, implementation="keras")
        b = deform_conv2d(padded, case["offset"], case["kernel"], case["mask"],
                          case["bias"], padding="valid", implementation="keras")
        self.assertAllClose(to_numpy(a), to_numpy(b), atol=1e-5)

    def test_symbolic_inputs(self):
        x = keras.Input((9, 9, 4))
        offset = keras.Input((5, 5, 36))
        mask = keras.Input((5, 5, 18))
        y = deform_conv2d(x, offset, np.zeros((3, 3, 4, 6), "float32"), mask,
                          strides=2, padding=1)
        self.assertEqual(tuple(y.shape), (None, 5, 5, 6))

    def test_invalid_arguments(self):
        case = _case(7)
        bad = {
            "kernel": dict(kernel=np.zeros((3, 3, 3, 3), "float32")),  # 3 does not divide 4
            "offset": dict(offset=case["offset"][..., :-1]),
            "mask": dict(mask=case["mask"][..., :-1]),
            "bias": dict(bias=np.zeros((5,), "float32")),
        }
        for name, override in bad.items():
            with self.assertRaisesRegex(ValueError, f"`{name}`"):
                deform_conv2d(**{**case, **override}, padding=1, implementation="keras")
        with self.assertRaisesRegex(ValueError, "`offset`"):  # wrong output grid
            deform_conv2d(**case, padding=0, implementation="keras")
        with self.assertRaisesRegex(ValueError, "`offset`"):  # 3 groups, 4 channels
            deform_conv2d(case["inputs"], np.zeros((2, 7, 6, 54), "float32"),
                          case["kernel"], padding=1)
        with self.assertRaisesRegex(ValueError, "`implementation`"):
            deform_conv2d(**case, padding=1, implementation="cuda")
        with self.assertRaisesRegex(ValueError, "`padding`"):
            deform_conv2d(**case, padding="full")
        with self.assertRaisesRegex(ValueError, "`strides`"):
            deform_conv2d(**case, padding=1, strides=0)
        with self.assertRaisesRegex(ValueError, "`dilation_rate`"):
            deform_conv2d(**case, padding=1, dilation_rate=1.5)
        with self.assertRaisesRegex(ValueError, "`inputs`"):  # smaller than the kernel
            deform_conv2d(case["inputs"][:, :2, :2], case["offset"][:, :0, :0],
                          case["kernel"], padding="valid")
        if BACKEND != "torch":
            with self.assertRaisesRegex(ValueError, "`implementation`"):
                deform_conv2d(**case, padding=1, implementation="torchvision")

    def test_auto_rule(self):
        self.assertEqual(select_implementation("jax", "gpu"), "keras")
        self.assertEqual(select_implementation("tensorflow", "cpu"), "keras")
        self.assertEqual(select_implementation("torch", "cpu"), "keras")
        self.assertIn(select_implementation(), bench.available_implementations())

    def test_benchmark_runs_and_reports_auto(self):
        report = bench.measure(batch=2, channels=4, size=5, repeats=1, warmup=1)
        self.assertEqual(set(report["results"]), set(bench.available_implementations()))
        self.assertIn(report["auto"], report["results"])
        self.assertEqual(report["ratio"][report["fastest"]], 1.0)
        for r in report["results"].values():
            self.assertGreater(r["median_s"], 0.0)


PARITY_CASES = [
    dict(strides=s, dilation=d, offset_groups=g)
    for s in (1, 2) for d in (1, 2) for g in (1, 2)
] + [
    dict(strides=1, dilation=1, offset_groups=2, groups=2),  # grouped kernel
    dict(strides=2, dilation=1, offset_groups=1, padding="same", h=8, w=8),  # asymmetric
    dict(strides=1, dilation=1, offset_groups=1, with_mask=False),  # DCNv1
]


@torch_only
@pytest.mark.parametrize("setting", PARITY_CASES, ids=lambda s: "-".join(
    f"{k}{v}" for k, v in s.items()))
def test_keras_matches_torchvision_forward_and_gradients(setting):
    import torch

    setting = dict(setting)
    with_mask = setting.pop("with_mask", True)
    padding = setting.pop("padding", 1)
    case = _case(10, filters=6, padding=padding, **setting)
    pad_top = padding if isinstance(padding, int) else 0  # "same" here pads 0 on top
    assert _outside_fraction(case, setting["strides"], pad_top, setting["dilation"]) > 0.2
    if not with_mask:
        del case["mask"]
    # On Keras' device (a GPU where there is one): both implementations run there.
    leaves = {k: keras.ops.convert_to_tensor(v).requires_grad_(True) for k, v in case.items()}
    outputs, grads = {}, {}
    for impl in ("keras", "torchvision"):
        out = deform_conv2d(**leaves, strides=setting["strides"], padding=padding,
                            dilation_rate=setting["dilation"], implementation=impl)
        upstream = keras.ops.convert_to_tensor(
            np.random.default_rng(11).standard_normal(tuple(out.shape)).astype("float32")
        )
        g = torch.autograd.grad((out * upstream).sum(), list(leaves.values()))
        outputs[impl] = out.detach().cpu().numpy()
        grads[impl] = {k: v.cpu().numpy() for k, v in zip(leaves, g)}
    # Shown with `pytest -s`: the parity numbers reported for this op.
    diffs = {"forward": np.abs(outputs["keras"] - outputs["torchvision"]).max()}
    diffs.update({f"d/d{k}": np.abs(grads["keras"][k] - grads["torchvision"][k]).max()
                  for k in leaves})
    print(f"\nparity {setting} mask={with_mask} padding={padding}: "
          + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    np.testing.assert_allclose(outputs["keras"], outputs["torchvision"], atol=1e-4, rtol=0)
    for name in leaves:
        scale = max(1.0, float(np.abs(grads["torchvision"][name]).max()))
        np.testing.assert_allclose(grads["keras"][name], grads["torchvision"][name],
                                   atol=1e-4 * scale, rtol=0, err_msg=name)


def _forward_and_gradients(case, implementation, strides, padding, dilation, dtype):
    """The op's output and the gradients of (output * upstream).sum() w.r.t. every input."""
    import torch

    leaves = {k: keras.ops.convert_to_tensor(v.astype(dtype)).requires_grad_(True)
              for k, v in case.items()}
    out = deform_conv2d(**leaves, strides=strides, padding=padding, dilation_rate=dilation,
                        implementation=implementation)
    upstream = np.random.default_rng(11).standard_normal(tuple(out.shape)).astype(dtype)
    grads = torch.autograd.grad((out * keras.ops.convert_to_tensor(upstream)).sum(),
                                list(leaves.values()))
    return [out.detach().cpu().numpy()] + [g.cpu().numpy() for g in grads]


@torch_only
@numerics
@pytest.mark.parametrize("setting", PARITY_CASES, ids=lambda s: "-".join(
    f"{k}{v}" for k, v in s.items()))
def test_torchvision_path_is_as_accurate_as_the_keras_path(setting):
    """Against the op in float64 (the keras implementation; torchvision's own float64 kernel
    agrees with it to ~1e-15): torchvision's float32 output and every gradient within 10x
    of the keras implementation's float32 error."""
    setting = dict(setting)
    with_mask = setting.pop("with_mask", True)
    padding = setting.pop("padding", 1)
    case = _case(10, filters=6, padding=padding, dtype="float64", **setting)
    if not with_mask:
        del case["mask"]
    args = (setting["strides"], padding, setting["dilation"])
    truth = _forward_and_gradients(case, "keras", *args, "float64")
    errors = {
        impl: [relative_error(v, t) for v, t in
               zip(_forward_and_gradients(case, impl, *args, "float32"), truth)]
        for impl in ("keras", "torchvision")
    }
    for name, stock, fast in zip(["forward", *case], errors["keras"], errors["torchvision"]):
        assert stock < 1e-4, f"{name}: keras float32 error {stock:.1e}"
        assert_within(fast, stock, 10, f"{setting} {name}")


# ------------------------------------------------------------------------ layer


class DeformConv2DLayerTest(testing.TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            DeformConv2D,
            init_kwargs=dict(filters=4, kernel_size=3, strides=2, deformable_groups=2,
                             use_bias=True),
            input_shape=(2, 7, 7, 4),
            expected_output_shape=(2, 4, 4, 4),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=0,
            expected_num_losses=0,
            supports_masking=False,
        )
        self.run_layer_test(
            DeformConv2D,
            init_kwargs=dict(filters=3, kernel_size=(3, 3), padding="valid", dilation_rate=2,
                             modulated=False, implementation="keras",
                             kernel_regularizer="l2"),
            input_shape=(2, 8, 7, 2),
            expected_output_shape=(2, 4, 3, 3),
            expected_num_trainable_weights=3,
            expected_num_non_trainable_weights=0,
            expected_num_losses=1,
            supports_masking=False,
        )

    def test_fresh_layer_is_half_a_plain_convolution(self):
        x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
        # An int padding of 1 is "same" for a 3x3 kernel at stride 1.
        for strides, dilation, padding in ((1, 1, 1), (2, 1, "same"), (1, 2, "same")):
            layer = DeformConv2D(6, 3, strides=strides, dilation_rate=dilation,
                                 padding=padding)
            conv = keras.layers.Conv2D(6, 3, strides=strides, dilation_rate=dilation,
                                       padding="same", use_bias=False)
            conv.build(x.shape)
            layer.build(x.shape)
            conv.kernel.assign(layer.kernel)
            self.assertAllClose(to_numpy(layer(x)), 0.5 * to_numpy(conv(x)), atol=1e-5)
            # Unmodulated (DCNv1): exactly the convolution.
            layer = DeformConv2D(6, 3, strides=strides, dilation_rate=dilation,
                                 padding=padding, modulated=False)
            layer.build(x.shape)
            layer.kernel.assign(conv.kernel)
            self.assertAllClose(to_numpy(layer(x)), to_numpy(conv(x)), atol=1e-5)

    def test_offset_branch_learns(self):
        # The zero-initialised offset branch must receive gradient through the sampling.
        rng = np.random.default_rng(1)
        x = rng.standard_normal((8, 6, 6, 2)).astype("float32")
        y = rng.standard_normal((8, 6, 6, 3)).astype("float32")
        layer = DeformConv2D(3, 3, implementation="keras")
        model = keras.Sequential([keras.Input((6, 6, 2)), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        self.assertGreater(float(np.abs(to_numpy(layer.offset_kernel)).max()), 0.0)
        self.assertGreater(float(np.abs(to_numpy(layer.offset_bias)).max()), 0.0)

    def test_config_round_trip(self):
        layer = DeformConv2D(8, (3, 3), strides=2, padding="valid", deformable_groups=2,
                             modulated=False, use_bias=True, implementation="keras",
                             kernel_regularizer="l2", name="dcn")
        clone = DeformConv2D.from_config(layer.get_config())
        self.assertEqual(clone.get_config(), layer.get_config())
        revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        self.assertIsInstance(revived, DeformConv2D)
        self.assertEqual(revived.get_config(), layer.get_config())

    def test_save_and_load_functional_model(self):
        inputs = keras.Input((7, 7, 4))
        h = DeformConv2D(4, 3, deformable_groups=2, use_bias=True, name="dcn")(inputs)
        outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(h))
        model = keras.Model(inputs, outputs)
        rng = np.random.default_rng(2)
        dcn = model.get_layer("dcn")
        # Non-zero offsets, so the deformation itself is part of what must survive.
        dcn.offset_kernel.assign(0.3 * rng.standard_normal(dcn.offset_kernel.shape))
        x = rng.standard_normal((3, 7, 7, 4)).astype("float32")
        path = self.get_temp_dir() + "/dcn.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded.get_layer("dcn"), DeformConv2D)
        self.assertAllClose(to_numpy(loaded(x)), to_numpy(model(x)), atol=1e-6)

    def test_compute_output_shape(self):
        layer = DeformConv2D(5, 3, strides=2)
        self.assertEqual(layer.compute_output_shape((None, 7, 7, 3)), (None, 4, 4, 5))
        layer = DeformConv2D(5, 3, padding="valid", dilation_rate=2)
        self.assertEqual(layer.compute_output_shape((2, 9, 8, 3)), (2, 5, 4, 5))
        layer = DeformConv2D(2, 3, padding=2)
        self.assertEqual(layer.compute_output_shape((1, 5, 5, 3)), (1, 7, 7, 2))
        x = np.zeros((1, 5, 5, 3), "float32")
        self.assertEqual(tuple(layer(x).shape), (1, 7, 7, 2))

    def test_invalid_arguments(self):
        for kwargs, name in [
            (dict(filters=0), "filters"),
            (dict(filters=4, kernel_size=(3,)), "kernel_size"),
            (dict(filters=4, strides=0), "strides"),
            (dict(filters=4, dilation_rate=(1, 0)), "dilation_rate"),
            (dict(filters=4, padding="causal"), "padding"),
            (dict(filters=4, padding=-1), "padding"),
            (dict(filters=4, deformable_groups=0), "deformable_groups"),
            (dict(filters=4, implementation="cuda"), "implementation"),
        ]:
            with self.assertRaisesRegex(ValueError, f"`{name}`"):
                DeformConv2D(**kwargs)
        with self.assertRaisesRegex(ValueError, "`deformable_groups`"):
            DeformConv2D(4, deformable_groups=3).build((None, 7, 7, 4))
        if BACKEND != "torch":
            with self.assertRaisesRegex(ValueError, "`implementation`"):
                DeformConv2D(4, implementation="torchvision")

    @torch_only
    def test_layer_implementations_agree(self):
        x = np.random.default_rng(3).standard_normal((2, 7, 7, 4)).astype("float32")
        layers = [DeformConv2D(4, 3, strides=2, deformable_groups=2, implementation=impl)
                  for impl in ("keras", "torchvision", "auto")]
        for layer in layers:
            layer.build(x.shape)
        weights = [w + 0.2 * np.random.default_rng(4).standard_normal(w.shape)
                   for w in layers[0].get_weights()]
        outputs = []
        for layer in layers:
            layer.set_weights(weights)
            outputs.append(to_numpy(layer(x)))
        self.assertAllClose(outputs[0], outputs[1], atol=1e-4)
        self.assertAllClose(outputs[0], outputs[2], atol=1e-4)


@pytest.mark.parametrize("implementation", [
    "keras",
    pytest.param("torchvision", marks=torch_only),
])
@pytest.mark.parametrize("strides, padding", [(1, "same"), (2, "same"), (1, 1), (2, "valid")])
def test_channels_first_layer_equals_channels_last(implementation, strides, padding):
    """Where the backend runs channels-first convolutions; elsewhere building one is refused
    with the reason (TensorFlow on a CPU without oneDNN)."""
    x = np.random.default_rng(5).standard_normal((2, 7, 6, 4)).astype("float32")
    last = DeformConv2D(5, 3, strides=strides, padding=padding, use_bias=True,
                        implementation=implementation, data_format="channels_last")
    first = DeformConv2D(5, 3, strides=strides, padding=padding, use_bias=True,
                         implementation=implementation, data_format="channels_first")
    last.build(x.shape)
    if channels_first_unsupported():
        with pytest.raises(ValueError, match="channels_first' cannot run here: TensorFlow"):
            first.build((2, 4, 7, 6))
        return
    first.build((2, 4, 7, 6))
    rng = np.random.default_rng(6)
    weights = [w + 0.3 * rng.standard_normal(w.shape) for w in last.get_weights()]
    last.set_weights(weights)
    first.set_weights(weights)  # the same (kh, kw, in, out) kernels in both layouts
    expected = np.transpose(to_numpy(last(x)), (0, 3, 1, 2))
    got = to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert first.compute_output_shape((2, 4, 7, 6)) == got.shape
    config = first.get_config()
    assert config["data_format"] == "channels_first"
    assert DeformConv2D.from_config(config).data_format == "channels_first"


def test_data_format_is_validated():
    with pytest.raises(ValueError, match="`data_format`"):
        DeformConv2D(4, data_format="NCHW")
