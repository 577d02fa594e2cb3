"""BatchNormalization through torch's fused kernel on the torch backend."""

import keras
from keras.src.backend.common.stateless_scope import in_stateless_scope

from keras_fmnist.layers.fast_path import is_torch_float32


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FastBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by torch's fused batch-norm kernel.

    Same weights, config and semantics as the Keras layer (batch statistics with the biased
    variance when training, moving averages `moving = m * moving + (1 - m) * batch`,
    otherwise the moving statistics). Keras' generic layer normalises with about ten separate
    elementwise/reduction ops whose backward autograd then replays op by op; on the torch
    backend this layer calls `torch.native_batch_norm` (one kernel forward, one backward),
    which is where most of the gap to plain PyTorch was. Other backends, masks, renorm,
    non-4D or non-float32 inputs use `BatchNormalization.call` unchanged.
    """

    def _fast_axis(self, inputs):
        if not is_torch_float32(inputs) or len(inputs.shape) != 4:
            return None
        if self.renorm or self.synchronized:
            return None
        axis = self.axis % 4
        return axis if axis in (1, 3) else None

    def call(self, inputs, training=None, mask=None):
        axis = None if mask is not None else self._fast_axis(inputs)
        if axis is None:
            return super().call(inputs, training=training, mask=mask)
        import torch

        x = inputs.permute(0, 3, 1, 2) if axis == 3 else inputs
        # `.value`: the tensor `convert_to_tensor` would return, without its dtype/device checks.
        gamma = self.gamma.value if self.scale else None
        beta = self.beta.value if self.center else None
        if training and self.trainable:
            # Running statistics are updated below, Keras' way (biased variance), not
            # torch's (unbiased), so the kernel gets none.
            y, mean, invstd = torch.native_batch_norm(
                x, gamma, beta, None, None, True, 0.0, self.epsilon
            )
            with torch.no_grad():
                variance = invstd.pow(-2).sub_(self.epsilon)
                m = self.momentum
                if in_stateless_scope():  # the new values must go through the scope
                    moving_mean = keras.ops.convert_to_tensor(self.moving_mean)
                    moving_variance = keras.ops.convert_to_tensor(self.moving_variance)
                    self.moving_mean.assign(moving_mean * m + mean * (1.0 - m))
                    self.moving_variance.assign(moving_variance * m + variance * (1.0 - m))
                else:
                    # In place (Keras' assign machinery cost more than the kernel itself):
                    # lerp_(new, 1 - m) is m * moving + (1 - m) * new in one kernel.
                    self.moving_mean.value.lerp_(mean, 1.0 - m)
                    self.moving_variance.value.lerp_(variance, 1.0 - m)
        else:
            y = torch.nn.functional.batch_norm(
                x,
                self.moving_mean.value,
                self.moving_variance.value,
                gamma,
                beta,
                False,
                0.0,
                self.epsilon,
            )
        return y.permute(0, 2, 3, 1) if axis == 3 else y
