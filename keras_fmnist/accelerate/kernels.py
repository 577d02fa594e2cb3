"""The torch computations `accelerate`'s steps run, each a `run(x, training)` closure over
its Keras layer: the layer's own variables are read at call time, so training the stock
model trains these."""

import keras

from keras_fmnist.accelerate.batch_norm import batch_norm_training
from keras_fmnist.backend import private_api


def store_kernel_channels_last(layer):
    """Lays the (kh, kw, in, out) kernel out in memory as torch's channels-last weight
    (out, kh, kw, in): same values at the same indices. In Keras' layout
    `kernel.permute(3, 2, 0, 1)` is in no memory format torch knows, so its convolution
    would copy the kernel (and its gradient) on every call."""
    value = layer.kernel.value
    data = value.data
    if not data.permute(3, 0, 1, 2).is_contiguous():
        value.data = data.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)


def conv2d(layer, padding):
    """`Conv2D.call` as one `torch.nn.functional.conv2d` with symmetric `padding`."""
    import torch

    conv = torch.nn.functional.conv2d
    strides = tuple(layer.strides)
    last = layer.data_format == "channels_last"
    activation = layer.activation
    if activation is keras.activations.linear:
        activation = None

    def run(x, training):
        if last:
            x = x.permute(0, 3, 1, 2)
        bias = layer.bias.value if layer.use_bias else None
        y = conv(x, layer.kernel.value.permute(3, 2, 0, 1), bias, strides, padding)
        if last:
            y = y.permute(0, 2, 3, 1)
        return activation(y) if activation is not None else y

    return run


def max_pool2d(layer, padding):
    """`MaxPooling2D.call` as torch's `max_pool2d`, padding (-inf) folded in."""
    import torch

    pool = torch.nn.functional.max_pool2d
    size, strides = tuple(layer.pool_size), tuple(layer.strides)
    last = layer.data_format == "channels_last"

    def run(x, training):
        if last:
            x = x.permute(0, 3, 1, 2)
        y = pool(x, size, strides, padding)
        return y.permute(0, 2, 3, 1) if last else y

    return run


def batch_norm(layer, relu=False):
    """`BatchNormalization.call` (then a ReLU, with `relu`) through torch's batch-norm
    kernels, moving statistics updated Keras' way: biased variance,
    moving = momentum * moving + (1 - momentum) * batch."""
    import torch

    channels_last = layer.axis % 4 == 3

    def run(x, training):
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        gamma = layer.gamma.value if layer.scale else None
        beta = layer.beta.value if layer.center else None
        if training and layer.trainable:
            y, mean, invstd = batch_norm_training(x, gamma, beta, layer.epsilon, relu)
            with torch.no_grad():
                variance = invstd.pow(-2).sub_(layer.epsilon)
                _update_moving_statistics(layer, mean, variance)
        else:
            y = torch.nn.functional.batch_norm(
                x, layer.moving_mean.value, layer.moving_variance.value, gamma, beta,
                False, 0.0, layer.epsilon,
            )
            if relu:
                y = y.relu_()
        return y.permute(0, 2, 3, 1) if channels_last else y

    return run


def _update_moving_statistics(layer, mean, variance):
    m = layer.momentum
    if private_api.in_stateless_scope():  # new values go through the scope
        moving_mean = keras.ops.convert_to_tensor(layer.moving_mean)
        moving_variance = keras.ops.convert_to_tensor(layer.moving_variance)
        layer.moving_mean.assign(moving_mean * m + mean * (1.0 - m))
        layer.moving_variance.assign(moving_variance * m + variance * (1.0 - m))
    else:
        # lerp_(new, 1 - m) is m * moving + (1 - m) * new, in place.
        layer.moving_mean.value.lerp_(mean, 1.0 - m)
        layer.moving_variance.value.lerp_(variance, 1.0 - m)


def relu(x, training):
    return x.relu()


def relu_in_place(x, training):
    return x.relu_()


def add(xs, training):
    total = xs[0] + xs[1]
    for x in xs[2:]:
        total = total + x
    return total


def add_into(index):
    """An Add that accumulates into its input `index` and returns it."""

    def run(xs, training):
        target = xs[index]
        for i, x in enumerate(xs):
            if i != index:
                target.add_(x)
        return target

    return run
