"""Modulated deformable convolution layer (DCNv2)."""

import keras
from keras import ops

from keras_fmnist.backend import layout
from keras_fmnist.ops.deform_conv import IMPLEMENTATIONS
from keras_fmnist.ops.deform_conv import _pair
from keras_fmnist.ops.deform_conv import conv_output_size
from keras_fmnist.ops.deform_conv import deform_conv2d


@keras.saving.register_keras_serializable(package="keras_fmnist")
class DeformConv2D(keras.layers.Layer):
    """2D deformable convolution (Zhu et al. 2018, DCNv2) with its own offset branch.

    A regular convolution over the same input, with the same kernel size, strides,
    padding and dilation (so its output grid is this layer's output grid), predicts for
    each output position `2 * G * k * k` sampling offsets and, when `modulated`, `G * k * k`
    mask logits squashed by a sigmoid; `keras_fmnist.ops.deform_conv2d` then samples the
    input bilinearly at the shifted taps, scales each tap by its mask and applies the
    kernel. Channels of the offset branch: first the offsets in torchvision's order (see
    `deform_conv2d`), then the mask logits.

    As in DCNv2, the offset branch starts at zero: offsets 0 and masks sigmoid(0) = 0.5,
    so a fresh layer computes exactly `0.5 *` a plain convolution with its kernel
    (`modulated=False`: exactly the plain convolution) and learns to deform from there.

    Args:
        filters: int, number of output channels.
        kernel_size: int or tuple of two ints. Defaults to 3.
        strides: int or tuple of two ints. Defaults to 1.
        padding: "same", "valid" (Keras semantics) or a non-negative int (symmetric zero
            padding, as torchvision). Defaults to "same".
        dilation_rate: int or tuple of two ints. Defaults to 1.
        deformable_groups: int, number of offset groups G; input channels are split into
            G contiguous groups, each with its own offsets (and masks). Must divide the
            input channels. Defaults to 1.
        modulated: bool. True for DCNv2 (learned masks), False for DCNv1. Defaults to True.
        use_bias: bool, whether the deformable convolution adds a bias. Defaults to False.
        implementation: "auto", "keras" or "torchvision"; see `deform_conv2d`.
        data_format: "channels_last" (N, H, W, C) or "channels_first" (N, C, H, W), as
            Keras' `Conv2D`. Defaults to `keras.config.image_data_format()`. Building a
            channels_first layer raises ValueError where the backend cannot run it
            (TensorFlow on a CPU without its oneDNN kernels).
        kernel_initializer, bias_initializer: initializers of the main convolution.
        kernel_regularizer, bias_regularizer: regularizers of the main convolution.
        kernel_constraint, bias_constraint: constraints of the main convolution.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Input shape:
        (batch, height, width, channels), or (batch, channels, height, width) with
        `data_format="channels_first"`.

    Output shape:
        (batch, new_height, new_width, filters) (channels first: (batch, filters,
        new_height, new_width)), the sizes of a `Conv2D` with the same kernel size,
        strides, padding and dilation.

    Example:

    >>> x = np.random.rand(4, 7, 7, 64).astype("float32")
    >>> layer = DeformConv2D(64, 3)
    >>> tuple(layer(x).shape)
    (4, 7, 7, 64)
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int] = 3,
        strides: int | tuple[int, int] = 1,
        padding: str | int = "same",
        dilation_rate: int | tuple[int, int] = 1,
        deformable_groups: int = 1,
        modulated: bool = True,
        use_bias: bool = False,
        implementation: str = "auto",
        data_format: str | None = None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(
                "Invalid value for argument `filters`: expected a positive int. "
                f"Received: filters={filters}"
            )
        if not isinstance(deformable_groups, int) or deformable_groups < 1:
            raise ValueError(
                "Invalid value for argument `deformable_groups`: expected a positive int. "
                f"Received: deformable_groups={deformable_groups}"
            )
        if isinstance(padding, str):
            if padding.lower() not in ("same", "valid"):
                raise ValueError(
                    "Invalid value for argument `padding`: expected 'same', 'valid' or a "
                    f"non-negative int. Received: padding={padding}"
                )
            padding = padding.lower()
        elif not isinstance(padding, int) or padding < 0:
            raise ValueError(
                "Invalid value for argument `padding`: expected 'same', 'valid' or a "
                f"non-negative int. Received: padding={padding}"
            )
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"Invalid value for argument `implementation`: expected one of "
                f"{IMPLEMENTATIONS}. Received: implementation={implementation}"
            )
        if implementation == "torchvision" and keras.backend.backend() != "torch":
            raise ValueError(
                "Invalid value for argument `implementation`: 'torchvision' needs the "
                f"torch backend (current: {keras.backend.backend()}). "
                f"Received: implementation={implementation}"
            )
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "Invalid value for argument `data_format`: expected 'channels_last' or "
                f"'channels_first'. Received: data_format={data_format}"
            )
        self.data_format = data_format
        self.filters = filters
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.deformable_groups = deformable_groups
        self.modulated = bool(modulated)
        self.use_bias = bool(use_bias)
        self.implementation = implementation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    @property
    def _taps(self):
        return self.kernel_size[0] * self.kernel_size[1]

    @property
    def _channel_axis(self):
        return -1 if self.data_format == "channels_last" else 1

    def build(self, input_shape):
        layout.check_channels_first(self.data_format, f"DeformConv2D {self.name!r}")
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                "The channel dimension of the inputs of DeformConv2D must be known. "
                f"Received: input_shape={input_shape}"
            )
        if channels % self.deformable_groups:
            raise ValueError(
                f"Invalid value for argument `deformable_groups`: it must divide the "
                f"{channels} input channels. "
                f"Received: deformable_groups={self.deformable_groups}"
            )
        kh, kw = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel",
            shape=(kh, kw, channels, self.filters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.filters,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        offset_channels = (3 if self.modulated else 2) * self.deformable_groups * self._taps
        # Zero init (DCNv2): the layer starts as a plain convolution (times 0.5 if modulated).
        self.offset_kernel = self.add_weight(
            name="offset_kernel",
            shape=(kh, kw, channels, offset_channels),
            initializer="zeros",
        )
        self.offset_bias = self.add_weight(
            name="offset_bias", shape=(offset_channels,), initializer="zeros"
        )
        self.input_spec = keras.layers.InputSpec(
            ndim=4, axes={self._channel_axis: channels}
        )

    def call(self, inputs):
        # As a Keras layer should: integer images (uint8 pixels) computed in the compute dtype.
        inputs = ops.cast(inputs, self.compute_dtype)
        if inputs.shape[0] == 0:
            # An empty batch: TF's convolution of the offset branch mis-shapes it.
            return ops.zeros(self.compute_output_shape(inputs.shape), self.compute_dtype)
        first = self.data_format == "channels_first"
        if isinstance(self.padding, int):
            p = self.padding
            pads = ((0, 0), (0, 0), (p, p), (p, p)) if first else ((0, 0), (p, p), (p, p), (0, 0))
            padded = ops.pad(inputs, pads)
            conv_padding = "valid"
        else:
            padded, conv_padding = inputs, self.padding
        offset_and_mask = ops.conv(
            padded,
            self.offset_kernel,
            strides=self.strides,
            padding=conv_padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        n_offsets = 2 * self.deformable_groups * self._taps
        if first:
            offset_and_mask = offset_and_mask + ops.reshape(self.offset_bias, (-1, 1, 1))
            offset = offset_and_mask[:, :n_offsets]
            logits = offset_and_mask[:, n_offsets:]
        else:
            offset_and_mask = offset_and_mask + self.offset_bias
            offset = offset_and_mask[..., :n_offsets]
            logits = offset_and_mask[..., n_offsets:]
        mask = ops.sigmoid(logits) if self.modulated else None
        return deform_conv2d(
            inputs,
            offset,
            self.kernel,
            mask=mask,
            bias=self.bias,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            implementation=self.implementation,
            data_format=self.data_format,
        )

    def compute_output_shape(self, input_shape):
        first = self.data_format == "channels_first"
        spatial = tuple(input_shape[2:4]) if first else tuple(input_shape[1:3])
        out_h, out_w = conv_output_size(
            spatial,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
        )
        if first:
            return (input_shape[0], self.filters, out_h, out_w)
        return (input_shape[0], out_h, out_w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "dilation_rate": self.dilation_rate,
                "deformable_groups": self.deformable_groups,
                "modulated": self.modulated,
                "use_bias": self.use_bias,
                "implementation": self.implementation,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
            }
        )
        return config
