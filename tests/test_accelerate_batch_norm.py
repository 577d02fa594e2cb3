"""The accelerated training-mode batch norm op (`keras_fmnist.accelerate.batch_norm`) against
float64: its backward pass and batch mean as accurate as the stock Keras graph's batch norm,
on channels-last activations with a gradient that is mostly a per-channel constant (what a
ResNet's global average pool hands back), where torch's channels-last kernels alone lose
precision. The forward output is the kernel's own; the model-level test in
test_accelerate.py bounds it with everything else."""

import numpy as np
import pytest

import keras

from helpers import assert_within
from helpers import numerics
from helpers import relative_error
from helpers import torch_only

pytestmark = [torch_only, numerics]


def _stock_formula(x, gamma, beta, epsilon):
    mean, variance = keras.ops.moments(x, axes=(0, 2, 3))
    y = keras.ops.batch_normalization(x, mean, variance, 1, beta, gamma, epsilon)
    return y, mean


def _run(op, arrays, dtype, relu=False):
    import torch

    x, gamma, beta, dy = arrays
    leaves = [torch.tensor(a, dtype=dtype) for a in (x, gamma, beta)]
    leaves[0] = leaves[0].contiguous(memory_format=torch.channels_last)
    for leaf in leaves:
        leaf.requires_grad_()
    y, mean = op(*leaves, 1e-5)[:2]
    if relu and op is _stock_formula:
        y = y.relu()
    y.backward(torch.tensor(dy, dtype=dtype).contiguous(memory_format=torch.channels_last))
    return {"dx": leaves[0].grad, "dgamma": leaves[1].grad, "dbeta": leaves[2].grad,
            "mean": mean, "y": y}


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape, mean, std", [
    ((32, 16, 14, 14), 0.0, 1.0),
    ((32, 16, 14, 14), 2.0, 0.5),
    ((8, 16, 28, 28), 0.0, 1.0),
])
def test_backward_and_batch_mean_are_as_accurate_as_the_stock_graph(shape, mean, std, relu):
    import torch

    from keras_fmnist.accelerate.batch_norm import batch_norm_training

    rng = np.random.default_rng(0)
    channels = shape[1]
    arrays = (
        rng.normal(mean, std, shape),
        rng.uniform(0.5, 1.5, channels),
        rng.normal(0, 1, channels),
        rng.normal(0, 1, shape) + rng.normal(0, 10, (1, channels, 1, 1)),
    )

    def accelerated(x, gamma, beta, epsilon):
        return batch_norm_training(x, gamma, beta, epsilon, relu)

    truth = _run(_stock_formula, arrays, torch.float64, relu)
    stock = _run(_stock_formula, arrays, torch.float32, relu)
    fast = _run(accelerated, arrays, torch.float32, relu)
    for name in ("dx", "dgamma", "dbeta", "mean"):
        stock_error = relative_error(stock[name].detach(), truth[name].detach())
        fast_error = relative_error(fast[name].detach(), truth[name].detach())
        assert_within(fast_error, stock_error, 10, f"{shape} N({mean}, {std}) relu={relu} {name}")
    # The output is the kernel's: the same function to float32 rounding.
    np.testing.assert_allclose(fast["y"].detach().numpy(), truth["y"].detach().numpy(),
                               rtol=0, atol=1e-5 * float(truth["y"].detach().abs().max()))


def test_statistics_are_not_differentiable_and_unneeded_gradients_are_skipped():
    import torch

    from keras_fmnist.accelerate.batch_norm import batch_norm_training

    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    y, mean, invstd = batch_norm_training(x, None, None, 1e-5)
    assert not mean.requires_grad and not invstd.requires_grad
    y.sum().backward()
    assert x.grad.shape == x.shape
    np.testing.assert_allclose(mean.numpy(), x.detach().mean(dim=(0, 2, 3)).numpy(), rtol=1e-5)
