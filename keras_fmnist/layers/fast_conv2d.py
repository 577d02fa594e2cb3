"""Conv2D without the torch backend's per-call layout copies, with torch-style padding."""

import keras

from keras_fmnist.layers.fast_path import is_torch_float32
from keras_fmnist.layers.padding import pad_symmetric
from keras_fmnist.layers.padding import SymmetricPaddingMixin


class _TorchChannelsLastKernel:
    """Wraps a kernel initializer so the (kh, kw, in, out) kernel lies in memory as
    (out, kh, kw, in), torch's channels-last weight format.

    Same values at the same (kh, kw, in, out) indices: only the strides differ. In Keras'
    own layout `kernel.permute(3, 2, 0, 1)` is in no format torch knows, so the CPU
    convolution copies the whole kernel before every forward and backward call; and its
    weight gradients come back channels-last, so autograd copies each into the kernel's
    layout as well. Channels-last kernels avoid both copies (and torch then runs the
    convolutions channels-last). Measured by `python -m keras_fmnist.bench`.
    """

    def __init__(self, initializer):
        self.initializer = keras.initializers.get(initializer)

    def __call__(self, shape, dtype=None):
        value = keras.ops.convert_to_tensor(self.initializer(shape, dtype=dtype))
        return value.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FastConv2D(SymmetricPaddingMixin, keras.layers.Conv2D):
    """`keras.layers.Conv2D` that calls torch's convolution without layout copies.

    Same weights, config and results as `Conv2D`, plus `symmetric_padding`. On the torch
    backend:

    - a channels-last input is permuted to (N, C, H, W), a channels-last-memory view that
      `torch.conv2d` takes as is (Keras' torch backend makes two copies of it per call);
    - the kernel keeps its Keras shape (kh, kw, in, out) but lies in memory as torch's
      channels-last weight (out, kh, kw, in), so neither it nor its gradient is copied;
    - `symmetric_padding` is handed to `torch.conv2d` instead of materialising a padded copy.

    Any other backend, and any case outside the plain one (groups, dilation, asymmetric
    "same" padding, LoRA, quantisation), uses `Conv2D.call` (after `keras.ops.pad` where
    `symmetric_padding` asks for it).

    Args:
        symmetric_padding: None, an int or a pair (ph, pw): zeros added on both sides of
            the height and width before a "valid" convolution, as `torch.nn.Conv2d(padding=)`
            does. Keras' "same" pads the extra row and column at the bottom and right only
            for strided convolutions, which shifts the features by half a pixel against
            torch. Requires `padding="valid"`.
        **kwargs: `keras.layers.Conv2D`'s arguments.

    Example:

    >>> conv = FastConv2D(64, 7, strides=2, symmetric_padding=3, use_bias=False)
    >>> conv.compute_output_shape((None, 28, 28, 1))
    (None, 14, 14, 64)
    """

    def __init__(self, *args, symmetric_padding=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._set_symmetric_padding(symmetric_padding)
        self._plain_padding = self._plain_torch_padding()

    def add_weight(self, *args, **kwargs):
        if kwargs.get("name") == "kernel" and keras.backend.backend() == "torch":
            kwargs["initializer"] = _TorchChannelsLastKernel(kwargs.get("initializer"))
        return super().add_weight(*args, **kwargs)

    def _plain_torch_padding(self):
        """The padding `torch.conv2d` gets for this configuration, or None where
        `Conv2D.call` must run. Fixed by the config, so computed once."""
        if self.rank != 2 or self.groups != 1 or self.dilation_rate != (1, 1):
            return None
        if self.symmetric_padding is not None:
            return self.symmetric_padding
        if self.padding == "same":
            # Symmetric only when the stride is 1 and the kernel odd.
            if self.strides == (1, 1) and all(k % 2 for k in self.kernel_size):
                return tuple((k - 1) // 2 for k in self.kernel_size)
            return None
        return (0, 0) if self.padding == "valid" else None

    def _torch_padding(self, inputs):
        """`_plain_torch_padding()` where the torch path applies to this call, else None."""
        if not is_torch_float32(inputs) or getattr(self, "lora_enabled", False):
            return None
        if getattr(self, "quantization_mode", None) is not None:
            return None
        return self._plain_padding

    def call(self, inputs):
        pad = self._torch_padding(inputs)
        if pad is None:
            if self.symmetric_padding is not None:
                inputs = pad_symmetric(inputs, self.symmetric_padding, self.data_format)
            return super().call(inputs)
        import torch

        last = self.data_format == "channels_last"
        x = inputs.permute(0, 3, 1, 2) if last else inputs
        # (kh, kw, in, out) -> (out, in, kh, kw): a view, channels-last for kernels this
        # layer created (see _TorchChannelsLastKernel).
        kernel = self.kernel.value.permute(3, 2, 0, 1)
        bias = self.bias.value if self.use_bias else None
        y = torch.nn.functional.conv2d(x, kernel, bias, self.strides, pad)
        y = y.permute(0, 2, 3, 1) if last else y
        return self.activation(y) if self.activation is not None else y
