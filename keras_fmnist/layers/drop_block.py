"""DropBlock (Ghiasi, Lin and Le, 2018, "DropBlock: A regularization method for
convolutional networks", https://arxiv.org/abs/1810.12890).

`drop_block2d` is the functional op; `DropBlock2D` is the thin layer around it that keeps
the drop rate in a variable so that `keras_fmnist.schedules.DropBlockSchedule` can ramp it
during training.
"""

import numbers

import keras
from keras import ops

from keras_fmnist.validation import validate_positive_int
from keras_fmnist.validation import validate_rate

_DATA_FORMATS = ("channels_last", "channels_first")


def _standardize_data_format(data_format):
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in _DATA_FORMATS:
        raise ValueError(
            "Invalid value received for argument `data_format`. Expected one "
            f"of {_DATA_FORMATS} or None. Received: data_format={data_format!r}"
        )
    return data_format


def _spatial_size(shape, data_format):
    if len(shape) != 4:
        raise ValueError(
            "DropBlock2D expects a 4D input of shape (batch, height, width, "
            "channels) (or (batch, channels, height, width) with "
            f"data_format='channels_first'). Received input shape: {shape}"
        )
    height, width = shape[1:3] if data_format == "channels_last" else shape[2:4]
    if height is None or width is None:
        # The clamped block size, gamma and the pooling window are Python
        # numbers derived from the map size, so it must be static.
        raise ValueError(
            "DropBlock2D needs static height and width. Received input shape: "
            f"{shape}"
        )
    return height, width


def drop_block2d(inputs, rate: float, block_size: int, seed=None,
                 data_format: str = "channels_last"):
    """Drops contiguous `block_size` x `block_size` regions of a feature map.

    Each channel of each sample gets its own mask (as in the paper and in
    torchvision's `drop_block2d`): a block centre is a Bernoulli(gamma) draw,
    drawn only at the positions where a whole block fits inside the map, and
    every drawn seed zeroes the `block_size` x `block_size` square whose
    top-left corner it is. The paper's gamma turns the requested fraction of
    dropped units `rate` into a per-position seed probability:

        gamma = rate / block_size**2 * (H * W) / ((H - block_size + 1) * (W - block_size + 1))

    (with `block_size` already clamped to the map): `rate / block_size**2`
    seeds per unit, so that, ignoring overlaps, seeds times block area is
    `rate * H * W`, scaled up because seeds are drawn on the smaller
    (H - block_size + 1) x (W - block_size + 1) valid region only. Overlapping blocks make the real dropped fraction a little lower than
    `rate` (about 0.95 * rate for rate 0.1, block 7 on a 64 x 64 map).

    The surviving units are multiplied by count(mask) / count_ones(mask), the
    number of units in the whole batch over the number kept (Algorithm 1 of the
    paper), so that the mean activation is unchanged.

    A block larger than the map is clamped to `min(block_size, H, W)`: with the
    study's 28 x 28 inputs and block size 7, a stage-3 map of 2 x 2 gets 2 x 2
    blocks (one valid position, so each channel is dropped whole with
    probability `rate`) and a stage-2 map of 4 x 4 gets 4 x 4 blocks. Nothing
    larger than the map is ever requested. Even (clamped or not) block sizes are
    supported (unlike torchvision's op): blocks are anchored at their top-left
    corner, so no centre is needed.

    Args:
        inputs: 4D float tensor, `(N, H, W, C)` for `"channels_last"` or
            `(N, C, H, W)` for `"channels_first"`. H and W must be static.
        rate: Fraction of units to drop, in [0, 1). A Python float or a scalar
            tensor/variable (so it can change between steps without retracing).
        block_size: Side of the square blocks, an int >= 1 (clamped to the map).
        seed: `None`, an int or a `keras.random.SeedGenerator`, passed to
            `keras.random.uniform`.
        data_format: `"channels_last"` (default) or `"channels_first"`.

    Returns:
        A tensor with the shape and dtype of `inputs`.

    Example:

    ```python
    x = keras.ops.ones((2, 14, 14, 8))
    y = drop_block2d(x, rate=0.1, block_size=7, seed=0)
    ```
    """
    data_format = _standardize_data_format(data_format)
    block_size = validate_positive_int("block_size", block_size)
    if isinstance(rate, numbers.Real):
        validate_rate(rate)
    height, width = _spatial_size(tuple(inputs.shape), data_format)
    h_axis, w_axis = (1, 2) if data_format == "channels_last" else (2, 3)

    block = min(block_size, height, width)
    valid_h = height - block + 1
    valid_w = width - block + 1
    gamma = ops.cast(rate, "float32") * (
        (height * width) / (block**2 * valid_h * valid_w)
    )

    seed_shape = list(ops.shape(inputs))
    seed_shape[h_axis] = valid_h
    seed_shape[w_axis] = valid_w
    # The mask is built in float32 even for float16 inputs: its sum over a
    # large batch would overflow float16.
    seeds = ops.cast(
        keras.random.uniform(seed_shape, dtype="float32", seed=seed) < gamma,
        "float32",
    )
    # A seed at (i, j) covers rows i..i+block-1 and columns j..j+block-1.
    # Padding the seed map by block-1 zeros on every side and max-pooling it
    # with a block x block window at stride 1 marks each pixel covered by at
    # least one seed, and gives back an H x W map.
    padding = [(0, 0)] * 4
    padding[h_axis] = (block - 1, block - 1)
    padding[w_axis] = (block - 1, block - 1)
    dropped = ops.max_pool(
        ops.pad(seeds, padding),
        pool_size=block,
        strides=1,
        padding="valid",
        data_format=data_format,
    )
    keep = 1.0 - dropped
    # count(M) / count_ones(M) == 1 / mean(M). The floor only matters when every
    # unit is dropped; the output is then all zeros whatever the scale.
    scale = 1.0 / ops.maximum(ops.mean(keep), 1e-7)
    return ops.multiply(inputs, ops.cast(keep * scale, inputs.dtype))


@keras.saving.register_keras_serializable(package="keras_fmnist")
class DropBlock2D(keras.layers.Layer):
    """DropBlock: drops contiguous square regions of feature maps in training.

    Ghiasi et al. 2018. During training, each channel of each sample loses
    randomly placed `block_size` x `block_size` squares (per-channel masks, as in
    the paper and torchvision), about a fraction `rate` of its units, and the
    surviving units are rescaled by total units / kept units. At inference
    (`training=False`) the layer is the identity. See `drop_block2d` for the
    gamma formula and for how a block larger than the feature map is clamped to
    the map (`min(block_size, H, W)`; e.g. 2 x 2 blocks on the study's 2 x 2
    stage-3 map, which drops whole channels).

    The rate actually applied lives in the non-trainable scalar variable
    `current_rate`, initialised to `rate`. `keras_fmnist.schedules.DropBlockSchedule`
    assigns it during training (the paper's linear ramp from 0 to `rate`)
    without rebuilding or recompiling anything; `rate` itself stays the target
    and is what `get_config` returns. `current_rate` is saved with the weights.

    Args:
        rate: Float in [0, 1), the target fraction of units to drop.
        block_size: Int >= 1, side of the dropped squares. Defaults to 7, the
            paper's (and the study's) choice. Clamped to the feature map.
        seed: Optional int seed for the layer's `keras.random.SeedGenerator`.
        data_format: `"channels_last"` (`(N, H, W, C)`) or `"channels_first"`
            (`(N, C, H, W)`). Defaults to `keras.config.image_data_format()`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: 4D tensor with static height and width.
        training: Python bool; blocks are dropped only when True.

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, padding="same")(inputs)
    x = DropBlock2D(rate=0.1, block_size=7, seed=0)(x)
    model = keras.Model(inputs, x)
    ```
    """

    def __init__(self, rate: float, block_size: int = 7, seed: int | None = None,
                 data_format: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = validate_rate(rate)
        self.block_size = validate_positive_int("block_size", block_size)
        self.seed = seed
        self.data_format = _standardize_data_format(data_format)
        self.seed_generator = keras.random.SeedGenerator(seed)
        # float32 whatever the dtype policy, and never autocast, so that the
        # schedule's small increments are not rounded away under float16.
        self.current_rate = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self.rate),
            dtype="float32",
            trainable=False,
            autocast=False,
            name="current_rate",
        )
        self.supports_masking = True

    def build(self, input_shape):
        _spatial_size(tuple(input_shape), self.data_format)

    def call(self, inputs, training=False):
        # Integer feature maps or images would be scaled in integers (1 / keep truncated);
        # like keras' own layers, compute in the compute dtype, training or not.
        inputs = ops.cast(inputs, self.compute_dtype)
        if not training:
            return inputs
        return drop_block2d(
            inputs,
            self.current_rate,
            self.block_size,
            seed=self.seed_generator,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {
            "rate": self.rate,
            "block_size": self.block_size,
            "seed": self.seed,
            "data_format": self.data_format,
        }
        return {**base_config, **config}
