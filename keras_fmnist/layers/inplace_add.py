"""Add that accumulates into its first input on the torch backend, as torchvision's
`out += identity`."""

import keras

from keras_fmnist.layers.fast_path import is_torch_float32


@keras.saving.register_keras_serializable(package="keras_fmnist")
class InplaceAdd(keras.layers.Add):
    """`keras.layers.Add` that adds the other inputs into the first one on torch.

    torchvision's BasicBlock ends with `out += identity`: the residual sum is written into
    the branch's output instead of a freshly allocated feature map (whose page faults cost
    more than the addition on a CPU). Like `InplaceReLU`, this is only for places where
    nothing else reads the first input: the model builder uses it on the residual branch's
    last output. Autograd still checks the backward pass: an input saved for a gradient
    raises an error rather than giving a wrong one.

    Only float32 torch tensors of one shape (no broadcasting) are added in place; anything
    else, and every other backend, is `Add.call`.

    Example:

    >>> a = keras.ops.ones((2, 3))
    >>> keras.ops.convert_to_numpy(InplaceAdd()([a, a]))[0]
    array([2., 2., 2.], dtype=float32)
    """

    def call(self, inputs):
        first, *others = inputs
        if is_torch_float32(first) and all(
            is_torch_float32(x) and x.shape == first.shape for x in others
        ):
            for x in others:
                first.add_(x)
            return first
        return super().call(inputs)
