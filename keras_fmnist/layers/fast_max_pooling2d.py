"""MaxPooling2D with torch-style symmetric padding, in one torch call on the torch backend."""

import keras

from keras_fmnist.layers.fast_path import is_torch_float32
from keras_fmnist.layers.padding import pad_symmetric
from keras_fmnist.layers.padding import SymmetricPaddingMixin


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FastMaxPooling2D(SymmetricPaddingMixin, keras.layers.MaxPooling2D):
    """`keras.layers.MaxPooling2D` plus `symmetric_padding`, as `torch.nn.MaxPool2d` pads.

    torchvision's stem pools 3x3 with stride 2 and one pixel of padding on every side; Keras'
    "same" would pad the bottom and right only. Padding positions hold -inf (they never win
    the max), as in torch. On the torch backend the padding goes to `torch.max_pool2d`
    instead of materialising a padded copy of the feature map (the largest one of the
    network); elsewhere the input is padded with `keras.ops.pad` and pooled "valid".

    Args:
        pool_size: as `MaxPooling2D`.
        strides: as `MaxPooling2D`.
        symmetric_padding: None, an int or a pair (ph, pw) of pixels added on both sides of
            the height and width; each at most half the pool size (torch's limit).
            Requires `padding="valid"`.
        **kwargs: `keras.layers.MaxPooling2D`'s other arguments.

    Example:

    >>> pool = FastMaxPooling2D(3, strides=2, symmetric_padding=1)
    >>> pool.compute_output_shape((None, 14, 14, 64))
    (None, 7, 7, 64)
    """

    def __init__(self, pool_size=(2, 2), strides=None, symmetric_padding=None, **kwargs):
        super().__init__(pool_size=pool_size, strides=strides, **kwargs)
        self._set_symmetric_padding(symmetric_padding)
        if self.symmetric_padding is not None and any(
            2 * p > k for p, k in zip(self.symmetric_padding, self.pool_size)
        ):
            raise ValueError(
                "symmetric_padding must be at most half the pool size; got "
                f"symmetric_padding={self.symmetric_padding}, pool_size={self.pool_size}"
            )

    def call(self, inputs):
        if self.symmetric_padding is None:
            return super().call(inputs)
        if is_torch_float32(inputs):
            import torch

            last = self.data_format == "channels_last"
            x = inputs.permute(0, 3, 1, 2) if last else inputs
            y = torch.nn.functional.max_pool2d(
                x, self.pool_size, self.strides, self.symmetric_padding
            )
            return y.permute(0, 2, 3, 1) if last else y
        padded = pad_symmetric(
            inputs, self.symmetric_padding, self.data_format, constant_values=float("-inf")
        )
        return super().call(padded)
