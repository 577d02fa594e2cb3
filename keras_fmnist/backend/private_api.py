"""Every private Keras and torch API keras_fmnist uses, in one place, pinned.

The augmentation layers, the DropBlock schedule, `keras_fmnist.accelerate`, the fused Adam
(`keras_fmnist.optimizers`) and the mid-run resume need a few things neither library offers
publicly. Each is a short wrapper here, listed in `PRIVATE_TOUCH_POINTS` with why it is needed,
and written for the releases in `WRITTEN_FOR`; `check_versions()` says whether the running
ones are those. The torch fast paths refuse other releases (or step aside, saying so) instead
of guessing, and the tests assert, on the pinned releases, that every fast path is taken.
"""

import contextlib
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
    "Keras' own (not exported); with its _get_seed_generator(backend) and backend._backend, "
    "the seed generator for eager or tf.data use, as Keras' own layers call them",
    "keras Layer._build_at_init": "a weightless layer (StochasticDepth) built in its "
    "constructor, as Keras' Dropout",
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
    "keras Adam._momentums / _velocities / _get_variable_index": "the fused Adam update "
    "reads and writes Adam's moment variables",
    "torch._fused_adam_": "one fused kernel for the whole Adam update (torch.optim uses it "
    "for fused=True, but only on its own parameter groups)",
    "keras.src.backend.torch.optimizers.torch_adam.Adam": "Keras' torch Adam (not exported): "
    "recognised so that accelerate can fuse a compiled Adam; its parallel update is "
    "FusedAdam's fallback; saved under its public name (Keras 3.15 writes its private module "
    "path, which imports torch wherever the file is loaded)",
    "keras.src.api_export.REGISTERED_OBJS_TO_NAMES": "FusedAdam serialises as "
    "keras.optimizers.Adam; in keras_fmnist's own saves, so do Keras' torch optimizer "
    "classes (keras.src.backend.torch.optimizers.torch_*), whose private module path Keras "
    "3.15 writes into the file",
    "torch.native_batch_norm": "batch norm returning the batch statistics it computed (the "
    "public batch_norm does not), for Keras' moving-statistics update without a second pass",
    "torch.ops.aten.native_batch_norm_backward": "the fused backward kernel, fed centred "
    "gradients by the accelerated batch norm (the public API has no backward to call)",
    "torch.ops.aten.threshold_backward": "a ReLU's backward in one pass, for batch norm + "
    "ReLU as one op",
    "torch.utils._python_dispatch.TorchDispatchMode": "sees every aten op a training step "
    "runs, for the host-sync census (keras_fmnist.bench.host_syncs); torch has no public "
    "op-level hook",
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


def build_at_init(layer):
    """Marks a weightless layer built in its constructor, as Keras' own Dropout does
    (`Layer._build_at_init` since Keras 3.10; `built = True` before)."""
    if hasattr(layer, "_build_at_init"):
        layer._build_at_init()
    else:
        layer.built = True


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


# --- Adam ---------------------------------------------------------------------------------


def keras_torch_adam_class():
    """Keras' own Adam class on torch (what `keras.optimizers.Adam(...)` constructs there)."""
    from keras.src.backend.torch.optimizers.torch_adam import Adam

    return Adam


def is_keras_adam(optimizer):
    """True for an instance of Keras' own Adam (on torch, Keras swaps in its torch Adam)."""
    if type(optimizer) is keras.optimizers.Adam:
        return True
    return keras.backend.backend() == "torch" and type(optimizer) is keras_torch_adam_class()


def adam_moments(optimizer, variables):
    """(first moments, second moments) of Adam for `variables`, as Keras variables."""
    indices = [optimizer._get_variable_index(v) for v in variables]
    return ([optimizer._momentums[i] for i in indices],
            [optimizer._velocities[i] for i in indices])


def keras_torch_adam_update(optimizer, grads, variables, learning_rate):
    """Keras' own torch Adam update (its foreach implementation) on any Adam instance."""
    import torch

    with torch.no_grad():
        keras_torch_adam_class()._parallel_update_step(optimizer, grads, variables,
                                                       learning_rate)


def fused_adam_kernel(params, grads, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps):
    """`torch._fused_adam_` without weight decay, amsgrad or maximize."""
    import torch

    torch._fused_adam_(params, grads, exp_avgs, exp_avg_sqs, [], steps, lr=lr, beta1=beta1,
                       beta2=beta2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)


def save_as_public_class(cls, public_name):
    """Makes Keras serialise instances of `cls` as the public class `public_name` (loading
    them then needs no keras_fmnist); loading `public_name` still gives Keras' own class."""
    from keras.src import api_export

    api_export.REGISTERED_OBJS_TO_NAMES[cls] = public_name


# Keras' torch optimizer classes: keras.optimizers.<name> is torch_<name lower>.<name> there.
_KERAS_TORCH_OPTIMIZERS = ("Adadelta", "Adagrad", "Adam", "Adamax", "AdamW", "Lion", "Nadam",
                           "RMSprop", "SGD")


@contextlib.contextmanager
def keras_torch_optimizers_saved_as_public():
    """Within the block, Keras' torch optimizer classes serialise under their public names
    (`keras.optimizers.Adam`, ...), not their private torch module paths."""
    import importlib

    from keras.src import api_export

    if keras.backend.backend() != "torch":
        yield
        return
    registry = api_export.REGISTERED_OBJS_TO_NAMES
    saved = {}
    for name in _KERAS_TORCH_OPTIMIZERS:
        module = importlib.import_module(
            f"keras.src.backend.torch.optimizers.torch_{name.lower()}")
        cls = getattr(module, name)
        saved[cls] = registry.get(cls)
        registry[cls] = f"keras.optimizers.{name}"
    try:
        yield
    finally:
        for cls, before in saved.items():
            if before is None:
                registry.pop(cls, None)
            else:
                registry[cls] = before


def torch_dispatch_mode_class():
    """torch's `TorchDispatchMode`: a context whose `__torch_dispatch__(func, types, args,
    kwargs)` is called for every aten op run inside it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    return TorchDispatchMode
