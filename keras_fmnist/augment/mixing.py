"""What MixUp and CutMix share: sampling, the mixing draw and their common base layer.

`sample_beta` is a Beta(alpha, alpha) sampler that stays correct for tiny alpha on every
backend; `draw_mixing` draws the pairing permutation, the mixing weights and the per-sample
"mix at all?" gate; `MixingAugmentation` is the base layer (arguments, config, label rule).
"""

import keras

from keras_fmnist.augment.base import ClassificationAugmentation

# Smallest uniform draw fed to log(): keeps log(U) finite without changing the distribution
# in any measurable way (P(U < 1e-30) is below float32 resolution anyway).
_MIN_UNIFORM = 1e-30


def sample_beta(backend, shape, alpha, seed, dtype="float32"):
    """Draws `lambda ~ Beta(alpha, alpha)` (the mixing weight of both papers).

    `Beta(a, a) = G1 / (G1 + G2)` with `G1, G2 ~ Gamma(a)` i.i.d. For `a << 1` both gammas
    underflow float32, and `keras.random.beta` on the torch backend (torch's `Beta`) then
    clamps them to the smallest normal number and returns values near 0.5: with
    `a = 1e-4`, 86% of its draws land in (0.01, 0.99) where the true Beta puts about 0.1%.
    So the ratio is taken in log space, with the boost identity
    `Gamma(a) = Gamma(a + 1) * U ** (1 / a)`, `U ~ Uniform(0, 1)` (Marsaglia & Tsang 2000):

        log G_k = log Gamma_k(a + 1) + log(U_k) / a
        lambda  = G1 / (G1 + G2) = sigmoid(log G1 - log G2)

    `Gamma(a + 1)` has shape >= 1 and never underflows, so this is exact in distribution for
    any `a > 0` and never produces NaN.

    Args:
        backend: a backend namespace (`keras.src.backend` module or a preprocessing layer's
            `self.backend`), so the sampler runs inside tf.data/grain pipelines too.
        shape: shape of the draw.
        alpha: float > 0, the Beta concentration (both parameters).
        seed: a `keras.random.SeedGenerator` (or anything `keras.random` accepts).
        dtype: float dtype of the result.

    Returns:
        A tensor of `shape` with values in [0, 1].
    """
    shape = tuple(shape)
    size = _draw_size(shape)
    gammas = backend.random.gamma((2, size), alpha + 1.0, dtype="float32", seed=seed)
    uniforms = backend.random.uniform(
        (2, size), minval=_MIN_UNIFORM, maxval=1.0, dtype="float32", seed=seed
    )
    log_gammas = backend.numpy.log(gammas) + backend.numpy.log(uniforms) / alpha
    lam = backend.nn.sigmoid(log_gammas[0] - log_gammas[1])
    lam = backend.numpy.reshape(lam[: _num_elements(shape)], shape)
    return backend.cast(lam, dtype)


def _num_elements(shape):
    size = 1
    for dim in shape:
        size = size * dim
    return size


def _draw_size(shape):
    """Number of i.i.d. values to draw for `shape`: rounded up to a power of two >= 64.

    jax compiles its gamma sampler once per shape, which takes seconds; with bucketed
    sizes a training pipeline's ragged last batch (or any batch size up to 64) reuses the
    compiled sampler. Surplus draws are discarded, which leaves the values i.i.d.
    Dynamic (tensor) sizes, as in a tf.data graph, are drawn exactly.
    """
    size = _num_elements(shape)
    if not isinstance(size, int):
        return size
    return max(64, 1 << max(size - 1, 0).bit_length())


def draw_mixing(backend, batch_size, alpha, probability, per_sample, seed, dtype):
    """Draws what both MixUp and CutMix need for one batch.

    Args:
        backend: backend namespace (see `sample_beta`).
        batch_size: int or scalar tensor, N.
        alpha: Beta concentration.
        probability: chance that a sample (or the whole batch, if not `per_sample`) is
            mixed at all.
        per_sample: draw lambda and the gate per sample (True) or once per batch (False).
        seed: `keras.random.SeedGenerator`.
        dtype: float dtype of `lam`.

    Returns:
        `(permutation, lam)`: int32 `(N,)` partner indices (sample i is mixed with
        `permutation[i]`) and `(N,)` weights of each sample's own image, 1 where the gate
        said "do not mix".
    """
    permutation = backend.random.shuffle(
        backend.numpy.arange(batch_size, dtype="int32"), seed=seed
    )
    draws = batch_size if per_sample else 1
    lam = sample_beta(backend, (draws,), alpha, seed, dtype=dtype)
    gate = backend.numpy.less(
        backend.random.uniform((draws,), dtype="float32", seed=seed), probability
    )
    lam = backend.numpy.where(gate, lam, backend.numpy.ones_like(lam))
    if not per_sample:
        lam = backend.numpy.broadcast_to(lam, (batch_size,))
    return permutation, lam


def validate_mixing_args(layer_name, alpha, probability):
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(
            f"{layer_name}: argument `alpha` must be a number > 0 (the Beta(alpha, alpha) "
            f"concentration). Received: alpha={alpha!r}"
        )
    if (
        not isinstance(probability, (int, float))
        or isinstance(probability, bool)
        or not 0.0 <= probability <= 1.0
    ):
        raise ValueError(
            f"{layer_name}: argument `probability` must be a number in [0, 1]. "
            f"Received: probability={probability!r}"
        )


def check_soft_labels(layer_name, labels):
    """Mixing needs one-hot (or soft) label vectors: class indices would be averaged as
    numbers (classes 1 and 4 mixed half and half would become class 2.5).

    Indices come as (batch,) or (batch, 1), of any dtype; (batch, num_classes) vectors of
    any dtype are label vectors (integer one-hot ones are mixed in the compute dtype)."""
    shape = tuple(labels.shape)
    if len(shape) < 2 or shape[-1] == 1:
        dtype = keras.backend.standardize_dtype(labels.dtype)
        raise ValueError(
            f"{layer_name}: labels must be one-hot or soft label vectors of shape "
            f"(batch, num_classes); got {dtype} labels of shape {shape}, class indices. "
            "One-hot them first, e.g. keras.ops.one_hot(labels, num_classes)."
        )


def mix_labels(backend, labels, transformation, dtype):
    """`lam * y + (1 - lam) * y[permutation]`, the label rule of both papers."""
    labels = backend.cast(labels, dtype)
    lam = backend.numpy.reshape(backend.cast(transformation["lam"], dtype), (-1, 1))
    partner = backend.numpy.take(labels, transformation["permutation"], axis=0)
    return lam * labels + (1.0 - lam) * partner


class MixingAugmentation(ClassificationAugmentation):
    """Base of `MixUp` and `CutMix`: pairs each sample of a batch with a random partner.

    Holds their shared arguments (`alpha`, `probability`, `per_sample`, `seed`; see either
    layer), their config and the label rule of both papers (`mix_labels`). A subclass
    draws its transformation in `_draw_transformation` and applies it in
    `transform_images`; the transformation's `"permutation"` and `"lam"` entries are what
    `transform_labels` mixes the labels with.
    """

    def __init__(self, alpha, probability, per_sample, seed, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        validate_mixing_args(self.__class__.__name__, alpha, probability)
        self.alpha = float(alpha)
        self.probability = float(probability)
        self.per_sample = bool(per_sample)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        if len(shape) != 4:
            # A single unbatched image has no partner to be mixed with.
            return None
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        return self._draw_transformation(shape, seed)

    def _draw_transformation(self, shape, seed):
        """The transformation of a batch of `shape` (4 entries, static or dynamic)."""
        raise NotImplementedError

    def transform_labels(self, labels, transformation, training=True):
        if not training or transformation is None:
            return labels
        check_soft_labels(self.__class__.__name__, labels)
        return mix_labels(self.backend, labels, transformation, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "alpha": self.alpha,
                "probability": self.probability,
                "per_sample": self.per_sample,
                "seed": self.seed,
            }
        )
        return config
