"""DropBlock2D / drop_block2d and the DropBlockSchedule callback."""

import itertools
import os
import warnings

import numpy as np
from absl.testing import parameterized

import keras_fmnist  # noqa: F401  (selects the torch backend when unset)
import keras
from keras.src import testing
from numpy.lib.stride_tricks import sliding_window_view

from keras_fmnist.layers import DropBlock2D
from keras_fmnist.layers.drop_block import drop_block2d
from keras_fmnist.schedules import DropBlockSchedule
from helpers import to_numpy


def reference_drop_block(x, uniform, rate, block_size):
    """Algorithm 1 of Ghiasi et al. 2018 with explicit loops (slow), channels-last.

    `uniform` holds the U(0, 1) draws for the valid seed positions,
    shape (N, H - b + 1, W - b + 1, C), b the clamped block size.
    """
    n, h, w, c = x.shape
    b = min(block_size, h, w)
    gamma = rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
    mask = np.ones_like(x)
    for s, i, j, ch in itertools.product(
        range(n), range(h - b + 1), range(w - b + 1), range(c)
    ):
        if uniform[s, i, j, ch] < gamma:
            mask[s, i : i + b, j : j + b, ch] = 0.0
    return x * mask * mask.size / max(mask.sum(), 1.0)


def expected_dropped_fraction(rate, h, w, block_size):
    """Exact E[fraction of dropped units] under the paper's gamma.

    A unit is kept iff none of the k seed positions whose block covers it fires,
    probability (1 - gamma)**k; k is smaller near the border.
    """
    b = min(block_size, h, w)
    gamma = rate / b**2 * (h * w) / ((h - b + 1) * (w - b + 1))
    rows = np.array([min(i, h - b) - max(0, i - b + 1) + 1 for i in range(h)])
    cols = np.array([min(j, w - b) - max(0, j - b + 1) + 1 for j in range(w)])
    k = rows[:, None] * cols[None, :]
    return 1.0 - np.mean((1.0 - gamma) ** k)


def zeros_are_whole_blocks(y, block_size):
    """True iff every zero of `y` (N, H, W, C) lies in an all-zero b x b square
    that fits inside the map (b = block size clamped to the map)."""
    _, h, w, _ = y.shape
    b = min(block_size, h, w)
    zero = (y == 0).astype(np.int32)
    # Sum over every b x b window at a valid position: == b*b means all zero.
    windows = sliding_window_view(zero, (b, b), axis=(1, 2)).sum(axis=(-2, -1))
    full = (windows == b * b).astype(np.int32)  # (N, H-b+1, W-b+1, C)
    padded = np.pad(full, ((0, 0), (b - 1, b - 1), (b - 1, b - 1), (0, 0)))
    covered = sliding_window_view(padded, (b, b), axis=(1, 2)).max(axis=(-2, -1))
    return bool(np.all(covered[zero == 1] == 1))


class DropBlock2DTest(testing.TestCase):
    def test_layer_basics_channels_last(self):
        self.run_layer_test(
            DropBlock2D,
            init_kwargs={"rate": 0.2, "block_size": 3, "seed": 1},
            input_shape=(2, 8, 8, 3),
            call_kwargs={"training": True},
            expected_output_shape=(2, 8, 8, 3),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_layer_basics_channels_first(self):
        self.run_layer_test(
            DropBlock2D,
            init_kwargs={
                "rate": 0.2,
                "block_size": 4,
                "data_format": "channels_first",
            },
            input_shape=(2, 3, 6, 5),
            call_kwargs={"training": True},
            expected_output_shape=(2, 3, 6, 5),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=1,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
        )

    def test_config_round_trip(self):
        layer = DropBlock2D(0.15, block_size=5, seed=3, data_format="channels_first")
        config = layer.get_config()
        self.assertEqual(config["rate"], 0.15)
        self.assertEqual(config["block_size"], 5)
        self.assertEqual(config["seed"], 3)
        self.assertEqual(config["data_format"], "channels_first")
        restored = DropBlock2D.from_config(config)
        self.assertEqual(restored.get_config(), config)
        # Registered under the package name, so deserialisation finds it.
        self.assertIs(
            keras.saving.get_registered_object("keras_fmnist>DropBlock2D"),
            DropBlock2D,
        )

    @parameterized.named_parameters(
        ("odd_block", (2, 9, 9, 3), 3, 0.3),
        ("even_block", (2, 7, 6, 2), 2, 0.25),
        ("block_1_is_dropout", (1, 5, 5, 4), 1, 0.4),
        ("clamped_to_4x4_map", (3, 4, 4, 5), 7, 0.3),
        ("clamped_to_short_side", (2, 3, 5, 4), 7, 0.3),
    )
    def test_matches_slow_reference(self, shape, block_size, rate):
        x = np.random.default_rng(0).uniform(0.5, 1.5, shape).astype("float32")
        n, h, w, c = shape
        b = min(block_size, h, w)
        # The op draws exactly one uniform tensor over the valid seed positions;
        # an int seed makes keras.random.uniform reproducible, so the same draws
        # can be fed to the loop reference.
        uniform = to_numpy(
            keras.random.uniform((n, h - b + 1, w - b + 1, c), dtype="float32", seed=42)
        )
        expected = reference_drop_block(x, uniform, rate, block_size)
        actual = to_numpy(drop_block2d(x, rate, block_size, seed=42))
        self.assertAllClose(actual, expected, rtol=1e-5, atol=1e-6)

    def test_channels_first_matches_reference(self):
        x = np.random.default_rng(1).uniform(0.5, 1.5, (2, 3, 8, 7)).astype("float32")
        b, rate = 3, 0.3
        uniform = to_numpy(
            keras.random.uniform((2, 3, 8 - b + 1, 7 - b + 1), dtype="float32", seed=5)
        )
        expected = reference_drop_block(
            x.transpose(0, 2, 3, 1), uniform.transpose(0, 2, 3, 1), rate, b
        ).transpose(0, 3, 1, 2)
        actual = to_numpy(
            drop_block2d(x, rate, b, seed=5, data_format="channels_first")
        )
        self.assertAllClose(actual, expected, rtol=1e-5, atol=1e-6)

    def test_statistics_on_large_map(self):
        # 4 x 64 x 64 x 32 ones, block 7. Tolerances:
        # - Against the exact expectation (expected_dropped_fraction): 0.015.
        #   Over 200 simulated draws the standard deviation of the dropped
        #   fraction is 0.0056 / 0.0069 / 0.0075 for ONE 64x64x32 sample at rate
        #   0.1 / 0.2 / 0.3, so about 0.004 for four: 0.015 is ~4 sigma.
        # - Against the nominal `rate`: the paper's gamma ignores overlaps of
        #   blocks, so the true fraction is below `rate` (0.947, 0.898, 0.852
        #   times rate here); we accept [0.8 * rate, rate + 0.015].
        shape = (4, 64, 64, 32)
        x = np.ones(shape, "float32")
        for rate in (0.1, 0.2, 0.3):
            layer = DropBlock2D(rate, block_size=7, seed=11)
            y = to_numpy(layer(x, training=True))
            dropped = float(np.mean(y == 0))
            expected = expected_dropped_fraction(rate, 64, 64, 7)
            self.assertAllClose(dropped, expected, atol=0.015)
            self.assertBetween(dropped, 0.8 * rate, rate + 0.015)
            # Mean activation preserved: kept units scaled by total / kept.
            self.assertAllClose(np.mean(y), 1.0, atol=1e-4)
            kept = y[y != 0]
            self.assertAllClose(kept, np.full_like(kept, 1.0 / (1.0 - dropped)), rtol=1e-5)
            self.assertTrue(zeros_are_whole_blocks(y, 7))
            # Masks are per channel: channels do not all share one pattern.
            self.assertFalse(np.array_equal(y[..., 0] == 0, y[..., 1] == 0))

    def test_mean_preserved_on_random_input(self):
        x = np.random.default_rng(2).uniform(0.0, 2.0, (2, 32, 32, 16)).astype("float32")
        layer = DropBlock2D(0.2, block_size=5, seed=3)
        means = [float(np.mean(to_numpy(layer(x, training=True)))) for _ in range(4)]
        # Units are i.i.d., so which ones are dropped is unrelated to their
        # values and the global mean moves only by sampling noise (~0.5%).
        self.assertAllClose(np.mean(means), np.mean(x), rtol=0.02)

    def test_block_structure_detector_rejects_scattered_zeros(self):
        # Guards the structural check above against being vacuous.
        y = np.ones((1, 8, 8, 1), "float32")
        y[0, 2:5, 2:5, 0] = 0.0
        self.assertTrue(zeros_are_whole_blocks(y, 3))
        y[0, 7, 0, 0] = 0.0
        self.assertFalse(zeros_are_whole_blocks(y, 3))

    def test_identity_at_inference(self):
        x = np.random.default_rng(3).normal(size=(2, 14, 14, 4)).astype("float32")
        layer = DropBlock2D(0.5, block_size=7, seed=0)
        self.assertAllClose(to_numpy(layer(x, training=False)), x, rtol=0, atol=0)
        self.assertAllClose(to_numpy(layer(x)), x, rtol=0, atol=0)
        inputs = keras.Input((14, 14, 4))
        model = keras.Model(inputs, layer(inputs))
        self.assertAllClose(model.predict(x, verbose=0), x, rtol=0, atol=0)

    def test_clamped_block_on_2x2_map_drops_whole_channels(self):
        # The study's stage-3 map is 2x2 with block size 7: the block becomes
        # 2x2, there is one valid seed position and gamma = rate, so each
        # (sample, channel) map is dropped whole with probability `rate`.
        rate = 0.3
        x = np.ones((256, 2, 2, 8), "float32")
        y = to_numpy(DropBlock2D(rate, block_size=7, seed=4)(x, training=True))
        self.assertEqual(y.shape, x.shape)
        per_map = (y == 0).reshape(256, 4, 8)
        all_or_nothing = np.all(per_map, axis=1) | ~np.any(per_map, axis=1)
        self.assertTrue(np.all(all_or_nothing))
        fraction = float(np.mean(per_map[:, 0, :]))
        # 2048 Bernoulli(0.3) maps: sigma = sqrt(0.3 * 0.7 / 2048) = 0.010; 4 sigma.
        self.assertAllClose(fraction, rate, atol=0.04)
        self.assertAllClose(np.mean(y), 1.0, atol=1e-4)

    def test_clamped_block_on_4x4_map(self):
        x = np.ones((128, 4, 4, 4), "float32")
        y = to_numpy(DropBlock2D(0.3, block_size=7, seed=5)(x, training=True))
        per_map = (y == 0).reshape(128, 16, 4)
        self.assertTrue(np.all(np.all(per_map, axis=1) | ~np.any(per_map, axis=1)))
        # 512 maps: sigma = 0.020; 4 sigma.
        self.assertAllClose(float(np.mean(per_map[:, 0, :])), 0.3, atol=0.08)

    def test_rate_zero_and_current_rate_variable(self):
        x = np.ones((2, 8, 8, 3), "float32")
        layer = DropBlock2D(0.0, block_size=3, seed=0)
        self.assertAllClose(to_numpy(layer(x, training=True)), x)
        # The applied rate follows the variable, not the constructor argument.
        layer = DropBlock2D(0.3, block_size=3, seed=0)
        layer.current_rate.assign(0.0)
        self.assertAllClose(to_numpy(layer(x, training=True)), x)
        layer.current_rate.assign(0.3)
        self.assertGreater(float(np.mean(to_numpy(layer(x, training=True)) == 0)), 0.0)
        self.assertEqual(layer.get_config()["rate"], 0.3)

    def test_determinism_under_seed(self):
        x = np.ones((2, 16, 16, 4), "float32")
        a = DropBlock2D(0.3, block_size=3, seed=7)
        b = DropBlock2D(0.3, block_size=3, seed=7)
        first_a = to_numpy(a(x, training=True))
        self.assertAllClose(first_a, to_numpy(b(x, training=True)), rtol=0, atol=0)
        # The generator advances: a second call draws a new mask.
        self.assertFalse(np.array_equal(first_a, to_numpy(a(x, training=True))))
        self.assertAllClose(
            to_numpy(drop_block2d(x, 0.3, 3, seed=9)),
            to_numpy(drop_block2d(x, 0.3, 3, seed=9)),
            rtol=0,
            atol=0,
        )

    def test_invalid_arguments(self):
        for rate in (-0.1, 1.0, 1.5, True, "0.1", None):
            with self.assertRaisesRegex(ValueError, r"`rate`.*\[0, 1\)"):
                DropBlock2D(rate)
        for block_size in (0, -3, 2.5, 7.0, True, "7"):
            with self.assertRaisesRegex(ValueError, r"`block_size`.*integer >= 1"):
                DropBlock2D(0.1, block_size=block_size)
        with self.assertRaisesRegex(ValueError, "`data_format`.*channels_last"):
            DropBlock2D(0.1, data_format="NHWC")
        with self.assertRaisesRegex(ValueError, "4D input"):
            DropBlock2D(0.1)(np.ones((2, 8, 8), "float32"), training=True)
        with self.assertRaisesRegex(ValueError, "static height and width"):
            DropBlock2D(0.1)(keras.Input((None, None, 3)))
        with self.assertRaisesRegex(ValueError, "`rate`"):
            drop_block2d(np.ones((1, 4, 4, 1), "float32"), 1.0, 3)

    def test_save_and_load_keras_file(self):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        x = DropBlock2D(0.2, block_size=3, seed=1, name="drop_block")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = keras.layers.Dense(2)(x)
        model = keras.Model(inputs, outputs)
        model.get_layer("drop_block").current_rate.assign(0.05)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        layer = loaded.get_layer("drop_block")
        self.assertIsInstance(layer, DropBlock2D)
        self.assertEqual(layer.rate, 0.2)
        self.assertAllClose(to_numpy(layer.current_rate), 0.05)
        x = np.random.default_rng(4).normal(size=(3, 8, 8, 3)).astype("float32")
        self.assertAllClose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=0, atol=0
        )


class _Holder(keras.layers.Layer):
    """A custom layer holding a DropBlock2D as an attribute (not in model.layers)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drop = DropBlock2D(0.4, block_size=3, seed=2)

    def call(self, x, training=False):
        return self.drop(x, training=training)


class _RateRecorder(keras.callbacks.Callback):
    def __init__(self, layers):
        super().__init__()
        self.layers = layers
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        # Through self.model so that, on JAX, the state the train step returned
        # (the rate it actually ran with) is synced back into the variables.
        self.model  # noqa: B018
        self.rates.append([float(to_numpy(layer.current_rate)) for layer in self.layers])


def _scheduled_model():
    inputs = keras.Input((6, 6, 2))
    top = DropBlock2D(0.2, block_size=3, seed=0)
    x = top(inputs)
    nested = keras.Sequential([keras.layers.Conv2D(2, 1), DropBlock2D(0.1, block_size=3, seed=1)])
    x = nested(x)
    holder = _Holder()
    x = holder(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer="sgd", loss="mse")
    return model, [top, nested.layers[1], holder.drop]


class DropBlockScheduleTest(testing.TestCase):
    def _fit(self, schedule, epochs=2):
        model, layers = _scheduled_model()
        recorder = _RateRecorder(layers)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(8, 6, 6, 2)).astype("float32")
        y = rng.normal(size=(8, 1)).astype("float32")
        model.fit(x, y, batch_size=2, epochs=epochs, callbacks=[schedule, recorder], verbose=0)
        return np.array(recorder.rates), layers

    def test_linear_ramp_then_constant(self):
        schedule = DropBlockSchedule(total_steps=6)
        rates, layers = self._fit(schedule)  # 2 epochs x 4 batches
        targets = np.array([layer.rate for layer in layers])
        steps = np.arange(8)
        expected = np.minimum(1.0, steps / 6)[:, None] * targets[None, :]
        self.assertAllClose(rates, expected, atol=1e-6)
        self.assertEqual(schedule.step, 8)

    def test_rate_reaches_the_train_step(self):
        # No callback touches the model between batches here, so on JAX the
        # only way the value the last step of each epoch ran with (synced back
        # at epoch end) can be the scheduled one is the schedule's own sync.
        schedule = DropBlockSchedule(total_steps=8)
        model, layers = _scheduled_model()
        seen = []
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: seen.append(
                [float(to_numpy(layer.current_rate)) for layer in layers]
            )
        )
        x = np.ones((8, 6, 6, 2), "float32")
        y = np.ones((8, 1), "float32")
        model.fit(x, y, batch_size=2, epochs=2, callbacks=[schedule, record], verbose=0)
        targets = np.array([layer.rate for layer in layers])
        # Last batch of epoch 1 is step 3, of epoch 2 step 7.
        self.assertAllClose(np.array(seen), np.array([[3 / 8], [7 / 8]]) * targets, atol=1e-6)

    def test_total_steps_from_fit(self):
        schedule = DropBlockSchedule()
        rates, layers = self._fit(schedule, epochs=3)
        self.assertEqual(schedule.total_steps, 12)
        targets = np.array([layer.rate for layer in layers])
        expected = (np.arange(12) / 12)[:, None] * targets[None, :]
        self.assertAllClose(rates, expected, atol=1e-6)

    def test_invalid_total_steps(self):
        for total_steps in (0, -3, 2.5, True, "10"):
            with self.assertRaisesRegex(ValueError, r"`total_steps`.*integer >= 1 or None"):
                DropBlockSchedule(total_steps=total_steps)

    def test_warns_without_drop_block(self):
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile(optimizer="sgd", loss="mse")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(
                np.ones((4, 3), "float32"),
                np.ones((4, 1), "float32"),
                epochs=1,
                verbose=0,
                callbacks=[DropBlockSchedule(total_steps=2)],
            )
        self.assertTrue(any("no DropBlock2D" in str(w.message) for w in caught))
