"""CutMix (Yun et al. 2019) as a Keras image preprocessing layer, with exact label weights."""

import keras

from keras_fmnist.augment.mixing import MixingAugmentation
from keras_fmnist.augment.mixing import draw_mixing


def cutmix_boxes(backend, lam, centre_y, centre_x, height, width):
    """Integer CutMix boxes, clipped at the border, and the exact label weights.

    Yun et al. 2019, Sec. 3.1: the box is `B = (r_x, r_y, r_w, r_h)` with

        r_x ~ Unif(0, W),  r_w = W * sqrt(1 - lambda)
        r_y ~ Unif(0, H),  r_h = H * sqrt(1 - lambda)

    centred on `(r_y, r_x)` and cropped where it leaves the image; the label weight is then
    re-set to the area that really came from each image:

        lambda' = 1 - (y2 - y1) * (x2 - x1) / (H * W)

    Sides are truncated to whole pixels and the centre is a pixel index, so the box covers
    rows `[y1, y2)` and columns `[x1, x2)` of the pixel grid and `lambda'` is the exact
    fraction of pixels kept from the sample's own image.

    Args:
        backend: backend namespace.
        lam: `(N,)` float, Beta draws (1 for samples that are not mixed).
        centre_y, centre_x: `(N,)` int32 pixel indices in `[0, H)` and `[0, W)`.
        height, width: ints, H and W.

    Returns:
        `(y1, y2, x1, x2, lam_exact)`, four `(N,)` int32 tensors and `(N,)` float32.
    """
    cut_ratio = backend.numpy.sqrt(backend.numpy.maximum(1.0 - backend.cast(lam, "float32"), 0.0))
    side_h = backend.cast(backend.numpy.floor(cut_ratio * height), "int32")
    side_w = backend.cast(backend.numpy.floor(cut_ratio * width), "int32")
    # Start at centre - side // 2 and keep the full side before clipping, so an unclipped
    # box has exactly side_h x side_w pixels.
    top = centre_y - backend.numpy.floor_divide(side_h, 2)
    left = centre_x - backend.numpy.floor_divide(side_w, 2)
    y1 = backend.numpy.clip(top, 0, height)
    y2 = backend.numpy.clip(top + side_h, 0, height)
    x1 = backend.numpy.clip(left, 0, width)
    x2 = backend.numpy.clip(left + side_w, 0, width)
    area = backend.cast((y2 - y1) * (x2 - x1), "float32")
    lam_exact = 1.0 - area / float(height * width)
    return y1, y2, x1, x2, lam_exact


def _uniform_centres(backend, draws, height, width, seed):
    """Box centres uniform on the pixel grid: `(draws,)` int32 rows in [0, H), cols in [0, W)."""
    u = backend.random.uniform((2, draws), dtype="float32", seed=seed)
    n = backend.numpy
    centre_y = n.clip(backend.cast(n.floor(u[0] * height), "int32"), 0, height - 1)
    centre_x = n.clip(backend.cast(n.floor(u[1] * width), "int32"), 0, width - 1)
    return centre_y, centre_x


@keras.saving.register_keras_serializable(package="keras_fmnist")
class CutMix(MixingAugmentation):
    """CutMix: paste a random box of a partner image and mix labels by exact pixel area.

    Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features" (https://arxiv.org/abs/1905.04899):

        lambda ~ Beta(alpha, alpha)
        M      = 1 outside box B, 0 inside (B: centre uniform on the pixel grid,
                 sides sqrt(1 - lambda) * (H, W), clipped at the border)
        x~     = M * x_i + (1 - M) * x_j
        y~     = lambda' * y_i + (1 - lambda') * y_j,  lambda' = mean(M)

    with `j = permutation[i]` for a random permutation of the batch. `lambda'` is the
    exact fraction of the sample's pixels that still come from its own image after the box
    was clipped (see `cutmix_boxes`). `keras.layers.CutMix` instead places boxes at
    fractional coordinates and weights labels by the unclipped continuous area, which on
    28x28 images is several points off for some samples; this layer does not.

    Granularity: with `per_sample=True` (default) each sample draws its own lambda, box
    centre and "mix or not" gate (`probability`); with `per_sample=False` one lambda, one
    box and one gate serve the whole batch, as in the paper's reference code.

    Call it on `{"images": (N, H, W, C), "labels": (N, K)}` (labels one-hot or already
    soft) or on a bare image batch. With `training=False`, or on a single unbatched image,
    it is the identity (images are still cast to the layer's compute dtype).

    This layer is safe to use inside a `tf.data` or `grain` pipeline on any backend.

    Args:
        alpha: float > 0, Beta concentration; alpha = 1 (default, the paper's choice)
            makes lambda, hence the box area, uniform.
        probability: float in [0, 1], chance that a sample (or batch, see `per_sample`)
            is mixed at all. Defaults to 1.0.
        per_sample: bool, draw lambda, box and gate per sample (True) or per batch (False).
        seed: int or None, seeds the layer's `keras.random.SeedGenerator`.
        data_format: "channels_last" or "channels_first"; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    images = np.random.rand(8, 28, 28, 1).astype("float32")
    labels = keras.ops.one_hot(np.arange(8) % 10, 10)
    out = keras_fmnist.augment.CutMix(alpha=1.0, seed=0)(
        {"images": images, "labels": labels}, training=True
    )
    out["images"].shape, out["labels"].shape  # (8, 28, 28, 1), (8, 10)
    ```
    """

    def __init__(
        self,
        alpha: float = 1.0,
        probability: float = 1.0,
        per_sample: bool = True,
        seed: int | None = None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(alpha, probability, per_sample, seed, data_format=data_format, **kwargs)
        if self.data_format == "channels_first":
            self._height_axis, self._width_axis = -2, -1
        else:
            self._height_axis, self._width_axis = -3, -2

    def _draw_transformation(self, shape, seed):
        height, width = shape[self._height_axis], shape[self._width_axis]
        if not isinstance(height, int) or not isinstance(width, int):
            raise ValueError(
                "CutMix needs static image height and width. "
                f"Received: images.shape={shape}"
            )
        batch_size = shape[0]
        permutation, lam = draw_mixing(
            self.backend,
            batch_size,
            self.alpha,
            self.probability,
            self.per_sample,
            seed,
            "float32",
        )
        draws = batch_size if self.per_sample else 1
        centre_y, centre_x = _uniform_centres(self.backend, draws, height, width, seed)
        if not self.per_sample:
            centre_y = self.backend.numpy.broadcast_to(centre_y, (batch_size,))
            centre_x = self.backend.numpy.broadcast_to(centre_x, (batch_size,))
        y1, y2, x1, x2, lam_exact = cutmix_boxes(
            self.backend, lam, centre_y, centre_x, height, width
        )
        return {
            "permutation": permutation,
            "centre": (centre_y, centre_x),
            "box": (y1, y2, x1, x2),
            "lam": lam_exact,
        }

    def _box_mask(self, box, height, width):
        """Boolean `(N, H, W, 1)` (or `(N, 1, H, W)`) mask, True inside the box."""
        y1, y2, x1, x2 = (self.backend.numpy.reshape(v, (-1, 1, 1)) for v in box)
        rows = self.backend.numpy.reshape(
            self.backend.numpy.arange(height, dtype="int32"), (1, -1, 1)
        )
        cols = self.backend.numpy.reshape(
            self.backend.numpy.arange(width, dtype="int32"), (1, 1, -1)
        )
        n = self.backend.numpy
        inside = n.logical_and(
            n.logical_and(n.greater_equal(rows, y1), n.less(rows, y2)),
            n.logical_and(n.greater_equal(cols, x1), n.less(cols, x2)),
        )
        channel_axis = 1 if self.data_format == "channels_first" else -1
        return n.expand_dims(inside, axis=channel_axis)

    def transform_images(self, images, transformation=None, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        shape = self.backend.shape(images)
        mask = self._box_mask(
            transformation["box"], shape[self._height_axis], shape[self._width_axis]
        )
        partner = self.backend.numpy.take(images, transformation["permutation"], axis=0)
        return self.backend.numpy.where(mask, partner, images)
