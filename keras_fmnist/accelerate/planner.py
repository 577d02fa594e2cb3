"""Planning: from a functional model to a `Plan` (see `keras_fmnist.accelerate`).

1. `GraphView`: the graph, read once, never changed;
2. `unplannable`: what a plan cannot express at all (the stock model then runs every call);
3. one `Lowering` per node from the registry in `lowerings.py`; absorbed nodes (a folded
   padding, a fused ReLU) drop out;
4. the in-place pass (`inplace.py`) over the finished list;
5. numbered slots for the tensors, and the `Plan`.
"""

import keras

from keras_fmnist.accelerate import inplace
from keras_fmnist.accelerate import lowerings
from keras_fmnist.accelerate.graph import GraphView
from keras_fmnist.accelerate.plan import Decision
from keras_fmnist.accelerate.plan import Plan
from keras_fmnist.accelerate.plan import Step


def plan_model(model):
    """(Plan, decisions), or (None, [why not]) where the model cannot be planned."""
    graph = GraphView(model)
    reason = unplannable(graph)
    if reason:
        return None, [Decision([model.name], "not accelerated", reason)]
    lowered = [(node, lowerings.lower(node, graph)) for node in graph.nodes]
    absorbed = {id(n) for _, lowering in lowered for n in lowering.absorbs}
    steps = [(node, lowering) for node, lowering in lowered if id(node) not in absorbed]
    slots = {}

    def slot(tensor):
        return slots.setdefault(id(tensor), len(slots))

    input_slots = [slot(t) for t in model.inputs]
    plan_steps, layers, decisions, preparations = [], [], [], []
    for node, lowering, run, decision in inplace.choose(steps, graph):
        in_slots = [slot(t) for t in lowering.inputs]
        plan_steps.append(Step(run, in_slots, lowering.as_list, slot(lowering.output_tensor(node))))
        layers.extend(n.operation for n in (node, *lowering.absorbs))
        decisions.append(decision)
        if lowering.preparation is not None:
            preparations.append(lowering.preparation)
    plan = Plan(
        plan_steps,
        input_slots,
        [slot(t) for t in model.outputs],
        len(slots),
        layers,
        [tuple(t.shape) for t in model.inputs],
        preparations,
    )
    return plan, decisions


def unplannable(graph):
    """Why the plan cannot express this graph at all, or None."""
    if not graph.nodes:
        return "the model has no layers"
    for node in graph.nodes:
        layer = node.operation
        name = getattr(layer, "name", type(layer).__name__)
        if not isinstance(layer, keras.layers.Layer):
            return f"{name} is an operation, not a layer"
        if isinstance(layer, keras.Model):
            return f"{name} is a nested model"
        if not layer.built:
            return f"{name} is not built"
        if layer.activity_regularizer is not None:
            return f"{name} has an activity regularizer"
        if isinstance(layer, keras.layers.Masking) or getattr(layer, "mask_zero", False):
            return f"{name} makes masks"
        policy = layer.dtype_policy
        if policy.compute_dtype != "float32" or policy.variable_dtype != "float32":
            return f"{name} computes in {policy.name}, not float32"
        if len(node.outputs) != 1:
            return f"{name} has several outputs"
        args = node.arguments.args
        if len(args) != 1 or not _tensor_or_tensor_list(args[0]):
            return f"{name} is called on something other than one tensor or a list"
        kwargs = node.arguments.kwargs
        if any(isinstance(v, keras.KerasTensor) for v in keras.tree.flatten(kwargs)):
            return f"{name} takes a tensor keyword argument"
    return None


def _tensor_or_tensor_list(arg):
    if isinstance(arg, keras.KerasTensor):
        return True
    return isinstance(arg, (list, tuple)) and all(isinstance(a, keras.KerasTensor) for a in arg)
