"""StochasticDepth / stochastic_depth and the linear decay rule."""

import os

import numpy as np

import keras_fmnist  # noqa: F401  (selects the torch backend when unset)
import keras
from keras.src import testing

from keras_fmnist.layers import StochasticDepth
from keras_fmnist.layers.stochastic_depth import stochastic_depth
from keras_fmnist.layers.stochastic_depth import stochastic_depth_rates
from helpers import to_numpy


class StochasticDepthTest(testing.TestCase):
    def test_layer_basics(self):
        self.run_layer_test(
            StochasticDepth,
            init_kwargs={"rate": 0.3, "seed": 1},
            input_shape=(4, 3, 3, 2),
            call_kwargs={"training": True},
            expected_output_shape=(4, 3, 3, 2),
            expected_num_trainable_weights=0,
            expected_num_non_trainable_weights=0,
            expected_num_seed_generators=1,
            expected_num_losses=0,
            supports_masking=True,
            assert_built_after_instantiation=True,
        )

    def test_config_round_trip(self):
        layer = StochasticDepth(0.25, seed=5, name="sd")
        config = layer.get_config()
        self.assertEqual(config["rate"], 0.25)
        self.assertEqual(config["seed"], 5)
        self.assertEqual(StochasticDepth.from_config(config).get_config(), config)
        self.assertIs(
            keras.saving.get_registered_object("keras_fmnist>StochasticDepth"),
            StochasticDepth,
        )

    def test_per_sample_all_or_nothing(self):
        rate = 0.4
        x = np.random.default_rng(0).uniform(0.5, 1.5, (256, 4, 4, 3)).astype("float32")
        y = to_numpy(StochasticDepth(rate, seed=2)(x, training=True))
        flat_x, flat_y = x.reshape(256, -1), y.reshape(256, -1)
        dropped = np.all(flat_y == 0, axis=1)
        kept = np.all(np.isclose(flat_y, flat_x / (1 - rate), rtol=1e-6), axis=1)
        self.assertTrue(np.all(dropped ^ kept))
        self.assertTrue(np.any(dropped) and np.any(kept))

    def test_drop_fraction_and_expectation(self):
        # 20000 samples. Dropped fraction ~ Binomial: sigma = sqrt(r (1 - r) / n)
        # (0.0028 at r = 0.2); the mean output of ones is 0 or 1 / (1 - r) per
        # sample, sigma = sqrt(r / (1 - r) / n) (0.0035). Tolerances are 4 sigma.
        n = 20000
        x = np.ones((n, 2), "float32")
        for rate in (0.1, 0.2, 0.5):
            y = to_numpy(StochasticDepth(rate, seed=3)(x, training=True))
            fraction = float(np.mean(y[:, 0] == 0))
            self.assertAllClose(fraction, rate, atol=4 * np.sqrt(rate * (1 - rate) / n))
            self.assertAllClose(np.mean(y), 1.0, atol=4 * np.sqrt(rate / (1 - rate) / n))

    def test_identity_at_inference_and_rate_zero(self):
        x = np.random.default_rng(1).normal(size=(8, 5)).astype("float32")
        layer = StochasticDepth(0.5, seed=0)
        self.assertAllClose(to_numpy(layer(x, training=False)), x, rtol=0, atol=0)
        self.assertAllClose(to_numpy(layer(x)), x, rtol=0, atol=0)
        self.assertAllClose(
            to_numpy(StochasticDepth(0.0)(x, training=True)), x, rtol=0, atol=0
        )

    def test_determinism_under_seed(self):
        x = np.ones((64, 3), "float32")
        first = to_numpy(StochasticDepth(0.5, seed=7)(x, training=True))
        again = to_numpy(StochasticDepth(0.5, seed=7)(x, training=True))
        self.assertAllClose(first, again, rtol=0, atol=0)
        layer = StochasticDepth(0.5, seed=7)
        layer(x, training=True)
        self.assertFalse(np.array_equal(first, to_numpy(layer(x, training=True))))
        self.assertAllClose(
            to_numpy(stochastic_depth(x, 0.5, seed=3)),
            to_numpy(stochastic_depth(x, 0.5, seed=3)),
            rtol=0,
            atol=0,
        )

    def test_linear_decay_rule(self):
        self.assertAllClose(stochastic_depth_rates(0.5, 4), [0.125, 0.25, 0.375, 0.5])
        rates = stochastic_depth_rates(0.3, 6)
        self.assertLen(rates, 6)
        self.assertAllClose(rates, [0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
        self.assertEqual(stochastic_depth_rates(0.2, 1), [0.2])
        self.assertEqual(stochastic_depth_rates(0.0, 3), [0.0, 0.0, 0.0])
        self.assertTrue(all(isinstance(r, float) for r in rates))

    def test_invalid_arguments(self):
        for rate in (-0.1, 1.0, 1.5, True, "0.1", None):
            with self.assertRaisesRegex(ValueError, r"`rate`.*\[0, 1\)"):
                StochasticDepth(rate)
            with self.assertRaisesRegex(ValueError, r"`rate`.*\[0, 1\)"):
                stochastic_depth_rates(rate, 4)
        for num_blocks in (0, -2, 2.0, True, "4"):
            with self.assertRaisesRegex(ValueError, r"`num_blocks`.*integer >= 1"):
                stochastic_depth_rates(0.1, num_blocks)

    def test_residual_model_save_and_load(self):
        inputs = keras.Input((5, 5, 4))
        branch = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        branch = StochasticDepth(0.3, seed=1, name="sd")(branch)
        outputs = keras.layers.Add()([inputs, branch])
        model = keras.Model(inputs, outputs)
        x = np.random.default_rng(2).normal(size=(16, 5, 5, 4)).astype("float32")

        # Training: each sample is either the shortcut alone or shortcut +
        # branch / (1 - rate).
        branch_out = to_numpy(model.layers[1](x))
        y = to_numpy(model(x, training=True))
        for out, shortcut, full in zip(y, x, branch_out):
            alone = np.allclose(out, shortcut, atol=1e-5)
            scaled = np.allclose(out, shortcut + full / 0.7, atol=1e-5)
            self.assertTrue(alone ^ scaled)

        path = os.path.join(self.get_temp_dir(), "residual.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded.get_layer("sd"), StochasticDepth)
        self.assertEqual(loaded.get_layer("sd").rate, 0.3)
        predicted = loaded.predict(x, verbose=0)
        self.assertAllClose(predicted, model.predict(x, verbose=0), rtol=0, atol=0)
        self.assertAllClose(predicted, x + branch_out, atol=1e-5)
