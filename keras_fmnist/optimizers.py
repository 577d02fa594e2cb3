"""`FusedAdam`: Keras' Adam, its update run by torch's fused kernel on torch.

The update is Keras' (Kingma & Ba 2015, with Keras' "epsilon hat" placement):

    m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
    w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

On torch, `torch._fused_adam_` runs it for all weights in one kernel: it gets Keras' step
size as a device tensor (no host sync) and its own bias corrections switched off by a step
count so large that b^t == 0, so that its update m / (sqrt(v) + eps) is Keras' own. Moments
are given their weight's memory layout (once) so the kernel walks both in the same order
without copies. Where the kernel cannot run (amsgrad; non-float32 weights; a stateless scope
whose tensors are laid out unlike their weights) the step is Keras' own torch Adam update and
`counts` says why; on jax and tensorflow it is Keras' Adam.

A `FusedAdam` saves as `keras.optimizers.Adam` (same config), so a model compiled with it
loads with plain Keras on any backend.
"""

import keras

from keras_fmnist.backend import private_api


class FusedAdamCounts:
    """How often the fused update ran, and how often Keras' own update ran instead (why)."""

    def __init__(self):
        self.fused = 0
        self.keras = 0
        self.reasons = {}

    def took_keras(self, reason):
        self.keras += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def as_dict(self):
        return {"fused": self.fused, "keras": self.keras, "reasons": dict(self.reasons)}


class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` (same arguments, same update) with the update of all weights
    in one fused torch kernel on the torch backend.

    Attributes:
        counts: `FusedAdamCounts` of the steps that ran fused and those that ran Keras'
            update, with the reason.

    Example:

    >>> model.compile(optimizer=keras_fmnist.optimizers.FusedAdam(3e-4), loss="mse")
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["counts"] = FusedAdamCounts()  # not a tracked attribute

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        if keras.backend.backend() != "torch":
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        unsupported = private_api.check_versions()
        if unsupported:  # no private touch point on releases they were not written for
            self.counts.took_keras(unsupported)
            return super()._backend_update_step(grads, trainable_variables, learning_rate)
        reason = _fused_step(self, grads, trainable_variables, learning_rate)
        if reason is None:
            self.counts.fused += 1
        else:
            self.counts.took_keras(reason)
            private_api.keras_torch_adam_update(self, grads, trainable_variables, learning_rate)


def why_not_fused(optimizer, trainable_variables):
    """None if the fused kernel can run this Adam's update on these weights, else why not
    (a stateless scope may still send a step to Keras' update; the counts say so)."""
    if optimizer.amsgrad:
        return "amsgrad"
    if any(v.dtype != "float32" for v in trainable_variables):
        return "non-float32 weights"
    return None


def as_fused(optimizer):
    """Turns a Keras `Adam` into a `FusedAdam` in place (the same object, its state and
    configuration kept) and returns it; a `FusedAdam` is returned as is."""
    if isinstance(optimizer, FusedAdam):
        return optimizer
    if not private_api.is_keras_adam(optimizer):
        raise TypeError(f"as_fused needs a keras.optimizers.Adam; got {type(optimizer)}")
    optimizer.__class__ = FusedAdam
    optimizer.__dict__["counts"] = FusedAdamCounts()
    return optimizer


def _fused_step(optimizer, grads, trainable_variables, learning_rate):
    """Runs the fused update; returns None, or why Keras' update must run instead."""
    import torch

    reason = why_not_fused(optimizer, trainable_variables)
    if reason is not None:
        return reason
    with torch.no_grad():
        params = [v.value for v in trainable_variables]
        moments, velocities = private_api.adam_moments(optimizer, trainable_variables)
        stateless = private_api.in_stateless_scope()
        groups = []
        for p, g, m, v in zip(params, grads, moments, velocities):
            m_value, v_value = m.value, v.value
            if not stateless:
                m_value = _laid_out_like(m, p)
                v_value = _laid_out_like(v, p)
            g = g.to(p.dtype)
            if g.stride() != p.stride():  # autograd may hand back another layout
                g = torch.empty_like(p).copy_(g)
            group = _in_one_memory_order(p, g, m_value, v_value)
            if group is None:
                return "moments laid out unlike their weights in a stateless scope"
            groups.append(group)
        params, grads, exp_avgs, exp_avg_sqs = (list(t) for t in zip(*groups))
        t = keras.ops.cast(optimizer.iterations + 1, "float32")
        lr = keras.ops.cast(learning_rate, "float32")
        step_size = lr * keras.ops.sqrt(1.0 - optimizer.beta_2**t) / (
            1.0 - optimizer.beta_1**t
        )
        no_bias_correction = torch.full((), 2.0**40, device=params[0].device)
        private_api.fused_adam_kernel(
            params, grads, exp_avgs, exp_avg_sqs, [no_bias_correction] * len(params),
            lr=step_size, beta1=optimizer.beta_1, beta2=optimizer.beta_2,
            eps=optimizer.epsilon,
        )
    return None


def _laid_out_like(variable, reference):
    """The variable's tensor, re-laid out in memory like `reference` if it is not (values
    unchanged, the same torch Parameter object)."""
    import torch

    value = variable.value
    if value.stride() != reference.stride():
        value.data = torch.empty_like(reference, dtype=value.dtype).copy_(value.data)
    return value


def _in_one_memory_order(*tensors):
    """The tensors as views the fused kernel can walk without copying, or None.

    The kernel walks each tensor's memory in order and copies any tensor that is not
    C-ordered. Tensors that all lie in one memory order become 1-D views in that order: the
    same elements pair up and the update lands in the originals.
    """
    if all(t.is_contiguous() for t in tensors):
        return tensors
    first = tensors[0]
    order = sorted(range(first.dim()), key=first.stride, reverse=True)
    views = [t.permute(order) for t in tensors]
    if not all(v.is_contiguous() for v in views):
        return None
    return [v.view(-1) for v in views]


private_api.save_as_public_class(FusedAdam, "keras.optimizers.Adam")
