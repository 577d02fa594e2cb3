"""ReLU that overwrites its input on the torch backend, as torchvision's ReLU(inplace=True)."""

import keras

from keras_fmnist.layers.fast_path import is_torch_float32


@keras.saving.register_keras_serializable(package="keras_fmnist")
class InplaceReLU(keras.layers.ReLU):
    """`keras.layers.ReLU` computed in place on the torch backend.

    torchvision's ResNet applies `ReLU(inplace=True)` to the outputs of batch norm and of the
    residual addition; an out-of-place ReLU allocates a fresh feature map each time, and on
    the CPU the page faults of that new memory cost ten times the ReLU itself. This layer
    overwrites its input instead, so it is only for places where nothing else reads that
    input (the model builder uses it right after a BatchNormalization, DropBlock or Add
    whose output has no other consumer). Autograd still checks the backward pass: an
    input saved for a gradient raises an error rather than giving a wrong one.

    Only the plain ReLU (no `max_value`, `negative_slope` or `threshold`) on float32 torch
    tensors runs in place; everything else, and every other backend, is `ReLU.call`.

    Example:

    >>> x = keras.ops.convert_to_tensor([[-1.0, 2.0]])
    >>> keras.ops.convert_to_numpy(InplaceReLU()(x))
    array([[0., 2.]], dtype=float32)
    """

    def call(self, inputs):
        plain = self.max_value is None and not self.negative_slope and not self.threshold
        if plain and is_torch_float32(inputs):
            return inputs.relu_()
        return super().call(inputs)
