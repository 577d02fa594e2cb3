"""Stochastic depth (Huang, Sun, Liu, Sedra and Weinberger, 2016, "Deep Networks with
Stochastic Depth", https://arxiv.org/abs/1603.09382).

`stochastic_depth` is the functional op, `StochasticDepth` the layer to put on a residual
branch just before the addition, and `stochastic_depth_rates` the paper's linear decay rule
for the per-block drop rates.
"""

import keras
from keras import ops

from keras_fmnist.backend import private_api
from keras_fmnist.validation import validate_positive_int
from keras_fmnist.validation import validate_rate


def stochastic_depth_rates(rate: float, num_blocks: int) -> list[float]:
    """The paper's linear decay rule, as drop rates of blocks 1..L.

    Huang et al. 2016 (eq. 4) give block l of L the survival probability
    p_l = 1 - l / L * (1 - p_L): the first block is almost always kept and the
    last one survives with probability p_L. As drop rates, with
    `rate = 1 - p_L`, that is `rate * l / L` for l = 1..L.

    Args:
        rate: Float in [0, 1), the drop rate of the last block.
        num_blocks: Int >= 1, the number L of residual blocks.

    Returns:
        A list of `num_blocks` Python floats, increasing linearly from
        `rate / num_blocks` to `rate`.

    Example:

    ```python
    >>> stochastic_depth_rates(0.5, 4)
    [0.125, 0.25, 0.375, 0.5]
    ```
    """
    rate = validate_rate(rate)
    validate_positive_int("num_blocks", num_blocks)
    return [rate * layer / num_blocks for layer in range(1, num_blocks + 1)]


def stochastic_depth(inputs, rate, seed=None):
    """Drops whole samples of a residual branch, rescaling the survivors.

    Each sample (index along the first axis) is kept with probability
    `1 - rate` as a whole, all other axes sharing one Bernoulli draw, and a
    kept sample is divided by `1 - rate`. This is the "inverted" form of
    Huang et al. 2016: the paper multiplies the branch by the survival
    probability at test time instead; both make the train-time expectation of
    the branch equal its test-time value (E[b / p] * f = f here, E[b] * f =
    p * f there), so a network trained one way is the other's up to a fixed
    rescaling of each branch, and inference here needs no change at all.

    Args:
        inputs: Tensor of any rank >= 1 whose first axis is the batch, the
            output of a residual branch before it is added to the shortcut.
        rate: Python float in [0, 1), the probability of dropping a sample.
        seed: `None`, an int or a `keras.random.SeedGenerator`, passed to
            `keras.random.uniform`.

    Returns:
        A tensor with the shape and dtype of `inputs`.

    Example:

    ```python
    branch = keras.ops.ones((8, 7, 7, 64))
    y = stochastic_depth(branch, rate=0.2, seed=0)  # each sample: 0 or 1.25
    ```
    """
    rate = validate_rate(rate)
    if rate == 0.0:
        return inputs
    keep_prob = 1.0 - rate
    noise_shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
    keep = keras.random.uniform(noise_shape, dtype="float32", seed=seed) < keep_prob
    return ops.multiply(
        inputs, ops.cast(ops.cast(keep, "float32") / keep_prob, inputs.dtype)
    )


@keras.saving.register_keras_serializable(package="keras_fmnist")
class StochasticDepth(keras.layers.Layer):
    """Stochastic depth for a residual branch (Huang et al. 2016).

    Call it on the residual branch's output, before the addition:
    `out = shortcut + StochasticDepth(rate)(branch)`. In training each sample's
    branch is zeroed with probability `rate` (all of it: the block reduces to
    its shortcut for that sample) and surviving branches are scaled by
    `1 / (1 - rate)`; at inference the layer is the identity. This inverted
    scaling is equivalent in expectation to the paper's test-time scaling of
    the branch by its survival probability (see `stochastic_depth`). Use
    `stochastic_depth_rates` for the paper's per-block linear decay.

    Args:
        rate: Float in [0, 1), the probability of dropping the branch.
        seed: Optional int seed for the layer's `keras.random.SeedGenerator`.
        **kwargs: Base layer keyword arguments, such as `name` and `dtype`.

    Call arguments:
        inputs: Tensor of any rank whose first axis is the batch.
        training: Python bool; branches are dropped only when True.

    Example:

    ```python
    inputs = keras.Input((7, 7, 64))
    branch = keras.layers.Conv2D(64, 3, padding="same")(inputs)
    branch = StochasticDepth(rate=0.1, seed=0)(branch)
    outputs = keras.layers.Add()([inputs, branch])
    model = keras.Model(inputs, outputs)
    ```
    """

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = validate_rate(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True
        private_api.build_at_init(self)  # no weights: built once constructed, as Dropout

    def call(self, inputs, training=False):
        # Integer feature maps or images would be scaled in integers (1 / keep truncated);
        # like keras' own layers, compute in the compute dtype, training or not.
        inputs = ops.cast(inputs, self.compute_dtype)
        if training and self.rate > 0.0:
            return stochastic_depth(inputs, self.rate, seed=self.seed_generator)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        base_config = super().get_config()
        config = {"rate": self.rate, "seed": self.seed}
        return {**base_config, **config}
