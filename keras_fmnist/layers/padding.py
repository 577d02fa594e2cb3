"""Symmetric spatial padding shared by the layers that pad as torch does."""

import keras

from keras_fmnist.validation import symmetric_padding_pair


def _spatial_axes(data_format):
    return (1, 2) if data_format == "channels_last" else (2, 3)


def pad_symmetric(inputs, padding, data_format, constant_values=0):
    """Pads (N, H, W, C) or (N, C, H, W) `inputs` by (ph, pw) on both sides of H and W."""
    pads = [(0, 0)] * 4
    for axis, p in zip(_spatial_axes(data_format), padding):
        pads[axis] = (p, p)
    return keras.ops.pad(inputs, pads, constant_values=constant_values)


def padded_shape(input_shape, padding, data_format):
    """`input_shape` after `pad_symmetric` (unknown sizes stay None)."""
    shape = list(input_shape)
    for axis, p in zip(_spatial_axes(data_format), padding):
        if shape[axis] is not None:
            shape[axis] += 2 * p
    return tuple(shape)


class SymmetricPaddingMixin:
    """For a Keras layer with a `symmetric_padding` argument that pads its input before the
    base layer's "valid" computation: validation, output shape and config."""

    def _set_symmetric_padding(self, value):
        """Validates `value` against the layer's `padding` and stores it as None or (ph, pw)."""
        self.symmetric_padding = symmetric_padding_pair(value)
        if self.symmetric_padding is not None and self.padding != "valid":
            raise ValueError(
                "symmetric_padding requires padding='valid'; "
                f"got padding={self.padding!r}"
            )

    def compute_output_shape(self, input_shape):
        if self.symmetric_padding is not None:
            input_shape = padded_shape(input_shape, self.symmetric_padding, self.data_format)
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["symmetric_padding"] = self.symmetric_padding
        return config
