"""Tests of keras_fmnist.augment: BasicAugment, MixUp, CutMix and the Beta sampler.

The exactness tests use images that are constant per sample, so that the origin of every
output pixel can be read off its value and compared with the label weights.
"""

import itertools

import numpy as np
import pytest

import keras_fmnist  # noqa: F401  (sets the default backend before keras is imported)
import keras
from keras.src import testing

from keras_fmnist.augment import BasicAugment
from keras_fmnist.augment import CutMix
from keras_fmnist.augment import MixUp
from keras_fmnist.augment import sample_beta
from keras_fmnist.augment.cutmix import cutmix_boxes
from helpers import to_numpy


# Few distinct shapes on purpose: jax compiles every eager op once per input shape.
N = 64  # batch size of almost every test
SQUARE = (28, 28, 1)  # Fashion-MNIST
ODD = (12, 10, 2)  # non-square, two channels: catches swapped axes


def _constant_batch(values, height=28, width=28, channels=1):
    """(N, H, W, C) float32 images, image i filled with values[i]."""
    values = np.asarray(values, dtype="float32")
    return np.broadcast_to(
        values[:, None, None, None], (len(values), height, width, channels)
    ).copy()


def _assert_near(value, target, delta, msg=None):
    assert abs(float(value) - target) <= delta, (
        f"{value} not within {delta} of {target} {msg or ''}"
    )


def _call(layer, images, labels, training=True):
    out = layer({"images": images, "labels": labels}, training=training)
    return to_numpy(out["images"]), to_numpy(out["labels"])


class LayerContractTest(testing.TestCase):
    """Keras's generic layer checks (symbolic call, serialisation, fit, mixed precision)."""

    def test_basic_augment_layer(self):
        self.run_layer_test(
            BasicAugment,
            init_kwargs={"padding": 2, "seed": 1},
            input_shape=(4, 8, 6, 2),
            supports_masking=False,
            expected_output_shape=(4, 8, 6, 2),
            expected_num_seed_generators=1,
        )

    def test_mixup_layer(self):
        self.run_layer_test(
            MixUp,
            init_kwargs={"alpha": 0.4, "probability": 0.5, "seed": 1},
            input_shape=(4, 8, 6, 2),
            supports_masking=False,
            expected_output_shape=(4, 8, 6, 2),
            expected_num_seed_generators=1,
        )

    def test_cutmix_layer(self):
        self.run_layer_test(
            CutMix,
            init_kwargs={"alpha": 1.0, "probability": 0.5, "seed": 1},
            input_shape=(4, 8, 6, 2),
            supports_masking=False,
            expected_output_shape=(4, 8, 6, 2),
            expected_num_seed_generators=1,
        )


class CutMixTest(testing.TestCase):
    def _check_label_weights_are_pixel_fractions(self, layer, n=N, k=10, steps=3):
        rng = np.random.default_rng(0)
        mixed_fractions = []
        for _ in range(steps):
            classes = rng.integers(0, k, size=n)
            # One distinct pixel value per class: the class index itself.
            images = _constant_batch(classes)
            labels = np.eye(k, dtype="float32")[classes]
            out_images, out_labels = _call(layer, images, labels)
            for c in range(k):
                fraction = (out_images[..., 0] == c).mean(axis=(1, 2))
                # Exact up to float32 rounding, far below one pixel (1 / 784 ~ 1.3e-3).
                np.testing.assert_allclose(out_labels[:, c], fraction, rtol=0, atol=1e-6)
            np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-6)
            own = out_labels[np.arange(n), classes]
            mixed_fractions.extend(own[(own > 0) & (own < 1)])
        # Not vacuous: many samples really were cut and mixed.
        self.assertGreater(len(mixed_fractions), n * steps // 4)

    def test_label_weight_is_exact_pixel_fraction(self):
        self._check_label_weights_are_pixel_fractions(CutMix(alpha=1.0, seed=3))

    def test_label_weight_exact_per_batch_mode(self):
        self._check_label_weights_are_pixel_fractions(
            CutMix(alpha=1.0, per_sample=False, seed=4), steps=8
        )

    def test_label_weight_exact_tiny_and_large_alpha(self):
        for alpha in (1e-3, 1e3):
            self._check_label_weights_are_pixel_fractions(CutMix(alpha=alpha, seed=5))

    def test_box_is_one_axis_aligned_rectangle(self):
        n, (h, w, c) = N, ODD
        # Distinct value per sample, so every pasted pixel differs from the own image.
        images = _constant_batch(np.arange(n) + 1.0, h, w, c)
        labels = np.eye(n, dtype="float32")
        layer = CutMix(alpha=1.0, seed=7)
        out_images, out_labels = _call(layer, images, labels)
        clipped = 0
        for i in range(n):
            pasted = out_images[i] != images[i]
            # Same box in every channel.
            self.assertTrue((pasted == pasted[..., :1]).all())
            pasted = pasted[..., 0]
            if not pasted.any():
                continue
            rows, cols = np.nonzero(pasted.any(axis=1))[0], np.nonzero(pasted.any(axis=0))[0]
            box = np.zeros_like(pasted)
            box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1] = True
            np.testing.assert_array_equal(pasted, box)
            # Pasted pixels all come from one partner image.
            self.assertEqual(len(np.unique(out_images[i][pasted])), 1)
            np.testing.assert_allclose(out_labels[i, i], 1.0 - pasted.mean(), atol=1e-6)
            touches_border = rows.min() == 0 or cols.min() == 0 or rows.max() == h - 1
            clipped += bool(touches_border or cols.max() == w - 1)
        self.assertGreater(clipped, 0)

    def test_cutmix_boxes_by_hand(self):
        b = keras.src.backend
        lam = keras.ops.convert_to_tensor(np.array([0.0, 0.75, 0.75, 1.0, 0.5], "float32"))
        cy = keras.ops.convert_to_tensor(np.array([0, 27, 10, 5, 14], "int32"))
        cx = keras.ops.convert_to_tensor(np.array([0, 27, 10, 5, 14], "int32"))
        y1, y2, x1, x2, lam_exact = (to_numpy(v) for v in cutmix_boxes(b, lam, cy, cx, 28, 28))
        # lam=0: side 28 centred at (0, 0) -> rows/cols [-14, 14) clipped to [0, 14).
        # lam=.75: side 14; centred at 27 -> [20, 34) -> [20, 28); at 10 -> [3, 17).
        # lam=1: empty box. lam=.5: side floor(28 * sqrt(.5)) = 19 -> [5, 24).
        np.testing.assert_array_equal(y1, [0, 20, 3, 5, 5])
        np.testing.assert_array_equal(y2, [14, 28, 17, 5, 24])
        np.testing.assert_array_equal(x1, y1)
        np.testing.assert_array_equal(x2, y2)
        expected = 1.0 - np.array([14 * 14, 8 * 8, 14 * 14, 0, 19 * 19]) / 784.0
        np.testing.assert_allclose(lam_exact, expected, atol=1e-7)

    def test_box_centre_covers_the_grid(self):
        # Centres are uniform over the whole pixel grid, so over many samples every pixel,
        # corners included, falls inside some box.
        images = _constant_batch(np.arange(N) + 1.0, *SQUARE)
        labels = np.eye(N, dtype="float32")
        layer = CutMix(alpha=1.0, seed=11)
        covered = np.zeros(SQUARE[:2], bool)
        for _ in range(8):
            out_images, _ = _call(layer, images, labels)
            covered |= (out_images[..., 0] != images[..., 0]).any(axis=0)
        self.assertTrue(covered.all())

    def test_box_centre_uniform_on_pixel_grid_and_box_around_it(self):
        stats = pytest.importorskip("scipy.stats", reason="scipy gives the chi-square test")
        h, w, _ = ODD
        images = np.zeros((N,) + ODD, "float32")
        layer = CutMix(alpha=1.0, seed=12)
        centres, boxes = [], []
        for _ in range(16):
            t = layer.get_random_transformation(images, training=True)
            centres.append(np.stack([to_numpy(v) for v in t["centre"]], axis=1))
            boxes.append(np.stack([to_numpy(v) for v in t["box"]], axis=1))
        centres, boxes = np.concatenate(centres), np.concatenate(boxes)
        for axis, size in ((0, h), (1, w)):
            counts = np.bincount(centres[:, axis], minlength=size)
            self.assertEqual(len(counts), size)  # nothing outside the grid
            self.assertGreater(stats.chisquare(counts).pvalue, 1e-3)
        y1, y2, x1, x2 = boxes.T
        self.assertTrue(((0 <= y1) & (y1 <= y2) & (y2 <= h)).all())
        self.assertTrue(((0 <= x1) & (x1 <= x2) & (x2 <= w)).all())
        # A box that was not clipped is centred on its centre: starts at centre - side // 2.
        inside = (y1 > 0) & (y2 < h) & (x1 > 0) & (x2 < w)
        self.assertGreater(inside.sum(), 10)
        np.testing.assert_array_equal(y1[inside], centres[inside, 0] - (y2 - y1)[inside] // 2)
        np.testing.assert_array_equal(x1[inside], centres[inside, 1] - (x2 - x1)[inside] // 2)
        # Both sides come from one ratio r = sqrt(1 - lambda): floor(h r) and floor(w r).
        side_h, side_w = (y2 - y1)[inside], (x2 - x1)[inside]
        low = np.maximum(side_h / h, side_w / w)
        high = np.minimum((side_h + 1) / h, (side_w + 1) / w)
        self.assertTrue((low < high).all())

    def test_channels_first(self):
        n, k = N, 10
        classes = np.arange(n) % k
        images = np.transpose(_constant_batch(classes, *ODD), (0, 3, 1, 2))
        labels = np.eye(k, dtype="float32")[classes]
        out_images, out_labels = _call(
            CutMix(alpha=1.0, seed=2, data_format="channels_first"), images, labels
        )
        self.assertEqual(out_images.shape, images.shape)
        for c in range(k):
            fraction = (out_images[:, 0] == c).mean(axis=(1, 2))
            np.testing.assert_allclose(out_labels[:, c], fraction, atol=1e-6)
        np.testing.assert_array_equal(out_images[:, 0], out_images[:, 1])


class MixUpTest(testing.TestCase):
    def test_pixel_is_label_weighted_sum_of_values(self):
        n, k = N, 10
        values = np.linspace(-1.0, 3.0, k).astype("float32")  # one value per class
        rng = np.random.default_rng(1)
        for alpha, per_sample in ((0.2, True), (1.0, True), (1.0, False)):
            classes = rng.integers(0, k, size=n)
            images = _constant_batch(values[classes], *ODD)
            labels = np.eye(k, dtype="float32")[classes]
            out_images, out_labels = _call(
                MixUp(alpha=alpha, per_sample=per_sample, seed=2), images, labels
            )
            expected = out_labels @ values
            np.testing.assert_allclose(
                out_images, np.broadcast_to(expected[:, None, None, None], images.shape),
                atol=1e-5,
            )
            np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-6)

    def test_soft_labels_mix_with_image_weight(self):
        n = N
        rng = np.random.default_rng(2)
        labels = rng.dirichlet(np.ones(5), size=n).astype("float32")
        # Image i is filled with i, so the partner and lambda can be read off the pixels.
        images = _constant_batch(np.arange(n, dtype="float32"), *SQUARE)
        layer = MixUp(alpha=1.0, seed=9)
        out_images, out_labels = _call(layer, images, labels)
        # Recover (lambda, partner) by brute force from the pixel value.
        for i in range(n):
            v = out_images[i, 0, 0, 0]
            candidates = []
            for j in range(n):
                if j == i:
                    continue
                lam = (v - j) / (i - j)
                if -1e-5 <= lam <= 1 + 1e-5:
                    mixed = lam * labels[i] + (1 - lam) * labels[j]
                    candidates.append(np.abs(mixed - out_labels[i]).max())
            if abs(v - i) < 1e-6:
                candidates.append(np.abs(labels[i] - out_labels[i]).max())
            self.assertLess(min(candidates), 1e-5)

    def test_per_batch_mode_shares_lambda(self):
        n = N
        images = _constant_batch(np.zeros(n), *SQUARE)
        labels = np.eye(n, dtype="float32")
        _, out_labels = _call(MixUp(alpha=1.0, per_sample=False, seed=3), images, labels)
        own = np.diag(out_labels)
        mixed = own < 1.0  # samples paired with themselves keep weight 1
        self.assertGreater(mixed.sum(), 0)
        np.testing.assert_allclose(own[mixed], own[mixed][0], atol=1e-7)

    def test_alpha_edge_cases(self):
        n = N
        images = _constant_batch(np.arange(n, dtype="float32"), *SQUARE)
        labels = np.eye(n, dtype="float32")
        tiny = MixUp(alpha=1e-3, seed=4)
        own_tiny = np.concatenate(
            [np.diag(_call(tiny, images, labels)[1]) for _ in range(4)]
        )
        self.assertTrue(np.isfinite(own_tiny).all())
        # Beta(1e-3, 1e-3) puts 0.5% of its mass in (0.01, 0.99): nearly no blending.
        self.assertLess(np.mean((own_tiny > 0.01) & (own_tiny < 0.99)), 0.05)
        self.assertGreater(np.mean(own_tiny < 0.01), 0.3)
        self.assertGreater(np.mean(own_tiny > 0.99), 0.3)
        out_images, out_labels = _call(MixUp(alpha=1e3, seed=4), images, labels)
        own_large = np.diag(out_labels)
        paired = own_large < 1.0
        self.assertGreater(paired.mean(), 0.9)
        # Beta(1e3, 1e3) has sd 1 / sqrt(4 * 2001) ~ 0.011: 0.05 is 4.5 sd (a sampling bound).
        np.testing.assert_allclose(own_large[paired], 0.5, atol=0.05)
        self.assertTrue(np.isfinite(out_images).all())


class BetaSamplerTest(testing.TestCase):
    def test_matches_beta_distribution(self):
        stats = pytest.importorskip("scipy.stats", reason="scipy gives the Beta CDF")
        seed = keras.random.SeedGenerator(0)
        for alpha in (0.5, 1.0, 4.0):
            x = to_numpy(sample_beta(keras.src.backend, (4000,), alpha, seed)).astype("float64")
            self.assertTrue(np.isfinite(x).all())
            p_value = stats.kstest(x, stats.beta(alpha, alpha).cdf).pvalue
            self.assertGreater(p_value, 1e-3, msg=f"alpha={alpha}")

    def test_matches_beta_distribution_small_alpha(self):
        # For alpha < 0.5 a sizeable mass lies within float32 spacing (6e-8) of 1 and is
        # rounded to 1.0, which a KS test reads as a defect; binned counts with the last
        # bin [1 - 1e-6, 1] are immune to that rounding.
        stats = pytest.importorskip("scipy.stats", reason="scipy gives the Beta CDF")
        seed = keras.random.SeedGenerator(1)
        n = 4000
        edges = np.array(
            [0, 1e-30, 1e-6, 1e-3, 0.1, 0.5, 0.9, 1 - 1e-3, 1 - 1e-6, 1.0], "float64"
        )
        for alpha in (1e-3, 0.05, 0.2):
            x = to_numpy(sample_beta(keras.src.backend, (n,), alpha, seed)).astype("float64")
            self.assertTrue(np.isfinite(x).all())
            observed = np.histogram(x, edges)[0].astype("float64")
            expected = n * np.diff(stats.beta(alpha, alpha).cdf(edges))
            # Merge neighbouring bins until each expects >= 5 draws (chi-square validity).
            obs_m, exp_m, o, e = [], [], 0.0, 0.0
            for ob, ex in zip(observed, expected):
                o, e = o + ob, e + ex
                if e >= 5:
                    obs_m.append(o)
                    exp_m.append(e)
                    o, e = 0.0, 0.0
            obs_m[-1] += o
            exp_m[-1] += e
            self.assertGreaterEqual(len(obs_m), 3, msg=f"alpha={alpha}")
            p_value = stats.chisquare(obs_m, exp_m).pvalue
            self.assertGreater(p_value, 1e-3, msg=f"alpha={alpha}: {obs_m} vs {exp_m}")

    def test_tiny_alpha_is_nearly_bernoulli(self):
        # True mass in (0.01, 0.99): 0.05%. keras.random.beta on torch (torch's Beta) puts 86%
        # there, near 0.5, because both of its gamma draws underflow to the same clamp.
        seed = keras.random.SeedGenerator(1)
        x = to_numpy(sample_beta(keras.src.backend, (4000,), 1e-4, seed))
        self.assertTrue(np.isfinite(x).all())
        self.assertLess(np.mean((x > 0.01) & (x < 0.99)), 0.01)
        _assert_near(float(np.mean(x > 0.5)), 0.5, delta=0.05)

    def test_large_alpha_concentrates_at_half(self):
        seed = keras.random.SeedGenerator(2)
        x = to_numpy(sample_beta(keras.src.backend, (4000,), 1e4, seed))
        # sd of Beta(1e4, 1e4) is 1 / sqrt(4 * (2e4 + 1)) ~ 3.5e-3.
        np.testing.assert_allclose(x, 0.5, atol=0.025)
        _assert_near(float(x.std()), 3.5e-3, delta=0.5e-3)


class MixingCommonTest(testing.TestCase):
    """Behaviour shared by MixUp and CutMix."""

    layers = (MixUp, CutMix)

    def _batch(self, n=N):
        images = _constant_batch(np.arange(n, dtype="float32") + 1.0, *SQUARE)
        labels = np.eye(n, dtype="float32")
        return images, labels

    def test_probability_zero_is_identity(self):
        images, labels = self._batch()
        for cls in self.layers:
            out_images, out_labels = _call(cls(probability=0.0, seed=1), images, labels)
            np.testing.assert_array_equal(out_images, images)
            np.testing.assert_array_equal(out_labels, labels)

    def test_probability_one_mixes_every_paired_sample(self):
        images, labels = self._batch()
        for cls in self.layers:
            out_images, out_labels = _call(cls(alpha=1.0, seed=2), images, labels)
            # Sample i's partner is the image whose label got weight next to i's.
            partner_weight = out_labels - np.diag(np.diag(out_labels))
            paired = partner_weight.sum(axis=1) > 0
            unmixed = np.diag(out_labels) == 1.0
            np.testing.assert_array_equal(paired, ~unmixed)
            # Only a sample drawn as its own partner (or an empty CutMix box, probability
            # 1/784 per sample at alpha=1) may stay unmixed: ~1 per batch.
            self.assertLessEqual(unmixed.sum(), 4, msg=cls.__name__)
            moved = (out_images != images).any(axis=(1, 2, 3))
            np.testing.assert_array_equal(moved, paired)

    def test_intermediate_probability_rate(self):
        images, labels = self._batch()
        for cls in self.layers:
            for per_sample in (True, False):
                layer = cls(alpha=1.0, probability=0.3, per_sample=per_sample, seed=3)
                rates = []
                for _ in range(8 if per_sample else 40):
                    _, out_labels = _call(layer, images, labels)
                    rates.append(np.mean(np.diag(out_labels) < 1.0))
                rates = np.array(rates)
                if per_sample:
                    # 512 samples; a sample paired with itself (~1/64) also stays unmixed.
                    _assert_near(rates.mean(), 0.3, delta=0.07)
                else:
                    # Whole batches are mixed or not.
                    self.assertTrue(np.all((rates == 0) | (rates > 0.9)), msg=rates)
                    _assert_near(np.mean(rates > 0.5), 0.3, delta=0.2)

    def test_training_false_is_identity(self):
        images, labels = self._batch()
        for cls in self.layers:
            out_images, out_labels = _call(cls(seed=1), images, labels, training=False)
            np.testing.assert_array_equal(out_images, images)
            np.testing.assert_array_equal(out_labels, labels)
            np.testing.assert_array_equal(to_numpy(cls(seed=1)(images, training=False)), images)

    def test_unbatched_image_is_identity(self):
        images, _ = self._batch()
        for cls in self.layers:
            np.testing.assert_array_equal(to_numpy(cls(seed=1)(images[0])), images[0])

    def test_determinism_under_seed(self):
        images, labels = self._batch()
        for cls in self.layers:
            first = _call(cls(seed=42), images, labels)
            again = _call(cls(seed=42), images, labels)
            other = _call(cls(seed=43), images, labels)
            np.testing.assert_array_equal(first[0], again[0])
            np.testing.assert_array_equal(first[1], again[1])
            self.assertFalse(np.array_equal(first[1], other[1]))
            layer = cls(seed=42)
            call1, call2 = _call(layer, images, labels), _call(layer, images, labels)
            # A seeded layer still draws fresh randomness on each call.
            self.assertFalse(np.array_equal(call1[1], call2[1]))
            np.testing.assert_array_equal(call1[1], first[1])

    def test_image_only_input(self):
        images, labels = self._batch()
        for cls in self.layers:
            from_dict = _call(cls(seed=5), images, labels)[0]
            alone = to_numpy(cls(seed=5)(images, training=True))
            np.testing.assert_array_equal(alone, from_dict)

    def test_argument_validation(self):
        for cls in self.layers:
            for alpha in (0, 0.0, -1.0, "1", None, True):
                with self.assertRaisesRegex(ValueError, "alpha"):
                    cls(alpha=alpha)
            for probability in (-0.1, 1.5, None, "0.5"):
                with self.assertRaisesRegex(ValueError, "probability"):
                    cls(probability=probability)

    def test_config_round_trip(self):
        for cls in self.layers:
            layer = cls(alpha=0.7, probability=0.25, per_sample=False, seed=3, name="aug")
            config = layer.get_config()
            clone = cls.from_config(config)
            self.assertEqual(clone.get_config(), config)
            restored = keras.saving.deserialize_keras_object(
                keras.saving.serialize_keras_object(layer)
            )
            self.assertIsInstance(restored, cls)
            self.assertEqual(restored.get_config(), config)
            images, labels = self._batch()
            np.testing.assert_array_equal(
                _call(restored, images, labels)[1],
                _call(cls.from_config(config), images, labels)[1],
            )


def _shift_flip_reference(image, dy, dx, flip_v, flip_h, fill=0.0):
    """Slow reference: pad, crop at offset (dy, dx) in [-p, p], then flip."""
    h, w = image.shape[:2]
    p = max(abs(dy), abs(dx))
    padded = np.full((h + 2 * p, w + 2 * p) + image.shape[2:], fill, image.dtype)
    padded[p : p + h, p : p + w] = image
    out = padded[p + dy : p + dy + h, p + dx : p + dx + w]
    if flip_v:
        out = out[::-1]
    if flip_h:
        out = out[:, ::-1]
    return out


class BasicAugmentTest(testing.TestCase):
    def _identify(self, image, out, padding, fill=0.0):
        """All (dy, dx, flip_v, flip_h) that turn `image` into `out`."""
        matches = []
        shifts = range(-padding, padding + 1)
        for dy, dx, fv, fh in itertools.product(shifts, shifts, (0, 1), (0, 1)):
            if np.array_equal(_shift_flip_reference(image, dy, dx, fv, fh, fill), out):
                matches.append((dy, dx, fv, fh))
        return matches

    def test_output_is_a_shift_and_flip_of_the_input(self):
        n, p = N, 3
        rng = np.random.default_rng(0)
        images = rng.uniform(0.1, 1.0, size=(n,) + ODD).astype("float32")
        labels = np.eye(n, dtype="float32")
        layer = BasicAugment(padding=p, seed=1)
        found = []
        for _ in range(3):
            out_images, out_labels = _call(layer, images, labels)
            self.assertEqual(out_images.shape, images.shape)
            np.testing.assert_array_equal(out_labels, labels)
            for i in range(n):
                matches = self._identify(images[i], out_images[i], p)
                self.assertEqual(len(matches), 1, msg=f"sample {i}: {matches}")
                found.append(matches[0])
        found = np.array(found)
        # Per sample, uniform integer shifts over the whole range, independent fair flips.
        self.assertEqual(set(found[:, 0]), set(range(-p, p + 1)))
        self.assertEqual(set(found[:, 1]), set(range(-p, p + 1)))
        self.assertGreater(len({tuple(s) for s in found[:, :2]}), 30)
        flip_v, flip_h = found[:, 2], found[:, 3]
        _assert_near(flip_v.mean(), 0.5, delta=0.12)
        _assert_near(flip_h.mean(), 0.5, delta=0.12)
        # Independent axes: both flipped ~1/4 of the time (a shared coin would give 1/2).
        _assert_near((flip_v & flip_h).mean(), 0.25, delta=0.1)

    def test_fill_value_and_channels_first(self):
        n, (h, w, c), p = N, ODD, 2
        rng = np.random.default_rng(1)
        images = rng.uniform(1.0, 2.0, size=(n, c, h, w)).astype("float32")
        layer = BasicAugment(padding=p, fill_value=-5.0, seed=2, data_format="channels_first")
        out = to_numpy(layer(images, training=True))
        self.assertEqual(out.shape, images.shape)
        for i in range(n):
            matches = self._identify(
                images[i].transpose(1, 2, 0), out[i].transpose(1, 2, 0), p, fill=-5.0
            )
            self.assertEqual(len(matches), 1)

    def test_flags_switch_parts_off(self):
        rng = np.random.default_rng(2)
        images = rng.uniform(size=(N,) + SQUARE).astype("float32")
        out = to_numpy(BasicAugment(padding=0, horizontal_flip=False, vertical_flip=False)(images))
        np.testing.assert_array_equal(out, images)
        out = to_numpy(BasicAugment(padding=0, vertical_flip=False, seed=3)(images))
        flipped = np.all(out == images[:, :, ::-1], axis=(1, 2, 3))
        kept = np.all(out == images, axis=(1, 2, 3))
        self.assertTrue(np.all(flipped | kept))
        self.assertTrue(flipped.any() and kept.any())

    def test_unbatched_training_false_and_determinism(self):
        rng = np.random.default_rng(3)
        images = rng.uniform(size=(N,) + SQUARE).astype("float32")
        single = to_numpy(BasicAugment(seed=1)(images[0], training=True))
        self.assertEqual(single.shape, images[0].shape)
        self.assertEqual(len(self._identify(images[0], single, 4)), 1)
        np.testing.assert_array_equal(to_numpy(BasicAugment(seed=1)(images, training=False)), images)
        np.testing.assert_array_equal(
            to_numpy(BasicAugment(seed=7)(images)), to_numpy(BasicAugment(seed=7)(images))
        )

    def test_argument_validation_and_config(self):
        for padding in (-1, 2.5, None, True):
            with self.assertRaisesRegex(ValueError, "padding"):
                BasicAugment(padding=padding)
        with self.assertRaisesRegex(ValueError, "horizontal_flip"):
            BasicAugment(horizontal_flip=1)
        with self.assertRaisesRegex(ValueError, "vertical_flip"):
            BasicAugment(vertical_flip="yes")
        with self.assertRaisesRegex(ValueError, "fill_value"):
            BasicAugment(fill_value="0")
        layer = BasicAugment(padding=2, vertical_flip=False, fill_value=0.5, seed=3)
        config = layer.get_config()
        self.assertEqual(BasicAugment.from_config(config).get_config(), config)
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer)
        )
        self.assertEqual(restored.get_config(), config)


class PipelineTest(testing.TestCase):
    def test_layers_are_interchangeable(self):
        images = _constant_batch(np.arange(N, dtype="float32") % 10, *SQUARE)
        labels = np.eye(10, dtype="float32")[np.arange(N) % 10]
        for layer in (BasicAugment(seed=0), MixUp(seed=0), CutMix(seed=0)):
            out_images, out_labels = _call(layer, images, labels)
            self.assertEqual(out_images.shape, images.shape)
            self.assertEqual(out_labels.shape, labels.shape)
            self.assertEqual(to_numpy(layer(images)).shape, images.shape)

    def test_tf_data_pipeline(self):
        # As keras' own preprocessing layers: inside a tf.data graph the layer runs on TF's
        # ops whatever the Keras backend, and gives TF tensors (tensorflow is in
        # requirements-dev.txt, so this runs in every pass of ./dev.sh test).
        import tensorflow as tf

        n, k = 16, 10
        classes = np.arange(n) % k
        images = _constant_batch(classes)
        labels = np.eye(k, dtype="float32")[classes]
        for layer in (BasicAugment(seed=0), MixUp(seed=0), CutMix(seed=0)):
            ds = tf.data.Dataset.from_tensor_slices({"images": images, "labels": labels})
            ds = ds.batch(8).map(layer)
            for batch in ds:
                self.assertIsInstance(batch["images"], tf.Tensor)
                self.assertEqual(tuple(batch["images"].shape), (8, 28, 28, 1))
                if isinstance(layer, CutMix):
                    out = batch["images"].numpy()
                    for c in range(k):
                        np.testing.assert_allclose(
                            batch["labels"].numpy()[:, c],
                            (out[..., 0] == c).mean(axis=(1, 2)),
                            atol=1e-6,
                        )
            # The layer still works eagerly on the Keras backend afterwards.
            self.assertEqual(to_numpy(layer(images)).shape, images.shape)

    def test_tf_data_pipeline_augments_real_images(self):
        import tensorflow as tf

        (x_train, y_train), _ = keras_fmnist.load_fashion_mnist(source="files")
        images, classes = x_train[:32, :, :, None], y_train[:32]  # uint8, as stored
        labels = np.eye(10, dtype="float32")[classes]
        for layer in (BasicAugment(seed=0), MixUp(seed=0), CutMix(seed=0)):
            # Unbatched elements batched in the graph, dynamic batch size (drop_remainder
            # off), uint8 images cast by the layer, then the model's [0, 1] scaling.
            ds = (
                tf.data.Dataset.from_tensor_slices({"images": images, "labels": labels})
                .batch(12)
                .map(layer, num_parallel_calls=2)
                .map(lambda d: (d["images"] / 255.0, d["labels"]))
            )
            seen = 0
            for x, y in ds:
                x, y = x.numpy(), y.numpy()
                self.assertEqual(x.dtype, np.float32)
                self.assertTrue(0.0 <= x.min() and x.max() <= 1.0 + 1e-6)
                np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
                seen += len(x)
            self.assertEqual(seen, 32)
        # A single image per element: BasicAugment moves pixels without a batch axis.
        ds = tf.data.Dataset.from_tensor_slices(images.astype("float32")).map(
            BasicAugment(seed=0)
        )
        out = np.stack([x.numpy() for x in ds])
        self.assertEqual(out.shape, images.shape)
        self.assertFalse(np.array_equal(out, images.astype("float32")))


@pytest.mark.parametrize("layer_class", [MixUp, CutMix])
@pytest.mark.parametrize("labels", [np.array([1, 4, 2, 0], "int32"),
                                    np.array([1.0, 4.0, 2.0, 0.0], "float32"),
                                    np.array([[1], [4], [2], [0]], "int64"),
                                    np.array([[1.0], [4.0], [2.0], [0.0]], "float32")])
def test_mixing_rejects_class_indices_with_the_fix(layer_class, labels):
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    layer = layer_class(seed=0)
    with pytest.raises(ValueError, match=r"labels must be one-hot .* One-hot them first"):
        layer({"images": images, "labels": labels}, training=True)
    # Inference leaves labels alone, whatever they are.
    out = layer({"images": images, "labels": labels}, training=False)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(out["labels"]), labels)


@pytest.mark.parametrize("layer_class", [MixUp, CutMix])
def test_integer_one_hot_labels_mix_like_float_ones(layer_class):
    images = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    one_hot = np.eye(10, dtype="int32")[[1, 4, 2, 0]]
    mixed = [
        keras.ops.convert_to_numpy(
            layer_class(seed=3)({"images": images, "labels": labels}, training=True)["labels"])
        for labels in (one_hot, one_hot.astype("float32"))
    ]
    assert mixed[0].dtype == np.float32
    np.testing.assert_allclose(mixed[0], mixed[1])
    np.testing.assert_allclose(mixed[0].sum(-1), 1.0, rtol=1e-6)
