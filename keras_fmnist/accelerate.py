"""`accelerate(model)`: the same functional Keras model, with a faster forward on torch.

`build_resnet18` returns a stock functional `keras.Model` (Conv2D, BatchNormalization, ReLU,
Add, ZeroPadding2D, MaxPooling2D, ... plus the study's own layers): portable, saveable
without this package, and correct to tap anywhere. On the torch backend Keras runs each of
those layers through `Layer.__call__` and its generic ops, which costs a ResNet-18 step on a
CPU a good part of plain PyTorch's speed. `accelerate` is the one, explicit step that buys
it back. It plans the model's graph once and returns an `AcceleratedModel` that shares the
model's layers and weights and runs:

- a direct graph walk: each layer's `call` in graph order, without `Layer.__call__`'s
  per-call bookkeeping;
- `ZeroPadding2D` folded into the `Conv2D` (or `MaxPooling2D`) it feeds, as torch's own
  symmetric padding argument; max-pooling padding is folded only where the padded tensor
  is provably non-negative (a ReLU's output), since zeros and torch's -inf padding then
  give the same maximum;
- `Conv2D` through `torch.nn.functional.conv2d` with the kernel stored channels-last in
  memory (same values; neither the kernel nor its gradient is copied per call);
- `BatchNormalization` through torch's fused batch norm, moving statistics updated Keras'
  way (biased variance, `moving = m * moving + (1 - m) * batch`);
- ReLU and the residual `Add` in place, as torchvision does, but only where the graph
  proves it safe: the overwritten tensor has exactly one reader, is neither a model input
  nor a model output, and was produced by a layer whose backward pass does not need it;
- on a model compiled through it with Keras' `Adam`, that optimizer's update through
  torch's fused Adam kernel (same update; see `keras_fmnist.backend.private_api.fuse_adam`).

Everything private this needs lives in `keras_fmnist.backend.private_api`, pinned to the
releases it was written for. Nothing falls back silently: `verbose=True` prints what was
applied where and what was left alone and why; `acceleration_counts` counts the calls that
took the planned path and those that went to the stock model (with the reason); saving
writes the stock model. On backends other than torch `accelerate` returns the model as is.
"""

import inspect
import warnings

import keras

from keras_fmnist.backend import private_api
from keras_fmnist.layers.drop_block import DropBlock2D
from keras_fmnist.layers.stochastic_depth import StochasticDepth

# Producers whose backward pass does not read their own output: overwriting that output
# in place cannot invalidate a saved tensor (a ReLU's backward reads its output; so do
# sigmoid, tanh, softmax...).
_FRESH_KINDS = ("conv", "batch_norm", "max_pool", "add")
# The study's random layers return their input itself at inference: their output may alias
# their input, so overwriting it is safe exactly when overwriting the input would be.
_PASS_THROUGH_LAYERS = (DropBlock2D, StochasticDepth)


class Decision:
    """What `accelerate` did to one layer: `applied` (what runs) or left alone (and why)."""

    def __init__(self, layers, what, why=""):
        self.layers = tuple(layers)
        self.what = what
        self.why = why

    def __str__(self):
        text = f"{' + '.join(self.layers)}: {self.what}"
        return f"{text} ({self.why})" if self.why else text

    def __repr__(self):
        return f"Decision({self})"


def accelerate(model, verbose=False):
    """A model sharing `model`'s layers and weights whose torch forward is faster.

    Args:
        model: a functional `keras.Model` (for instance `build_resnet18()`), built.
        verbose: print, per layer, what was applied and what was left alone and why.

    Returns:
        On the torch backend an `AcceleratedModel` wrapping `model` (its weights are the
        same variables: training one trains the other); on other backends, or where the
        graph cannot be planned (the reason is printed with `verbose`, or warned about if
        the keras/torch releases are not the ones the fast paths were written for),
        `model` itself.

    Example:

    >>> model = accelerate(keras_fmnist.build_resnet18())
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-4), loss="mse")
    """
    if isinstance(model, AcceleratedModel):
        return model
    if not isinstance(model, keras.Model) or not private_api.is_functional(model):
        raise TypeError(
            "accelerate needs a functional keras.Model (keras.Model(inputs, outputs)); "
            f"got {type(model).__name__}"
        )
    backend = keras.backend.backend()
    if backend != "torch":
        if verbose:
            print(f"accelerate: {model.name}: backend {backend}, nothing to do")
        return model
    unsupported = private_api.check_versions()
    if unsupported:
        warnings.warn(f"accelerate: {unsupported}; returning the stock model", stacklevel=2)
        return model
    plan, decisions = _Planner(model).plan()
    if verbose:
        print(f"accelerate: {model.name}")
        for decision in decisions:
            print(f"  {decision}")
    if plan is None:
        return model
    return AcceleratedModel(model, plan=plan, decisions=decisions)


def _stock_model_attribute(name):
    """A read-only attribute of `AcceleratedModel` that is its stock model's own."""
    return property(lambda self: getattr(self.stock_model, name))


@keras.saving.register_keras_serializable(package="keras_fmnist")
class AcceleratedModel(keras.Model):
    """A stock functional model run by `accelerate`'s plan on torch (see the module).

    Shares the stock model's layers and weights (`stock_model`); `save()` writes the stock
    model (which loads with plain `keras.saving.load_model`), with the optimizer when
    compiled. A call the plan cannot take (inputs that are not float32 torch tensors, a
    mask, torch forward hooks on the layers) runs the stock model, and
    `acceleration_counts` records it with the reason.
    """

    def __init__(self, model, plan=None, decisions=None, **kwargs):
        if keras.backend.backend() != "torch":
            raise ValueError(
                "AcceleratedModel runs on the torch backend; accelerate(model) returns the "
                f"model itself on {keras.backend.backend()}"
            )
        unsupported = private_api.check_versions()
        if unsupported:
            raise RuntimeError(f"AcceleratedModel: {unsupported}; use accelerate(model)")
        super().__init__(name=kwargs.pop("name", model.name), **kwargs)
        self.stock_model = model
        if plan is None:
            plan, decisions = _Planner(model).plan()
        # Kept out of Keras' attribute tracking, which would walk the plan's layer lists.
        self.__dict__["_plan"] = plan
        self.__dict__["_decisions"] = decisions or []
        self.__dict__["acceleration_counts"] = {"accelerated": 0, "stock": 0, "reasons": {}}
        self.built = True

    @property
    def decisions(self):
        """The per-layer `Decision`s of the plan."""
        return list(self._decisions)

    # The stock model's layers and graph tensors, so that `keras.Model(model.inputs,
    # [model.get_layer(name).output, ...])` taps an accelerated model as it taps the stock one.
    layers = _stock_model_attribute("layers")
    inputs = _stock_model_attribute("inputs")
    outputs = _stock_model_attribute("outputs")
    input = _stock_model_attribute("input")
    output = _stock_model_attribute("output")

    def get_layer(self, name=None, index=None):
        return self.stock_model.get_layer(name=name, index=index)

    def call(self, inputs, training=None, mask=None):
        reason = self._why_not_planned(inputs, mask)
        counts = self.acceleration_counts
        if reason is None:
            counts["accelerated"] += 1
            return self._plan.run(keras.tree.flatten(inputs), training)
        counts["stock"] += 1
        counts["reasons"][reason] = counts["reasons"].get(reason, 0) + 1
        return self.stock_model(inputs, training=training, mask=mask)

    def _why_not_planned(self, inputs, mask):
        import torch

        if self._plan is None:
            return "no plan"
        if any(m is not None for m in keras.tree.flatten(mask)):
            return "a mask was given"
        flat = keras.tree.flatten(inputs)
        if len(flat) != len(self._plan.input_slots):
            return "inputs do not match the model's inputs"
        if not all(isinstance(x, torch.Tensor) and x.dtype == torch.float32 for x in flat):
            return "inputs are not float32 torch tensors"
        for x, expected in zip(flat, self._plan.input_shapes):
            if len(x.shape) != len(expected) or any(
                e is not None and e != d for e, d in zip(expected, x.shape)
            ):
                return "input shapes differ from the model's (the stock call says how)"
        if private_api.global_forward_hooks_registered() or private_api.layer_hooks_registered(
            self._plan.layers
        ):
            return "torch forward hooks are registered (the stock call runs them)"
        return None

    def compute_output_spec(self, inputs, training=None, mask=None):
        return self.stock_model.compute_output_spec(inputs, training=training, mask=mask)

    def compute_output_shape(self, input_shape):
        return self.stock_model.compute_output_shape(input_shape)

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile`; Keras' own `Adam` then updates through torch's fused
        kernel (the same update), and the stock model is compiled alike so that `save()`
        writes the compile configuration and the optimizer's state."""
        super().compile(optimizer=optimizer, **kwargs)
        self.stock_model.compile(optimizer=self.optimizer, **kwargs)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        self._decisions[:] = [d for d in self._decisions if d.layers != ("optimizer",)]
        if private_api.is_keras_adam(inner):
            # Fused either way: the counts then record every step that runs Keras' update.
            private_api.fuse_adam(inner)
            why_not = private_api.why_adam_not_fused(inner, self.stock_model.trainable_variables)
            if why_not is None:
                decision = Decision(["optimizer"], "Adam updated by torch's fused kernel")
            else:
                decision = Decision(
                    ["optimizer"], "left alone", f"{why_not}: Keras' own Adam update runs"
                )
            self._decisions.append(decision)
        else:
            self._decisions.append(
                Decision(
                    ["optimizer"],
                    "left alone",
                    f"{type(inner).__name__} is not Keras' Adam: it runs as Keras does",
                )
            )

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the stock model (`keras.Model.save`), so the file needs no keras_fmnist."""
        return self.stock_model.save(filepath, overwrite=overwrite, zipped=zipped, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        return self.stock_model.save_weights(filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        return self.stock_model.load_weights(filepath, skip_mismatch=skip_mismatch, **kwargs)

    def get_config(self):
        return {"name": self.name, "model": keras.saving.serialize_keras_object(self.stock_model)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        return cls(model, **config)


def stock_model(model):
    """The stock model behind an `AcceleratedModel`, or `model` itself."""
    return model.stock_model if isinstance(model, AcceleratedModel) else model


# --- planning ------------------------------------------------------------------------------


class _Step:
    __slots__ = ("run", "in_slots", "as_list", "out_slot")

    def __init__(self, run, in_slots, as_list, out_slot):
        self.run = run
        self.in_slots = in_slots
        self.as_list = as_list
        self.out_slot = out_slot


class _Plan:
    """The model's computation as a list of steps over numbered tensor slots."""

    def __init__(self, steps, input_slots, output_slots, num_slots, layers, input_shapes):
        self.input_shapes = input_shapes
        self.steps = steps
        self.input_slots = input_slots
        self.output_slots = output_slots
        self.num_slots = num_slots
        self.layers = layers

    def run(self, inputs, training):
        values = [None] * self.num_slots
        for s, x in zip(self.input_slots, inputs):
            values[s] = x
        for step in self.steps:
            if step.as_list:
                x = [values[s] for s in step.in_slots]
            else:
                x = values[step.in_slots[0]]
            values[step.out_slot] = step.run(x, training)
        outputs = [values[s] for s in self.output_slots]
        return outputs[0] if len(outputs) == 1 else outputs


class _Planner:
    """Decides, node by node, how the plan runs the model (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self.nodes = private_api.functional_nodes(model)
        self.slots = {}
        self.decisions = []
        self.input_ids = {id(t) for t in model.inputs}
        self.output_ids = {id(t) for t in model.outputs}
        self.producer = {}
        self.readers = {}
        for node in self.nodes:
            for tensor in node.outputs:
                self.producer[id(tensor)] = node
            for tensor in _tensor_arguments(node):
                self.readers[id(tensor)] = self.readers.get(id(tensor), 0) + 1
        for tensor in model.outputs:  # a model output is read by the caller
            self.readers[id(tensor)] = self.readers.get(id(tensor), 0) + 1
        self.kind = {}  # id(tensor) -> how its producer ran
        self.aliases = {}  # id(tensor) -> the tensor an in-place producer overwrote

    def slot(self, tensor):
        return self.slots.setdefault(id(tensor), len(self.slots))

    def plan(self):
        reason = self._unplannable()
        if reason:
            return None, [Decision([self.model.name], "not accelerated", reason)]
        input_slots = [self.slot(t) for t in self.model.inputs]
        folded = self._folded_paddings()
        steps, layers = [], []
        for node in self.nodes:
            layer = node.operation
            if id(node) in folded:
                continue  # runs as part of the layer it feeds
            layers.append(layer)
            source = node
            padding_node = self._padding_into(node, folded)
            if padding_node is not None:
                source = padding_node
                layers.append(padding_node.operation)
            run, kind, in_tensors, as_list, decision = self._step_for(node, source)
            out = node.outputs[0]
            self.kind[id(out)] = kind
            steps.append(_Step(run, [self.slot(t) for t in in_tensors], as_list, self.slot(out)))
            self.decisions.append(decision)
        output_slots = [self.slot(t) for t in self.model.outputs]
        input_shapes = [tuple(t.shape) for t in self.model.inputs]
        plan = _Plan(steps, input_slots, output_slots, len(self.slots), layers, input_shapes)
        return plan, self.decisions

    def _unplannable(self):
        if not self.nodes:
            return "the model has no layers"
        for node in self.nodes:
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

    # --- padding folding ---

    def _folded_paddings(self):
        """ids of the ZeroPadding2D nodes whose padding the next layer takes over."""
        folded = set()
        for node in self.nodes:
            layer = node.operation
            if type(layer) is not keras.layers.ZeroPadding2D:
                continue
            out = node.outputs[0]
            if id(out) in self.output_ids or self.readers.get(id(out)) != 1:
                continue
            # By identity: `in` would compare KerasTensors with `==`, a symbolic op.
            consumer = next(
                n for n in self.nodes if any(t is out for t in _tensor_arguments(n))
            )
            if self._padding_foldable(node, consumer) is None:
                folded.add(id(node))
        return folded

    def _padding_into(self, node, folded):
        arg = node.arguments.args[0]
        if isinstance(arg, keras.KerasTensor):
            producer = self.producer.get(id(arg))
            if producer is not None and id(producer) in folded:
                return producer
        return None

    def _padding_foldable(self, padding_node, consumer):
        """None if `consumer` can take `padding_node`'s padding, else why not."""
        pad_layer, layer = padding_node.operation, consumer.operation
        (top, bottom), (left, right) = pad_layer.padding
        if top != bottom or left != right:
            return "asymmetric padding"
        if pad_layer.data_format != getattr(layer, "data_format", None):
            return "another data format"
        pad = (top, left)
        if type(layer) is keras.layers.Conv2D:
            return self._conv_unfit(layer, "valid")
        if type(layer) is keras.layers.MaxPooling2D:
            if layer.padding != "valid":
                return "the pooling pads again"
            if any(2 * p > k for p, k in zip(pad, layer.pool_size)):
                return "more padding than torch's max_pool2d takes"
            source = padding_node.arguments.args[0]
            producer = self.producer.get(id(source))
            if producer is None or not _plain_relu(producer.operation):
                return "its input is not provably non-negative (zeros would not be -inf)"
            return None
        return "not followed by a Conv2D or MaxPooling2D"

    # --- steps ---

    def _step_for(self, node, source):
        layer = node.operation
        names = [layer.name] if source is node else [source.operation.name, layer.name]
        pad = None
        if source is not node:
            (pad_h, _), (pad_w, _) = source.operation.padding
            pad = (pad_h, pad_w)
        arg = source.arguments.args[0]
        if type(layer) is keras.layers.Conv2D and self._conv_unfit(layer, None) is None:
            conv_pad = pad if pad is not None else _conv_padding(layer)
            what = "torch conv2d, kernel stored channels-last"
            if pad is not None:
                what = f"padding {pad} folded into the convolution; {what}"
            _store_kernel_channels_last(layer)
            # A fused activation's backward may read the output (sigmoid, tanh, relu...).
            kind = "conv" if layer.activation is keras.activations.linear else "activated"
            return _conv_run(layer, conv_pad), kind, [arg], False, Decision(names, what)
        if type(layer) is keras.layers.MaxPooling2D and (pad is not None or layer.padding == "valid"):
            what = "torch max_pool2d"
            if pad is not None:
                what = f"padding {pad} folded into the pooling (input is a ReLU's output); {what}"
            run = _max_pool_run(layer, pad or (0, 0))
            return run, "max_pool", [arg], False, Decision(names, what)
        if type(layer) is keras.layers.BatchNormalization:
            why = _batch_norm_unfit(layer, node)
            if why is None:
                decision = Decision(names, "torch fused batch norm")
                return _batch_norm_run(layer), "batch_norm", [arg], False, decision
            return self._direct(node, arg, names, f"left alone: {why}")
        if _plain_relu(layer):
            if self._overwritable(arg):
                decision = Decision(names, "ReLU in place", self._why_overwritable(arg))
                self.aliases[id(node.outputs[0])] = arg
                return (lambda x, training: x.relu_()), "relu", [arg], False, decision
            decision = Decision(names, "ReLU, not in place", self._why_not_overwritable(arg))
            return _torch_relu, "relu", [arg], False, decision
        if type(layer) is keras.layers.Add and _same_shapes(arg):
            for i, tensor in enumerate(arg):
                if self._overwritable(tensor):
                    self.aliases[id(node.outputs[0])] = tensor
                    decision = Decision(
                        names,
                        f"Add in place into input {i}",
                        self._why_overwritable(tensor),
                    )
                    return _add_into(i), "add", list(arg), True, decision
            why = "; ".join(self._why_not_overwritable(t) for t in arg)
            decision = Decision(names, "Add, not in place", why)
            return _add, "add", list(arg), True, decision
        return self._direct(node, arg, names, "direct call")

    def _direct(self, node, arg, names, what):
        layer = node.operation
        kwargs = dict(node.arguments.kwargs)
        takes_training = "training" in inspect.signature(layer.call).parameters
        call = layer.call

        def run(x, training):
            if takes_training and training is not None:
                return call(x, **{**kwargs, "training": training})
            return call(x, **kwargs)

        if isinstance(layer, _PASS_THROUGH_LAYERS) and isinstance(arg, keras.KerasTensor):
            kind = "pass_through"
            self.aliases[id(node.outputs[0])] = arg
        else:
            kind = "other"
        as_list = not isinstance(arg, keras.KerasTensor)
        tensors = list(arg) if as_list else [arg]
        return run, kind, tensors, as_list, Decision(names, what)

    def _conv_unfit(self, layer, required_padding):
        """None where the torch conv2d path computes what `Conv2D.call` computes."""
        if layer.rank != 2 or layer.groups != 1 or tuple(layer.dilation_rate) != (1, 1):
            return "grouped or dilated"
        if getattr(layer, "lora_enabled", False):
            return "LoRA is enabled"
        if getattr(layer, "quantization_mode", None) is not None:
            return "quantized"
        if required_padding is not None and layer.padding != required_padding:
            return f"its padding is {layer.padding!r}"
        if required_padding is None and _conv_padding(layer) is None:
            return "Keras' 'same' padding is asymmetric here"
        return None

    # --- in place ---

    def _overwritable(self, tensor):
        return self._why_not_overwritable(tensor) is None

    def _why_not_overwritable(self, tensor):
        name = _producer_name(self, tensor)
        if id(tensor) in self.input_ids:
            return f"{name} is a model input"
        if id(tensor) in self.output_ids:
            return f"{name}'s output is a model output"
        readers = self.readers.get(id(tensor), 0)
        if readers != 1:
            return f"{name}'s output has {readers} readers"
        kind = self.kind.get(id(tensor))
        if kind in _FRESH_KINDS:
            return None
        if kind == "pass_through":
            why = self._why_not_overwritable(self.aliases[id(tensor)])
            return None if why is None else f"{name} may return its input, and {why}"
        if kind == "relu":
            return f"{name}'s backward reads its output"
        if kind == "activated":
            return f"{name}'s activation may read its output in the backward pass"
        return f"{name} is not known to leave its output unread by its backward"

    def _why_overwritable(self, tensor):
        return f"{_producer_name(self, tensor)}'s output has no other reader"


def _producer_name(planner, tensor):
    node = planner.producer.get(id(tensor))
    return node.operation.name if node is not None else "the input"


def _tensor_arguments(node):
    return [
        t
        for t in keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
        if isinstance(t, keras.KerasTensor)
    ]


def _tensor_or_tensor_list(arg):
    if isinstance(arg, keras.KerasTensor):
        return True
    return isinstance(arg, (list, tuple)) and all(isinstance(a, keras.KerasTensor) for a in arg)


def _same_shapes(arg):
    return (
        isinstance(arg, (list, tuple))
        and len(arg) >= 2
        and all(tuple(a.shape) == tuple(arg[0].shape) for a in arg)
    )


def _plain_relu(layer):
    return (
        type(layer) is keras.layers.ReLU
        and layer.max_value is None
        and not layer.negative_slope
        and not layer.threshold
    )


def _conv_padding(layer):
    """The symmetric (ph, pw) torch padding equal to the layer's own, or None."""
    if layer.padding == "valid":
        return (0, 0)
    if layer.padding == "same" and tuple(layer.strides) == (1, 1):
        if all(k % 2 for k in layer.kernel_size):
            return tuple((k - 1) // 2 for k in layer.kernel_size)
    return None


def _batch_norm_unfit(layer, node):
    if len(node.arguments.args[0].shape) != 4:
        return "not a 4-D input"
    if layer.renorm or getattr(layer, "synchronized", False):
        return "renorm or synchronized"
    if layer.axis % 4 not in (1, 3):
        return "not normalising the channel axis"
    return None


# --- the torch computations ------------------------------------------------------------------


def _store_kernel_channels_last(layer):
    """Lays the (kh, kw, in, out) kernel out in memory as torch's channels-last weight
    (out, kh, kw, in): same values at the same indices. In Keras' layout
    `kernel.permute(3, 2, 0, 1)` is in no memory format torch knows, so its convolution
    copies the kernel (and its gradient) on every call."""
    value = layer.kernel.value
    data = value.data
    value.data = data.permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)


def _conv_run(layer, pad):
    import torch

    conv2d = torch.nn.functional.conv2d
    strides = tuple(layer.strides)
    last = layer.data_format == "channels_last"
    activation = layer.activation
    if activation is keras.activations.linear:
        activation = None

    def run(x, training):
        if last:
            x = x.permute(0, 3, 1, 2)
        bias = layer.bias.value if layer.use_bias else None
        y = conv2d(x, layer.kernel.value.permute(3, 2, 0, 1), bias, strides, pad)
        if last:
            y = y.permute(0, 2, 3, 1)
        return activation(y) if activation is not None else y

    return run


def _max_pool_run(layer, pad):
    import torch

    max_pool2d = torch.nn.functional.max_pool2d
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    last = layer.data_format == "channels_last"

    def run(x, training):
        if last:
            x = x.permute(0, 3, 1, 2)
        y = max_pool2d(x, pool, strides, pad)
        return y.permute(0, 2, 3, 1) if last else y

    return run


def _batch_norm_run(layer):
    import torch

    channels_last = layer.axis % 4 == 3

    def run(x, training):
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        gamma = layer.gamma.value if layer.scale else None
        beta = layer.beta.value if layer.center else None
        if training and layer.trainable:
            # Moving statistics are Keras' (biased variance), not torch's (unbiased): the
            # kernel gets none and they are updated below.
            y, mean, invstd = private_api.native_batch_norm(
                x, gamma, beta, None, None, True, 0.0, layer.epsilon
            )
            with torch.no_grad():
                variance = invstd.pow(-2).sub_(layer.epsilon)
                m = layer.momentum
                if private_api.in_stateless_scope():  # new values go through the scope
                    moving_mean = keras.ops.convert_to_tensor(layer.moving_mean)
                    moving_variance = keras.ops.convert_to_tensor(layer.moving_variance)
                    layer.moving_mean.assign(moving_mean * m + mean * (1.0 - m))
                    layer.moving_variance.assign(moving_variance * m + variance * (1.0 - m))
                else:
                    # lerp_(new, 1 - m) is m * moving + (1 - m) * new, in place.
                    layer.moving_mean.value.lerp_(mean, 1.0 - m)
                    layer.moving_variance.value.lerp_(variance, 1.0 - m)
        else:
            y = torch.nn.functional.batch_norm(
                x,
                layer.moving_mean.value,
                layer.moving_variance.value,
                gamma,
                beta,
                False,
                0.0,
                layer.epsilon,
            )
        return y.permute(0, 2, 3, 1) if channels_last else y

    return run


def _torch_relu(x, training):
    return x.relu()


def _add(xs, training):
    total = xs[0] + xs[1]
    for x in xs[2:]:
        total = total + x
    return total


def _add_into(index):
    def run(xs, training):
        target = xs[index]
        for i, x in enumerate(xs):
            if i != index:
                target.add_(x)
        return target

    return run
