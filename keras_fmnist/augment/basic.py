"""The study's "basic" augmentation: padded random crop, random horizontal and vertical flip."""

import keras

from keras_fmnist.augment.base import ClassificationAugmentation


@keras.saving.register_keras_serializable(package="keras_fmnist")
class BasicAugment(ClassificationAugmentation):
    """Padded random crop + independent random horizontal and vertical flips, per sample.

    For each sample independently (the torchvision recipe the study used:
    `RandomCrop(28, padding=4)`, `RandomHorizontalFlip()`, `RandomVerticalFlip()`):

    1. pad by `padding` pixels of `fill_value` on every side and crop an H x W window at a
       uniformly drawn integer offset, i.e. shift the image by `(dy, dx)` with
       `dy, dx ~ Uniform{-padding, ..., padding}`, filling what enters with `fill_value`;
    2. flip left-right with probability 1/2;
    3. flip top-bottom with probability 1/2, independently of 2.

    Pixels are moved, never interpolated: every output pixel is either an input pixel or
    `fill_value`. The three steps are done as one gather of the input.

    Why not `keras.layers.RandomCrop` + `keras.layers.RandomFlip`: in Keras 3.15
    `RandomCrop` draws one crop window for the whole batch, and
    `RandomFlip("horizontal_and_vertical")` draws one coin per sample for both axes (it
    flips both or neither), so neither is the per-sample, independent recipe above;
    `RandomTranslation` draws fractional shifts and resamples through an affine transform.

    Labels pass through untouched, so the layer takes the same `{"images", "labels"}` dict
    as `MixUp` and `CutMix` as well as a bare `(N, H, W, C)` or `(H, W, C)` image tensor.
    With `training=False` it is the identity (images cast to the compute dtype).

    This layer is safe to use inside a `tf.data` or `grain` pipeline on any backend.

    Args:
        padding: int >= 0, maximum shift in pixels (pad width of the crop). Defaults to 4.
        horizontal_flip: bool, randomly flip left-right. Defaults to True.
        vertical_flip: bool, randomly flip top-bottom. Defaults to True.
        fill_value: float, value of the padding. Defaults to 0.0 (torchvision's default
            and Fashion-MNIST's background).
        seed: int or None, seeds the layer's `keras.random.SeedGenerator`.
        data_format: "channels_last" or "channels_first"; defaults to
            `keras.config.image_data_format()`.
        **kwargs: base layer arguments (`name`, `dtype`, ...).

    Example:

    ```python
    images = np.random.rand(8, 28, 28, 1).astype("float32")
    labels = keras.ops.one_hot(np.arange(8) % 10, 10)
    out = keras_fmnist.augment.BasicAugment(padding=4, seed=0)(
        {"images": images, "labels": labels}, training=True
    )
    out["images"].shape  # (8, 28, 28, 1); out["labels"] is `labels`
    ```
    """

    def __init__(
        self,
        padding: int = 4,
        horizontal_flip: bool = True,
        vertical_flip: bool = True,
        fill_value: float = 0.0,
        seed: int | None = None,
        data_format: str | None = None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        if not isinstance(padding, int) or isinstance(padding, bool) or padding < 0:
            raise ValueError(
                "BasicAugment: argument `padding` must be an int >= 0. "
                f"Received: padding={padding!r}"
            )
        for name, value in (
            ("horizontal_flip", horizontal_flip),
            ("vertical_flip", vertical_flip),
        ):
            if not isinstance(value, bool):
                raise ValueError(
                    f"BasicAugment: argument `{name}` must be True or False. "
                    f"Received: {name}={value!r}"
                )
        if isinstance(fill_value, bool) or not isinstance(fill_value, (int, float)):
            raise ValueError(
                "BasicAugment: argument `fill_value` must be a number. "
                f"Received: fill_value={fill_value!r}"
            )
        self.padding = padding
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.fill_value = float(fill_value)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images = data["images"] if isinstance(data, dict) else data
        shape = self.backend.shape(images)
        batch_size = 1 if len(shape) == 3 else shape[0]
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        n = self.backend.numpy
        span = 2 * self.padding + 1
        # Offsets of the crop window inside the padded image, uniform on {0, ..., 2p}.
        offsets = self.backend.random.uniform(
            (2, batch_size), minval=0.0, maxval=float(span), dtype="float32", seed=seed
        )
        offsets = n.clip(self.backend.cast(n.floor(offsets), "int32"), 0, span - 1)
        coins = self.backend.random.uniform((2, batch_size), dtype="float32", seed=seed)
        flip_v = n.logical_and(n.less(coins[0], 0.5), self.vertical_flip)
        flip_h = n.logical_and(n.less(coins[1], 0.5), self.horizontal_flip)
        return {
            "offset_y": offsets[0],
            "offset_x": offsets[1],
            "flip_v": flip_v,
            "flip_h": flip_h,
        }

    def _source_index(self, length, offset, flip):
        """Per-sample source coordinate of each output coordinate along one axis.

        Output index `i` reads the cropped image at `i' = length - 1 - i` if flipped, else
        `i`; the crop window starts at `offset` in the padded image, i.e. at
        `offset - padding` in the input. Returns `(N, length)` int32 indices clipped into
        range and the `(N, length)` mask of those that fall inside the input.
        """
        n = self.backend.numpy
        i = n.reshape(n.arange(length, dtype="int32"), (1, -1))
        i = n.where(n.reshape(flip, (-1, 1)), length - 1 - i, i)
        src = i + n.reshape(offset, (-1, 1)) - self.padding
        valid = n.logical_and(n.greater_equal(src, 0), n.less(src, length))
        return n.clip(src, 0, length - 1), valid

    def transform_images(self, images, transformation, training=True):
        images = self.backend.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        n = self.backend.numpy
        if self.data_format == "channels_first":
            images = n.transpose(images, (0, 2, 3, 1))
        shape = self.backend.shape(images)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        rows, rows_valid = self._source_index(
            height, transformation["offset_y"], transformation["flip_v"]
        )
        cols, cols_valid = self._source_index(
            width, transformation["offset_x"], transformation["flip_h"]
        )
        # One gather over the flattened batch: flat index of (sample, row, col).
        sample = n.reshape(n.arange(batch, dtype="int32"), (-1, 1, 1)) * (height * width)
        flat = sample + rows[:, :, None] * width + cols[:, None, :]
        pixels = n.take(
            n.reshape(images, (-1, channels)), n.reshape(flat, (-1,)), axis=0
        )
        pixels = n.reshape(pixels, (-1, height, width, channels))
        valid = n.logical_and(rows_valid[:, :, None], cols_valid[:, None, :])
        fill = self.backend.cast(self.fill_value, self.compute_dtype)
        out = n.where(valid[..., None], pixels, fill)
        if self.data_format == "channels_first":
            out = n.transpose(out, (0, 3, 1, 2))
        return out

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "padding": self.padding,
                "horizontal_flip": self.horizontal_flip,
                "vertical_flip": self.vertical_flip,
                "fill_value": self.fill_value,
                "seed": self.seed,
            }
        )
        return config
