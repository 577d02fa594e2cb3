"""A functional Keras model whose eager torch forward skips Keras' per-layer call machinery."""

import inspect

import keras


class _GraphPlan:
    """The model's layer calls in execution order, with slots for the tensors between them.

    Built once from the functional graph (Keras' own `_nodes_by_depth`, the order
    `Functional.call` runs it in). Only plain graphs are planned: every node is a built
    layer (not a nested model) called on one tensor or on one list of tensors, with constant
    keyword arguments only (Keras records `mask=None`), one output, float32 compute, no
    activity regulariser, and inputs produced by earlier nodes. Anything else makes `plan()`
    return None and the model runs Keras' own `Functional.call`.
    """

    def __init__(self, steps, input_slots, output_slots, layers):
        self.steps = steps
        self.input_slots = input_slots
        self.output_slots = output_slots
        self.layers = layers

    @classmethod
    def plan(cls, model):
        slots = {}

        def slot(tensor):
            return slots.setdefault(id(tensor), len(slots))

        input_slots = [slot(t) for t in model.inputs]
        produced = set(input_slots)
        steps, layers = [], []
        for depth in sorted(model._nodes_by_depth, reverse=True):
            for node in model._nodes_by_depth[depth]:
                if node.is_input:
                    continue
                layer = node.operation
                if not _plannable_layer(layer):
                    return None
                args, kwargs = node.arguments.args, dict(node.arguments.kwargs)
                if len(args) != 1 or len(node.outputs) != 1:
                    return None
                if any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(kwargs)):
                    return None  # only constant keyword arguments (Keras records mask=None)
                (arg,) = args
                if isinstance(arg, keras.KerasTensor):
                    in_slots, as_list = [slot(arg)], False
                elif isinstance(arg, (list, tuple)) and all(
                    isinstance(a, keras.KerasTensor) for a in arg
                ):
                    in_slots, as_list = [slot(a) for a in arg], True
                else:
                    return None
                if not produced.issuperset(in_slots):
                    return None  # a node Functional.call would skip as not computable
                produced.add(slot(node.outputs[0]))
                takes_training = "training" in inspect.signature(layer.call).parameters
                steps.append(
                    (layer.call, in_slots, as_list, kwargs, takes_training, slot(node.outputs[0]))
                )
                layers.append(layer)
        output_slots = [slot(t) for t in model.outputs]
        if not steps or not produced.issuperset(output_slots):
            return None
        return cls(steps, input_slots, output_slots, layers)

    def hooked(self):
        """True if a torch forward hook would see these layers' calls (then don't skip them)."""
        import torch.nn.modules.module as module

        if module._global_forward_hooks or module._global_forward_pre_hooks:
            return True
        return any(layer._forward_hooks or layer._forward_pre_hooks for layer in self.layers)

    def run(self, inputs, training):
        values = [None] * (1 + max(step[-1] for step in self.steps))
        for s, x in zip(self.input_slots, inputs):
            values[s] = x
        for call, in_slots, as_list, kwargs, takes_training, out_slot in self.steps:
            x = [values[s] for s in in_slots] if as_list else values[in_slots[0]]
            if takes_training and training is not None:
                # As Functional.call: the call's `training` overrides a recorded one.
                values[out_slot] = call(x, **{**kwargs, "training": training})
            else:
                values[out_slot] = call(x, **kwargs)
        outputs = [values[s] for s in self.output_slots]
        return outputs[0] if len(outputs) == 1 else outputs


def _plannable_layer(layer):
    return (
        isinstance(layer, keras.layers.Layer)
        and not isinstance(layer, keras.Model)
        and layer.built
        and layer.activity_regularizer is None
        and layer.dtype_policy.compute_dtype == "float32"
        and layer.dtype_policy.variable_dtype == "float32"
    )


@keras.saving.register_keras_serializable(package="keras_fmnist")
class FastFunctional(keras.Model):
    """A functional `keras.Model` (`FastFunctional(inputs, outputs)`) with a lean torch forward.

    Everything is Keras' functional model (config, saving, `get_layer`, `summary`, symbolic
    calls, other backends); only the eager forward on the torch backend differs: it calls
    each layer's `call` directly in graph order instead of through `Layer.__call__`, whose
    input conversion, tree walks, name scopes and call-context bookkeeping cost about
    0.15 ms per layer on a 2-core CPU (8.6 ms of a 128-image ResNet-18 training step,
    measured A/B while profiling; `python -m keras_fmnist.bench` shows the end result).

    What `Layer.__call__` would have done is either done once here or not needed by plain
    graphs: the layers are built, float32 in and out (no autocast), unmasked, without
    activity regularisers, and `training` reaches every layer whose `call` takes it. The
    direct path is taken only then, and only for float32 torch tensors with no mask and no
    torch forward hooks on the layers; otherwise `Functional.call` runs.
    """

    def call(self, inputs, training=None, mask=None, **kwargs):
        plan = self._direct_plan()
        if plan is not None and mask is None and not kwargs:
            # As Functional.call begins: numpy arrays become tensors of the inputs' dtype.
            flat = self._standardize_inputs(inputs)
            if _float32_torch_tensors(flat) and not plan.hooked():
                return plan.run(flat, training)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _direct_plan(self):
        if keras.backend.backend() != "torch":
            return None
        # Stored in a dict: Keras' attribute tracking would walk a plan's layer lists.
        cache = self.__dict__.setdefault("_keras_fmnist_plan", {})
        if "plan" not in cache:
            cache["plan"] = _GraphPlan.plan(self)
        return cache["plan"]


def _float32_torch_tensors(values):
    import torch

    return all(isinstance(x, torch.Tensor) and x.dtype == torch.float32 for x in values)
