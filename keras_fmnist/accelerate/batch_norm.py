"""Training-mode batch norm for `accelerate` on torch: ATen's fused kernels, backward centred.

torch's CPU batch-norm kernels for channels-last memory (the layout `accelerate`'s
convolutions produce) reduce each channel's N*H*W values with one float32 accumulator per
thread and lane, added to row after row. The rounding error of such a sum grows with the
magnitude of its terms, not of its result. In the backward pass that is what hurts: the
gradient dy reaching a batch norm is, per channel, mostly one constant (a global average pool
spreads each logit's gradient evenly over the map), so the kernel's sum(dy) and
sum(dy * (x - mean)) are small results of large terms, and dx inherits their error. Measured
against a float64 reference, that made the accelerated gradients up to a thousand times less
accurate than the stock Keras graph's (`python -m keras_fmnist.bench.batch_norm` measures
this op and its alternatives, for accuracy and speed; benchmarks/results/ has the numbers
behind the choice below).

The backward pass of batch norm (Ioffe & Szegedy 2015), with xhat = (x - mean) * invstd
and n = N*H*W per channel:

    dbeta  = sum(dy)
    dgamma = sum(dy * xhat)
    dx     = gamma * invstd * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n)

dx and dgamma do not change when a per-channel constant is subtracted from dy (sum(xhat) =
0), and dx sums to zero per channel. So `batch_norm_training`'s backward

1. takes sum(dy) with torch's pairwise `sum` (dbeta, exact to float32 rounding),
2. hands the kernel dy - sum(dy) / n, whose sums are now small terms around zero,
3. subtracts from dx its own channel mean (pairwise again), which the kernel's remaining
   rounding left slightly off zero; a convolution's weight gradient sums dx against its
   input and would pick that offset up n times over.

The forward pass is the kernel's own, with one addition: the batch mean it returns (for the
moving average) is summed pairwise, one more read of x. The kernel's mean is off by up to
~10x the stock graph's error at batch 128; its variance, and the output, stay within a few
times of it (measured, same benchmark). Exact forward statistics would take two more passes
over the activations, each about one percent of a training step on a 2-core CPU.
"""

from keras_fmnist.backend import private_api


def _channel_mean(t):
    """Per-channel mean of an (N, C, H, W) tensor as (1, C, 1, 1), by pairwise summation."""
    return t.sum((0, 2, 3)).div_(t.numel() // t.shape[1]).view(1, -1, 1, 1)


def _function():
    import torch

    class BatchNormTraining(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, epsilon, relu):
            y, kernel_mean, invstd = private_api.native_batch_norm(
                x, gamma, beta, None, None, True, 0.0, epsilon
            )
            if relu:
                y = y.relu_()
            ctx.save_for_backward(x, gamma, kernel_mean, invstd, y if relu else None)
            ctx.epsilon = epsilon
            mean = _channel_mean(x).view(-1)
            ctx.mark_non_differentiable(mean, invstd)
            return y, mean, invstd

        @staticmethod
        def backward(ctx, dy, _dmean, _dinvstd):
            x, gamma, mean, invstd, relu_output = ctx.saved_tensors
            need_x, need_gamma, need_beta = ctx.needs_input_grad[:3]
            if relu_output is not None:
                # The masked gradient is a new tensor of this op's own: centred in place.
                dy = private_api.threshold_backward(dy, relu_output, 0.0)
            dy_sum = dy.sum((0, 2, 3))
            dy_mean = dy_sum.div(dy.numel() // dy.shape[1]).view(1, -1, 1, 1)
            dy_centred = dy.sub_(dy_mean) if relu_output is not None else dy - dy_mean
            dx, dgamma, _ = private_api.native_batch_norm_backward(
                dy_centred, x, gamma, mean, invstd, ctx.epsilon, (need_x, need_gamma, False)
            )
            if dx is not None:
                dx = dx.sub_(_channel_mean(dx))
            return dx, dgamma, dy_sum if need_beta else None, None, None

    return BatchNormTraining


_FUNCTION = []


def batch_norm_training(x, gamma, beta, epsilon, relu=False):
    """Training-mode batch norm of an (N, C, H, W) torch tensor, any memory layout.

    Args:
        x: float tensor (N, C, H, W), normalised per channel over (N, H, W).
        gamma, beta: (C,) tensors, or None for no scale / no offset.
        epsilon: added to the variance.
        relu: apply a ReLU to the output, in place (one op: its backward masks the
            gradient into a tensor it then centres in place, one allocation less).

    Returns:
        (y, batch mean, batch inverse standard deviation) with the biased variance, for
        Keras' moving statistics; y in x's memory layout, differentiable in x, gamma and
        beta (the statistics are not).
    """
    if not _FUNCTION:
        _FUNCTION.append(_function())
    return _FUNCTION[0].apply(x, gamma, beta, epsilon, relu)
