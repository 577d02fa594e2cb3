"""Optimizers: Keras' Adam with torch's fused update on the torch backend."""

import keras


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam`, updated by torch's fused multi-tensor kernel on torch.

    Same hyperparameters, state and update as Keras' Adam (Kingma & Ba 2015, with Keras'
    "epsilon hat" placement):

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    Keras' torch Adam runs this as about ten `torch._foreach_*` passes over all weights with
    five temporary copies (20-30 ms per step for this ResNet on one CPU core);
    `torch._fused_adam_` does it in one pass (2-3 ms). Its epsilon sits inside the bias
    correction, `sqrt(v) / sqrt(1 - b2^t) + eps'`, so it gets `eps' = eps / sqrt(1 - b2^t)`,
    which is the same update. Clipping, weight decay, EMA and gradient accumulation are the
    base class's and untouched. Other backends, amsgrad and non-float32 weights use
    `keras.optimizers.Adam` unchanged.
    """

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        # The fused kernel walks every tensor's memory in order, so each moment must lie in
        # memory as its weight does (FastConv2D kernels are not C-ordered).
        if keras.backend.backend() == "torch" and initializer == "zeros":
            initializer = _ZerosLike(reference_variable)
        return super().add_variable_from_reference(reference_variable, name, initializer)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() != "torch":
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        import torch  # only on the torch backend: jax-only installs have no torch

        if (
            self.amsgrad
            or not hasattr(torch, "_fused_adam_")
            or any(v.dtype != "float32" for v in trainable_variables)
        ):
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        params = [v.value for v in trainable_variables]
        indices = [self._get_variable_index(v) for v in trainable_variables]
        exp_avgs = [self._momentums[i].value for i in indices]
        exp_avg_sqs = [self._velocities[i].value for i in indices]
        grads = [g.to(p.dtype) for g, p in zip(grads, params)]
        groups = list(map(_in_one_memory_order, params, grads, exp_avgs, exp_avg_sqs))
        if any(group is None for group in groups):
            # Not one memory layout (state restored from elsewhere, say): the flat walk would
            # mix elements, so take Keras' elementwise path, which is layout-agnostic.
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        params, grads, exp_avgs, exp_avg_sqs = (list(t) for t in zip(*groups))
        # The kernel wants the 1-based step as a float tensor per weight, on its device.
        step = int(self.iterations.value.item()) + 1
        step_tensor = torch.full((), float(step), dtype=torch.float32, device=params[0].device)
        lr = float(keras.ops.convert_to_numpy(learning_rate))
        eps = self.epsilon / (1.0 - self.beta_2**step) ** 0.5
        torch._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            [step_tensor] * len(params),
            lr=lr,
            beta1=self.beta_1,
            beta2=self.beta_2,
            weight_decay=0.0,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )


class _ZerosLike:
    """Zeros shaped and laid out in memory like `reference`'s value (torch backend)."""

    def __init__(self, reference):
        self.reference = reference

    def __call__(self, shape, dtype=None):
        import torch

        value = self.reference.value
        if tuple(shape) != tuple(value.shape):
            return keras.ops.zeros(shape, dtype=dtype)
        dtype = getattr(torch, keras.backend.standardize_dtype(dtype)) if dtype else None
        return torch.zeros_like(
            value.detach(), dtype=dtype, memory_format=torch.preserve_format
        )


def _in_one_memory_order(*tensors):
    """The tensors, as views the fused kernel can walk without copying, or None.

    The kernel walks each tensor's memory in order, and makes a contiguous copy of any
    tensor that is not C-ordered (FastConv2D's channels-last kernels, their gradients and
    moments). Tensors that all lie in one memory order become 1-D views in that order: the
    same elements pair up, and the update lands in the originals. Tensors in different
    orders give None.
    """
    if all(t.is_contiguous() for t in tensors):  # the usual case, cheap
        return tensors
    first = tensors[0]
    order = sorted(range(first.dim()), key=first.stride, reverse=True)
    views = [t.permute(order) for t in tensors]
    if not all(v.is_contiguous() for v in views):
        return None
    return [v.view(-1) for v in views]
