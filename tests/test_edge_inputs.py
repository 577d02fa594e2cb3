"""Edge inputs on every backend: integer and float images of any width, and empty batches.

The study's layers take what Keras' own layers take: a uint8 or int32 image is computed in
the layer's compute dtype (never in integers, never all zeros), float16/float64 too, and a
batch of 0 gives an empty result of the right shape.
"""

import numpy as np
import pytest

import keras

from keras_fmnist.augment import BasicAugment
from keras_fmnist.augment import CutMix
from keras_fmnist.augment import MixUp
from keras_fmnist.layers import DeformConv2D
from keras_fmnist.layers import DropBlock2D
from keras_fmnist.layers import StochasticDepth
from keras_fmnist.ops.deform_conv import deform_conv2d
from helpers import to_numpy

DTYPES = ["uint8", "int32", "float16", "float32", "float64"]


def _images(dtype, n=4, size=8, channels=4):
    pixels = np.random.default_rng(0).integers(0, 256, size=(n, size, size, channels))
    return pixels.astype(dtype)


def _dtype(x):
    return keras.backend.standardize_dtype(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deform_conv2d_computes_integer_and_float_images_in_its_compute_dtype(dtype):
    keras.utils.set_random_seed(0)
    layer = DeformConv2D(3, 3, bias_initializer="ones", use_bias=True)
    reference = to_numpy(layer(_images("float32")))
    out = layer(_images(dtype))
    assert _dtype(out) == layer.compute_dtype == "float32"
    assert np.abs(reference).sum() > 0
    # Pixel values 0..255 are exact in every dtype here (float16 included), so the result is
    # the float32 input's, not zeros (jax's integer path) and not a dtype error (torch).
    # Outputs reach ~2e2 here: atol 1e-3 is ~5e-6 of the largest.
    np.testing.assert_allclose(to_numpy(out), reference, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
def test_deform_conv2d_op_samples_integer_images_as_floats(dtype):
    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 4, 2)).astype("float32")
    offset = rng.uniform(-1, 1, size=(4, 8, 8, 18)).astype("float32")
    expected = to_numpy(deform_conv2d(_images("float32"), offset, kernel, padding="same"))
    out = deform_conv2d(_images(dtype), offset, kernel, padding="same")
    assert _dtype(out) == "float32"
    # Outputs reach ~1.3e3 here: atol 1e-3 is ~1e-6 of the largest.
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-5, atol=1e-3)


def test_deform_conv2d_empty_batch():
    layer = DeformConv2D(3, 3, strides=2)
    out = layer(np.zeros((0, 8, 8, 4), "float32"))
    assert tuple(out.shape) == (0, 4, 4, 3)
    kernel = np.ones((3, 3, 4, 3), "float32")
    out = deform_conv2d(np.zeros((0, 8, 8, 4), "uint8"), np.zeros((0, 8, 8, 18), "float32"),
                        kernel, padding="same")
    assert tuple(out.shape) == (0, 8, 8, 3) and _dtype(out) == "float32"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make_layer", [
    lambda: DropBlock2D(rate=0.3, block_size=3, seed=0),
    lambda: StochasticDepth(rate=0.3, seed=0),
], ids=["DropBlock2D", "StochasticDepth"])
def test_regularizers_scale_integer_and_float_inputs_in_the_compute_dtype(make_layer, dtype):
    layer = make_layer()
    x = _images(dtype)
    for training in (False, True):
        out = to_numpy(layer(x, training=training))
        assert out.dtype == np.float32
        if not training:
            np.testing.assert_array_equal(out, x.astype("float32"))
            continue
        # Each output is 0 or the input times one float scale > 1 (not truncated to an int).
        kept = out != 0
        assert kept.any()
        scales = out[kept] / x.astype("float32")[kept]
        # Each scale is out / x recomputed from float32 values of x up to 255: the quotient
        # carries float32 rounding of both (~1e-7); 1e-3 only has to tell 1/(1-p) from an
        # integer-truncated scale, which differs by > 1e-2.
        np.testing.assert_allclose(scales, scales.max(), rtol=1e-3)
        assert scales.max() > 1.0 and not float(scales.max()).is_integer()


@pytest.mark.parametrize("make_layer", [
    lambda: DropBlock2D(rate=0.3, block_size=3, seed=0),
    lambda: StochasticDepth(rate=0.3, seed=0),
], ids=["DropBlock2D", "StochasticDepth"])
def test_regularizers_empty_batch(make_layer):
    out = make_layer()(np.zeros((0, 8, 8, 4), "float32"), training=True)
    assert tuple(out.shape) == (0, 8, 8, 4)


AUGMENTS = [BasicAugment, MixUp, CutMix]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer_class", AUGMENTS, ids=lambda c: c.__name__)
def test_augmentations_cast_integer_and_float_images_to_the_compute_dtype(layer_class, dtype):
    images = _images(dtype, n=8, size=28, channels=1)
    labels = np.eye(10, dtype="float32")[np.arange(8) % 10]
    layer = layer_class(seed=0)
    for training in (False, True):
        out = layer({"images": images, "labels": labels}, training=training)
        assert _dtype(out["images"]) == layer.compute_dtype == "float32"
        values = to_numpy(out["images"])
        # Pixels are cast, not rescaled; augmentation moves or mixes them within 0..255.
        assert values.max() <= 255.0 + 1e-3 and values.min() >= -1e-3
        if not training:
            np.testing.assert_array_equal(values, images.astype("float32"))
        else:
            assert values.max() > 1.0


@pytest.mark.parametrize("layer_class", AUGMENTS, ids=lambda c: c.__name__)
def test_augmentations_empty_batch(layer_class):
    images = np.zeros((0, 28, 28, 1), "uint8")
    labels = np.zeros((0, 10), "float32")
    out = layer_class(seed=0)({"images": images, "labels": labels}, training=True)
    assert tuple(out["images"].shape) == (0, 28, 28, 1)
    assert tuple(out["labels"].shape) == (0, 10)
