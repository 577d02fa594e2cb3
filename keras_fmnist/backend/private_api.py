"""Every private Keras and torch API keras_fmnist uses, in one place, pinned.

The augmentation layers, the DropBlock schedule, `keras_fmnist.accelerate` and the fused
Adam update need a few things neither library offers publicly. Each is wrapped here, named, and written for the versions in
`WRITTEN_FOR`; `check_versions()` says whether the running versions are those.
`keras_fmnist.accelerate` refuses to accelerate (with a warning that says why) on other
versions instead of guessing, and the tests assert, on the pinned versions, that every fast
path is taken.

The touch points (`PRIVATE_TOUCH_POINTS` lists them with why each is needed):

- `BaseImagePreprocessingLayer`: the base of Keras' own image augmentation layers (tf.data
  support, dict inputs, per-batch random transformations), which the study's augmentation
  layers extend; Keras does not export it.
- `Layer._flatten_layers`: every layer inside a model, including layers held as attributes
  of custom layers (which `model.layers` does not list); the DropBlock schedule needs them.

- `Function._nodes_by_depth`: a functional model's nodes with their argument tensors, in
  the order `Functional.call` runs them. Keras has no public graph-walking API.
- `SwapEMAWeights._ema_weights_in_model`: which weights (averaged or raw) the model holds;
  a resumed training (`keras_fmnist.resume`) restores it.
- `Functional._standardize_inputs`: the cast and rank adjustment a functional model applies
  to its inputs, so that `accelerate` runs the plan on exactly what the stock model would
  (integer or float64 images, images without their channel axis).
- `keras.src.backend.common.stateless_scope.in_stateless_scope`: the fused batch norm
  updates its moving statistics in place, which is only right outside a stateless scope.
- torch's global forward-hook dicts and a module's own ones: a direct graph walk skips
  `Layer.__call__`, so a hook a user registered would silently not fire; the walk steps
  aside when any is registered.
- Adam's `_backend_update_step`, `_momentums`, `_velocities`, `_get_variable_index`, and
  `torch._fused_adam_`: the fused update of Keras' Adam (see `fuse_adam`); on torch Keras
  swaps in an Adam class of its private `keras.src.backend.torch.optimizers` module, which
  `is_keras_adam` recognises by its module path.
- `torch.native_batch_norm` and `torch.ops.aten.native_batch_norm_backward`: the ATen
  batch-norm kernels, which return the batch mean and inverse standard deviation they
  computed (the public `batch_norm` does not) and take them back in the backward pass; the
  accelerated batch norm (`keras_fmnist.accelerate.batch_norm`) centres their inputs first;
  `torch.ops.aten.threshold_backward`, a ReLU's backward, for batch norm + ReLU as one op.
"""

import functools

import keras
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

WRITTEN_FOR = {
    # package: (lowest, highest) major.minor releases the touch points were checked against.
    "keras": ((3, 15), (3, 15)),
    "torch": ((2, 11), (2, 14)),
}

PRIVATE_TOUCH_POINTS = {
    "keras BaseImagePreprocessingLayer": "base class of the augmentation layers, as of "
    "Keras' own (not exported)",
    "keras Layer._flatten_layers": "all layers of a model, nested ones included, for the "
    "DropBlock schedule",
    "keras Function._nodes_by_depth": "the graph walk: nodes with their arguments in "
    "execution order (no public graph API)",
    "keras Functional._standardize_inputs": "accelerate takes inputs exactly as the stock "
    "model does (cast to the Input's dtype, a missing channel axis added)",
    "keras SwapEMAWeights._ema_weights_in_model": "a resumed training restores which weights "
    "(averaged or raw) the model held when its checkpoint was taken",
    "keras in_stateless_scope": "fused batch norm updates moving statistics in place only "
    "outside a stateless scope",
    "torch.nn.modules.module._global_forward_hooks (and _pre_hooks), Module._forward_hooks "
    "(and _forward_pre_hooks)": "the graph walk steps aside when a user registered a global "
    "or per-layer hook, so hooks always fire",
    "keras Adam._backend_update_step / _momentums / _velocities / _get_variable_index": "the "
    "fused Adam update replaces Keras' per-step update and reads its moment variables",
    "torch._fused_adam_": "one fused kernel for the whole Adam update (torch.optim uses it "
    "for fused=True, but only on its own parameter groups)",
    "keras.src.backend.torch.optimizers.torch_adam (module path)": "Keras' torch Adam class, "
    "not exported; recognised so that a compiled Adam is fused",
    "torch.native_batch_norm": "batch norm returning the batch statistics it computed (the "
    "public batch_norm does not), for Keras' moving-statistics update without a second pass",
    "torch.ops.aten.native_batch_norm_backward": "the fused backward kernel, fed centred "
    "gradients by the accelerated batch norm (the public API has no backward to call)",
    "torch.ops.aten.threshold_backward": "a ReLU's backward in one pass, for batch norm + "
    "ReLU as one op",
}


def _release(version):
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@functools.cache
def check_versions():
    """None if the running keras and torch are the releases the touch points were written
    for, else one sentence saying which is not."""
    import torch

    running = {"keras": keras.__version__, "torch": torch.__version__}
    for package, (low, high) in WRITTEN_FOR.items():
        release = _release(running[package])
        if not low <= release <= high:
            span = ".".join(map(str, low)) + "-" + ".".join(map(str, high))
            return (
                f"{package} {running[package]} is outside the releases keras_fmnist's "
                f"torch fast paths were written for ({span})"
            )
    return None


def all_layers(model):
    """Every layer inside `model` (not the model itself), nested ones included."""
    return list(model._flatten_layers(include_self=False))


def is_functional(model):
    """True for a functional model (one `functional_nodes` can walk)."""
    return hasattr(model, "_nodes_by_depth")


def functional_nodes(model):
    """The (non-input) nodes of a functional model in execution order.

    Each node has `.operation` (the layer), `.arguments.args` / `.arguments.kwargs`
    (the KerasTensors it was called on) and `.outputs`.
    """
    nodes = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        nodes.extend(n for n in model._nodes_by_depth[depth] if not n.is_input)
    return nodes


def standardize_functional_inputs(model, inputs):
    """What `Functional.call` does to its inputs before running the graph: a flat list of
    tensors, one per model input, cast to that input's dtype, with a missing trailing axis
    of size 1 added (or an extra one removed). Raises ValueError where they do not fit."""
    return model._standardize_inputs(inputs)


def ema_weights_in_model(callback):
    """Whether a `keras.callbacks.SwapEMAWeights` holds the averaged weights in the model."""
    return bool(callback._ema_weights_in_model)


def set_ema_weights_in_model(callback, value):
    callback._ema_weights_in_model = bool(value)


def in_stateless_scope():
    from keras.src.backend.common.stateless_scope import in_stateless_scope as active

    return active()


def global_forward_hooks_registered():
    """True if a global torch forward (pre-)hook is registered."""
    import torch.nn.modules.module as module

    return bool(module._global_forward_hooks or module._global_forward_pre_hooks)


def layer_hooks_registered(layers):
    return any(layer._forward_hooks or layer._forward_pre_hooks for layer in layers)


def native_batch_norm(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """`torch.native_batch_norm`: (output, batch mean, batch inverse std) on the CPU and CUDA."""
    import torch

    return torch.native_batch_norm(x, weight, bias, running_mean, running_var, training,
                                   momentum, eps)


def threshold_backward(dy, output, threshold):
    """`aten::threshold_backward`: dy where output > threshold, else 0, in one pass (a
    ReLU's backward, given its output)."""
    import torch

    return torch.ops.aten.threshold_backward(dy, output, threshold)


def native_batch_norm_backward(dy, x, weight, save_mean, save_invstd, eps, output_mask):
    """`aten::native_batch_norm_backward` in training mode: (dx, dweight, dbias), each None
    where `output_mask` says it is not needed."""
    import torch

    return torch.ops.aten.native_batch_norm_backward(
        dy, x, weight, None, None, save_mean, save_invstd, True, eps, list(output_mask)
    )


# --- Adam, fused ---------------------------------------------------------------------------


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


def is_keras_adam(optimizer):
    """True for an instance of Keras' own Adam (on torch, Keras swaps in its torch Adam)."""
    return type(optimizer) is keras.optimizers.Adam or (
        keras.backend.backend() == "torch"
        and type(optimizer).__name__ == "Adam"
        and type(optimizer).__module__ == "keras.src.backend.torch.optimizers.torch_adam"
    )


def fuse_adam(optimizer):
    """Routes a Keras `Adam`'s update through `torch._fused_adam_`; returns its counts.

    The update stays Keras' (Kingma & Ba 2015, with Keras' "epsilon hat" placement):

        m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2
        w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    The kernel gets Keras' step size as a device tensor (no host sync) and its own bias
    corrections switched off by a step count so large that b^t == 0; its update
    m / (sqrt(v) + eps) is then Keras' own. Moments are given their weight's memory layout
    (once) so the kernel walks both in the same order without copies. Where it cannot run
    (amsgrad; non-float32 weights; a stateless scope whose tensors are laid out unlike
    their weights) the step is Keras' own torch Adam update, the one
    `keras.optimizers.Adam` runs, and the counts say so. The optimizer object stays a Keras
    `Adam` (its config, saving and loading are unchanged).
    """
    if keras.backend.backend() != "torch":
        raise ValueError("fuse_adam is for the torch backend")
    if not is_keras_adam(optimizer):
        raise TypeError(f"fuse_adam needs a keras.optimizers.Adam; got {type(optimizer)}")
    unsupported = check_versions()
    if unsupported:
        raise RuntimeError(f"fuse_adam: {unsupported}")
    counts = optimizer.__dict__.get("_keras_fmnist_fused_counts")
    if counts is not None:
        return counts
    counts = FusedAdamCounts()
    keras_update = optimizer._backend_update_step

    def update(grads, trainable_variables, learning_rate):
        reason = _fused_adam_step(optimizer, grads, trainable_variables, learning_rate)
        if reason is None:
            counts.fused += 1
        else:
            counts.took_keras(reason)
            keras_update(grads, trainable_variables, learning_rate)

    # Instance attributes in __dict__: Keras' attribute tracking has nothing to track here.
    optimizer.__dict__["_backend_update_step"] = update
    optimizer.__dict__["_keras_fmnist_fused_counts"] = counts
    return counts


def fused_adam_counts(optimizer):
    """The optimizer's `FusedAdamCounts`, or None if `fuse_adam` was not applied."""
    return optimizer.__dict__.get("_keras_fmnist_fused_counts")


def why_adam_not_fused(optimizer, trainable_variables):
    """None if the fused kernel can run this Adam's update on these weights, else why not
    (a stateless scope may still send a step to Keras' update; the counts say so)."""
    if optimizer.amsgrad:
        return "amsgrad"
    if any(v.dtype != "float32" for v in trainable_variables):
        return "non-float32 weights"
    return None


def _fused_adam_step(optimizer, grads, trainable_variables, learning_rate):
    """Runs the fused update; returns None, or why Keras' update must run instead."""
    import torch

    reason = why_adam_not_fused(optimizer, trainable_variables)
    if reason is not None:
        return reason
    with torch.no_grad():
        params = [v.value for v in trainable_variables]
        indices = [optimizer._get_variable_index(v) for v in trainable_variables]
        moments = [optimizer._momentums[i] for i in indices]
        velocities = [optimizer._velocities[i] for i in indices]
        stateless = in_stateless_scope()
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
        torch._fused_adam_(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            [],
            [no_bias_correction] * len(params),
            lr=step_size,
            beta1=optimizer.beta_1,
            beta2=optimizer.beta_2,
            weight_decay=0.0,
            eps=optimizer.epsilon,
            amsgrad=False,
            maximize=False,
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
