"""Conv2D without the torch backend's per-call layout copies."""

import keras


def is_torch_float32(x):
    """True where the torch fast paths apply: torch backend and a float32 tensor."""
    return keras.backend.backend() == "torch" and keras.backend.standardize_dtype(
        x.dtype
    ) == "float32"


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FastConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` that calls torch's convolution without layout copies.

    Same weights, config and results as `Conv2D`. Keras' torch backend turns a channels-last
    input into a contiguous NCHW copy and then into a channels-last-memory copy before every
    convolution (and the same again in the backward pass); permuting the (N, H, W, C) tensor
    to (N, C, H, W) is already a channels-last-memory view that `torch.conv2d` takes as is.
    Any other backend, and any case outside the plain one (groups, dilation, asymmetric
    "same" padding, LoRA, quantisation), uses `Conv2D.call` unchanged.
    """

    def _fast_path(self, inputs):
        if not is_torch_float32(inputs) or self.rank != 2 or self.groups != 1:
            return False
        if self.dilation_rate != (1, 1) or getattr(self, "lora_enabled", False):
            return False
        if getattr(self, "quantization_mode", None) is not None:
            return False
        if self.padding == "same":
            # Symmetric only when the stride is 1 and the kernel odd.
            return self.strides == (1, 1) and all(k % 2 for k in self.kernel_size)
        return self.padding == "valid"

    def call(self, inputs):
        if not self._fast_path(inputs):
            return super().call(inputs)
        import torch

        last = self.data_format == "channels_last"
        x = inputs.permute(0, 3, 1, 2) if last else inputs
        # (kh, kw, in, out) -> (out, in, kh, kw), a view.
        kernel = keras.ops.convert_to_tensor(self.kernel).permute(3, 2, 0, 1)
        bias = keras.ops.convert_to_tensor(self.bias) if self.use_bias else None
        pad = (0, 0) if self.padding == "valid" else tuple((k - 1) // 2 for k in self.kernel_size)
        y = torch.nn.functional.conv2d(x, kernel, bias, self.strides, pad)
        y = y.permute(0, 2, 3, 1) if last else y
        return self.activation(y) if self.activation is not None else y
