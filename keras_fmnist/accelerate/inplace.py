"""The in-place pass: which ReLU and Add steps may overwrite an input, decided over the
finished list of lowerings (a pure function of it and the graph).

Overwriting tensor t in place is safe when nothing else can see the old value: t is
neither a model input nor a model output, the step is its only reader, and t's producer
does not read its output in the backward pass (a ReLU's does, a convolution's does not).
Where t may be its producer's input itself (`MAY_ALIAS_INPUT`: the study's random layers
return their input at inference), the same must hold for that input. torchvision's
`inplace=True` makes the same bet without the checks.
"""

from keras_fmnist.accelerate import lowerings
from keras_fmnist.accelerate.plan import Decision


def why_not_overwritable(tensor, graph, lowering_of_output):
    """None if overwriting `tensor` in place is safe (see the module), else why not."""
    name = graph.producer_name(tensor)
    if graph.is_input(tensor):
        return f"{name} is a model input"
    if graph.is_output(tensor):
        return f"{name}'s output is a model output"
    reads = graph.read_count(tensor)
    if reads != 1:
        return f"{name}'s output has {reads} readers"
    producer = lowering_of_output.get(id(tensor))
    if producer is None:  # a model input was handled above; an absorbed tensor is not read
        return f"{name} is not known to leave its output unread by its backward"
    if producer.output == lowerings.FREE:
        return None
    if producer.output == lowerings.MAY_ALIAS_INPUT:
        why = why_not_overwritable(producer.inputs[0], graph, lowering_of_output)
        return None if why is None else f"{name} may return its input, and {why}"
    return f"{name}{producer.output_note}"


def choose(steps, graph):
    """`steps`: (node, lowering) pairs in plan order. Returns (node, lowering, run, decision)
    for each, `run` being the in-place variant where it is safe."""
    lowering_of_output = {id(lowering.output_tensor(node)): lowering for node, lowering in steps}
    chosen = []
    for node, lowering in steps:
        names = [n.operation.name for n in sorted((node, *lowering.absorbs), key=graph.position)]
        run, what, why = lowering.run, lowering.what, ""
        if lowering.in_place is not None:
            reasons = []
            for index, tensor in enumerate(lowering.inputs):
                reason = why_not_overwritable(tensor, graph, lowering_of_output)
                if reason is None:
                    run = lowering.in_place(index)
                    what = f"{lowering.what} in place" + (
                        f" into input {index}" if lowering.as_list else "")
                    why = f"{graph.producer_name(tensor)}'s output has no other reader"
                    break
                reasons.append(reason)
            else:
                what, why = f"{lowering.what}, not in place", "; ".join(reasons)
        chosen.append((node, lowering, run, Decision(names, what, why)))
    return chosen
