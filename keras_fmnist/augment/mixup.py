"""MixUp (Zhang et al. 2017) as a Keras image preprocessing layer."""

import keras

from keras_fmnist.augment.mixing import MixingAugmentation
from keras_fmnist.augment.mixing import draw_mixing


@keras.saving.register_keras_serializable(package="keras_fmnist")
class MixUp(MixingAugmentation):
    """MixUp: convex combinations of pairs of samples and of their labels.

    Zhang et al. 2017, "mixup: Beyond Empirical Risk Minimization"
    (https://arxiv.org/abs/1710.09412):

        lambda ~ Beta(alpha, alpha)
        x~ = lambda * x_i + (1 - lambda) * x_j
        y~ = lambda * y_i + (1 - lambda) * y_j

    with the same lambda for image and label, and `j = permutation[i]` for a random
    permutation of the batch (the paper's minibatch implementation).

    Granularity: with `per_sample=True` (default) every sample draws its own lambda and its
    own "mix or not" gate (`probability`); with `per_sample=False` one lambda and one gate
    are drawn for the whole batch, as in the paper's reference code. Both give the same
    marginal distribution of a mixed sample.

    Unlike `keras.layers.MixUp`, lambda is drawn by `sample_beta`, which stays a true
    Beta(alpha, alpha) for tiny alpha on the torch backend, and `probability` is supported.

    Call it on `{"images": (N, H, W, C), "labels": (N, K)}` (labels one-hot or already
    soft; any other keys of the dict are not supported) or on a bare image batch. With
    `training=False`, or on a single unbatched image (nothing to pair it with), it is the
    identity (images are still cast to the layer's compute dtype).

    This layer is safe to use inside a `tf.data` or `grain` pipeline on any backend.

    Args:
        alpha: float > 0, Beta concentration. Small alpha -> lambda near 0 or 1 (little
            mixing); alpha = 1 -> uniform lambda; large alpha -> lambda near 0.5.
            Defaults to 0.2.
        probability: float in [0, 1], chance that a sample (or batch, see `per_sample`)
            is mixed at all; unmixed samples keep image and label. Defaults to 1.0.
        per_sample: bool, draw lambda and the gate per sample (True) or per batch (False).
        seed: int or None, seeds the layer's `keras.random.SeedGenerator`.
        data_format: "channels_last" or "channels_first"; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    images = np.random.rand(8, 28, 28, 1).astype("float32")
    labels = keras.ops.one_hot(np.arange(8) % 10, 10)
    out = keras_fmnist.augment.MixUp(alpha=0.2, seed=0)(
        {"images": images, "labels": labels}, training=True
    )
    out["images"].shape, out["labels"].shape  # (8, 28, 28, 1), (8, 10)
    ```
    """

    def __init__(
        self,
        alpha: float = 0.2,
        probability: float = 1.0,
        per_sample: bool = True,
        seed: int | None = None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(alpha, probability, per_sample, seed, data_format=data_format, **kwargs)

    def _draw_transformation(self, shape, seed):
        permutation, lam = draw_mixing(
            self.backend,
            shape[0],
            self.alpha,
            self.probability,
            self.per_sample,
            seed,
            self.compute_dtype,
        )
        return {"permutation": permutation, "lam": lam}

    def transform_images(self, images, transformation=None, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        lam = self.backend.numpy.reshape(
            self.backend.cast(transformation["lam"], self.compute_dtype), (-1, 1, 1, 1)
        )
        partner = self.backend.numpy.take(images, transformation["permutation"], axis=0)
        return lam * images + (1.0 - lam) * partner
