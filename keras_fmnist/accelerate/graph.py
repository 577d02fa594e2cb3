"""An immutable view of a functional model's graph, for planning: nodes in the order the
model runs them, and for each tensor who produces it and who reads it."""

import types

import keras

from keras_fmnist.backend import private_api


def tensor_arguments(node):
    """The KerasTensors a node is called on (positional and keyword), in order."""
    return tuple(
        t
        for t in keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
        if isinstance(t, keras.KerasTensor)
    )


class GraphView:
    """Read-only facts about `model`'s graph. Tensors are compared by identity (`==` on
    KerasTensors builds a symbolic op), so every lookup is by `id(tensor)`."""

    def __init__(self, model):
        nodes = tuple(private_api.functional_nodes(model))
        producer, readers = {}, {}
        for node in nodes:
            for tensor in node.outputs:
                producer[id(tensor)] = node
            for tensor in tensor_arguments(node):
                readers.setdefault(id(tensor), []).append(node)
        self.model = model
        self.nodes = nodes
        self._position = types.MappingProxyType({id(n): i for i, n in enumerate(nodes)})
        self.inputs = tuple(model.inputs)
        self.outputs = tuple(model.outputs)
        self._producer = types.MappingProxyType(producer)
        self._readers = types.MappingProxyType({k: tuple(v) for k, v in readers.items()})
        self._input_ids = frozenset(id(t) for t in model.inputs)
        self._output_ids = frozenset(id(t) for t in model.outputs)

    def position(self, node):
        """The node's index in execution order."""
        return self._position[id(node)]

    def producer(self, tensor):
        """The node whose output `tensor` is, or None for a model input."""
        return self._producer.get(id(tensor))

    def producer_name(self, tensor):
        node = self.producer(tensor)
        return node.operation.name if node is not None else "the input"

    def readers(self, tensor):
        """The nodes reading `tensor`, once per read (a node reading it twice is listed twice)."""
        return self._readers.get(id(tensor), ())

    def read_count(self, tensor):
        """Reads of `tensor`, counting a model output as read once more (by the caller)."""
        return len(self.readers(tensor)) + (id(tensor) in self._output_ids)

    def sole_reader(self, tensor):
        """The node that is `tensor`'s only reader (reading it once), or None; a model
        output always has another reader, the caller."""
        readers = self.readers(tensor)
        if len(readers) == 1 and not self.is_output(tensor):
            return readers[0]
        return None

    def is_input(self, tensor):
        return id(tensor) in self._input_ids

    def is_output(self, tensor):
        return id(tensor) in self._output_ids
