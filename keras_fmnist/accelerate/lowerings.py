"""How `accelerate` runs each layer type: one registry, `{layer type: lowering}`.

A lowering is a function `(node, graph) -> Lowering | str`: given a node of the model (its
layer is `node.operation`) and the read-only `GraphView`, it returns how the plan runs it,
or a one-line reason why it cannot (the node then runs as a direct call of its layer).
Layer types are matched exactly (a subclass may compute something else), and a type with
no lowering runs as a direct call.

A lowering may take over its neighbours' work (`absorbs`): a `ZeroPadding2D` whose only
reader is the convolution or pooling it pads, a ReLU that is a batch norm's only reader.
It then reads the absorbed padding's input, or returns the absorbed ReLU's output (`produces`).

To add a layer type: write its torch computation in `kernels.py` and register a lowering
here with `@lowers(LayerType)`; say in `Lowering.output` whether its backward pass reads its
output (the in-place pass in `inplace.py` needs that, and nothing else).
"""

import dataclasses
import inspect
from typing import Callable, Optional

import keras

from keras_fmnist.accelerate import kernels
from keras_fmnist.layers.drop_block import DropBlock2D
from keras_fmnist.layers.stochastic_depth import StochasticDepth

# What overwriting a step's output in place would do to its backward pass (`Lowering.output`):
FREE = "free"  # nothing: the backward pass does not read the output
READ_BY_BACKWARD = "read_by_backward"  # it would corrupt it (a ReLU's backward reads its output)
MAY_ALIAS_INPUT = "may_alias_input"  # the output may be the input itself: as overwriting that
UNKNOWN = "unknown"  # not known: never overwritten


@dataclasses.dataclass(frozen=True)
class Lowering:
    """How the plan runs one node.

    Attributes:
        run: `run(x, training)`; x is one tensor, or a list of them with `as_list`.
        what: what runs, as the decision says it.
        inputs: the KerasTensors the step reads.
        as_list: whether `run` takes its inputs as a list.
        absorbs: nodes whose work this step does instead of them.
        produces: the node whose output the step returns, if not its own (a fused ReLU).
        output: what overwriting the output in place would do (`FREE`, ...).
        output_note: why it may not be overwritten, completing "<producer name>...".
        in_place: `in_place(i)` is a `run` overwriting input i (ReLU, Add), or None.
        preparation: run once when the plan is adopted (a kernel's memory layout).
    """

    run: Callable
    what: str
    inputs: tuple
    as_list: bool = False
    absorbs: tuple = ()
    produces: Optional[object] = None
    output: str = UNKNOWN
    output_note: str = " is not known to leave its output unread by its backward"
    in_place: Optional[Callable] = None
    preparation: Optional[Callable] = None

    def output_tensor(self, node):
        """The KerasTensor this step computes when planned for `node`."""
        return (node if self.produces is None else self.produces).outputs[0]


LOWERINGS = {}


def lowers(*layer_types):
    """Registers the decorated function as the lowering of these layer types."""

    def register(function):
        for layer_type in layer_types:
            LOWERINGS[layer_type] = function
        return function

    return register


def lower(node, graph):
    """The node's `Lowering`: its registered one, or a direct call of its layer (with the
    reason in `what` where the registered lowering declined)."""
    layer = node.operation
    lowering = LOWERINGS.get(type(layer))
    if lowering is not None:
        result = lowering(node, graph)
        if isinstance(result, Lowering):
            return result
        return direct_call(node, f"left alone: {result}")
    if isinstance(layer, (DropBlock2D, StochasticDepth)):
        return direct_call(node, "direct call", output=MAY_ALIAS_INPUT)
    return direct_call(node, "direct call")


def direct_call(node, what, output=UNKNOWN):
    """The layer's own `call` on the node's arguments, without `Layer.__call__`."""
    layer = node.operation
    arg = node.arguments.args[0]
    kwargs = dict(node.arguments.kwargs)
    takes_training = "training" in inspect.signature(layer.call).parameters
    call = layer.call

    def run(x, training):
        if takes_training and training is not None:
            return call(x, **{**kwargs, "training": training})
        return call(x, **kwargs)

    as_list = not isinstance(arg, keras.KerasTensor)
    if output == MAY_ALIAS_INPUT and as_list:
        output = UNKNOWN
    return Lowering(
        run=run,
        what=what,
        inputs=tuple(arg) if as_list else (arg,),
        as_list=as_list,
        output=output,
    )


# --- padding folded into what it feeds ------------------------------------------------------


def _absorbable_padding(node, graph):
    """The ZeroPadding2D node feeding `node` whose padding `node` can take over, or None."""
    arg = node.arguments.args[0]
    producer = graph.producer(arg)
    if producer is None or type(producer.operation) is not keras.layers.ZeroPadding2D:
        return None
    if graph.sole_reader(arg) is not node:
        return None
    padding = producer.operation
    (top, bottom), (left, right) = padding.padding
    if top != bottom or left != right:
        return None
    if padding.data_format != getattr(node.operation, "data_format", None):
        return None
    return producer


@lowers(keras.layers.Conv2D)
def conv2d(node, graph):
    layer = node.operation
    why = _conv_unfit(layer)
    if why:
        return why
    padding_node = _absorbable_padding(node, graph)
    if padding_node is not None and layer.padding == "valid":
        (pad_h, _), (pad_w, _) = padding_node.operation.padding
        padding = (pad_h, pad_w)
        what = f"padding {padding} folded into the convolution; "
        source, absorbs = padding_node, (padding_node,)
    else:
        padding = _conv_padding(layer)
        if padding is None:
            return "Keras' 'same' padding is asymmetric here"
        what, source, absorbs = "", node, ()
    linear = layer.activation is keras.activations.linear
    return Lowering(
        run=kernels.conv2d(layer, padding),
        what=what + "torch conv2d, kernel stored channels-last",
        inputs=(source.arguments.args[0],),
        absorbs=absorbs,
        output=FREE if linear else READ_BY_BACKWARD,
        # A fused activation's backward may read the output (sigmoid, tanh, relu...).
        output_note="'s activation may read its output in the backward pass",
        preparation=lambda: kernels.store_kernel_channels_last(layer),
    )


def _conv_unfit(layer):
    if layer.rank != 2 or layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1):
        return "grouped or dilated"
    if getattr(layer, "lora_enabled", False):
        return "LoRA is enabled"
    if getattr(layer, "quantization_mode", None) is not None:
        return "quantized"
    return None


def _conv_padding(layer):
    """The symmetric (ph, pw) torch padding equal to the layer's own, or None."""
    if layer.padding == "valid":
        return (0, 0)
    if layer.padding == "same" and tuple(layer.strides) == (1, 1):
        if all(k % 2 for k in layer.kernel_size):
            return tuple((k - 1) // 2 for k in layer.kernel_size)
    return None


@lowers(keras.layers.MaxPooling2D)
def max_pooling2d(node, graph):
    layer = node.operation
    if layer.padding != "valid":
        return "its padding is 'same'"
    padding_node = _absorbable_padding(node, graph)
    padding, what, source, absorbs = (0, 0), "", node, ()
    if padding_node is not None:
        (pad_h, _), (pad_w, _) = padding_node.operation.padding
        padded = padding_node.arguments.args[0]
        producer = graph.producer(padded)
        # torch pads with -inf; zeros give the same maximum only over non-negative inputs.
        fits = all(2 * p <= k for p, k in zip((pad_h, pad_w), layer.pool_size))
        if fits and producer is not None and plain_relu(producer.operation):
            padding = (pad_h, pad_w)
            what = f"padding {padding} folded into the pooling (input is a ReLU's output); "
            source, absorbs = padding_node, (padding_node,)
    return Lowering(
        run=kernels.max_pool2d(layer, padding),
        what=what + "torch max_pool2d",
        inputs=(source.arguments.args[0],),
        absorbs=absorbs,
        output=FREE,
    )


# --- batch norm, with the ReLU it feeds -----------------------------------------------------


@lowers(keras.layers.BatchNormalization)
def batch_normalization(node, graph):
    layer = node.operation
    arg = node.arguments.args[0]
    if len(arg.shape) != 4:
        return "not a 4-D input"
    if layer.renorm or getattr(layer, "synchronized", False):
        return "renorm or synchronized"
    if layer.axis % 4 not in (1, 3):
        return "not normalising the channel axis"
    reader = graph.sole_reader(node.outputs[0])
    if reader is not None and plain_relu(reader.operation):
        return Lowering(
            run=kernels.batch_norm(layer, relu=True),
            what="torch fused batch norm + ReLU, one op",
            inputs=(arg,),
            absorbs=(reader,),
            produces=reader,
            output=READ_BY_BACKWARD,
            output_note="'s backward reads its output",
        )
    return Lowering(
        run=kernels.batch_norm(layer), what="torch fused batch norm", inputs=(arg,), output=FREE
    )


def plain_relu(layer):
    return (
        type(layer) is keras.layers.ReLU
        and layer.max_value is None
        and not layer.negative_slope
        and not layer.threshold
    )


@lowers(keras.layers.ReLU)
def relu(node, graph):
    if not plain_relu(node.operation):
        return "not a plain ReLU (max_value, negative_slope or threshold)"
    return Lowering(
        run=kernels.relu,
        what="ReLU",
        inputs=(node.arguments.args[0],),
        output=READ_BY_BACKWARD,
        output_note="'s backward reads its output",
        in_place=lambda index: kernels.relu_in_place,
    )


@lowers(keras.layers.Add)
def add(node, graph):
    arg = node.arguments.args[0]
    if not isinstance(arg, (list, tuple)) or len(arg) < 2:
        return "not a list of tensors"
    if any(tuple(a.shape) != tuple(arg[0].shape) for a in arg):
        return "inputs broadcast"
    return Lowering(
        run=kernels.add,
        what="Add",
        inputs=tuple(arg),
        as_list=True,
        output=FREE,
        in_place=kernels.add_into,
    )
