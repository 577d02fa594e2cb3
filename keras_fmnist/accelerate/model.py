"""`accelerate(model)` and the `AcceleratedModel` it returns (see `keras_fmnist.accelerate`)."""

import warnings

import keras

from keras_fmnist import optimizers
from keras_fmnist import saving
from keras_fmnist.accelerate.planner import plan_model
from keras_fmnist.accelerate.plan import Decision
from keras_fmnist.backend import private_api


def _why_not_on_this_backend():
    """None where the torch fast paths can run, else why not (one sentence)."""
    backend = keras.backend.backend()
    if backend != "torch":
        return f"backend {backend}, not torch"
    return private_api.check_versions()


def accelerate(model: keras.Model, verbose: bool = False) -> keras.Model:
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
    unavailable = _why_not_on_this_backend()
    if unavailable:
        if keras.backend.backend() != "torch":
            if verbose:
                print(f"accelerate: {model.name}: {unavailable}, nothing to do")
        else:
            warnings.warn(f"accelerate: {unavailable}; returning the stock model", stacklevel=2)
        return model
    plan, decisions = plan_model(model)
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
    """A stock functional model run by `accelerate`'s plan on torch (see the package).

    Shares the stock model's layers and weights (`stock_model`); `save()` writes the stock
    model (which loads with plain `keras.saving.load_model`), with the optimizer when
    compiled. Inputs are taken as the stock model takes them (cast to its inputs' dtype, a
    missing trailing channel axis added), so integer and float64 images run the plan. A
    call the plan cannot take (a mask, an input of another shape, torch forward hooks on
    the layers) runs the stock model: `acceleration_counts` records it with the reason, and
    the first such call for each reason warns.

    Adopting the plan lays the convolution kernels out channels-last in memory (same
    values, so the stock model computes the same), once.
    """

    def __init__(self, model, plan=None, decisions=None, **kwargs):
        unsupported = _why_not_on_this_backend()
        if unsupported:
            raise (ValueError if keras.backend.backend() != "torch" else RuntimeError)(
                f"AcceleratedModel runs on the torch backend, on the releases its fast paths "
                f"were written for ({unsupported}); accelerate(model) returns the stock model "
                "where they cannot run"
            )
        super().__init__(name=kwargs.pop("name", model.name), **kwargs)
        self.stock_model = model
        if plan is None:
            plan, decisions = plan_model(model)
        if plan is not None:
            plan.prepare()
        # Kept out of Keras' attribute tracking, which would walk the plan's layer lists.
        self.__dict__["_plan"] = plan
        self.__dict__["_decisions"] = list(decisions or [])
        self.__dict__["acceleration_counts"] = {"accelerated": 0, "stock": 0, "reasons": {}}
        self.__dict__["_warned"] = set()
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
        flat, reason = self._planned_inputs(inputs, mask)
        counts = self.acceleration_counts
        if reason is None:
            counts["accelerated"] += 1
            return self._plan.run(flat, training)
        counts["stock"] += 1
        counts["reasons"][reason] = counts["reasons"].get(reason, 0) + 1
        if reason not in self._warned:
            self._warned.add(reason)
            warnings.warn(
                f"accelerate: {self.name}: this call runs the stock model, not the "
                f"accelerated plan ({reason}); acceleration_counts = {counts}",
                UserWarning,
                stacklevel=2,
            )
        return self.stock_model(inputs, training=training, mask=mask)

    def _planned_inputs(self, inputs, mask):
        """(the inputs as the plan takes them, None), or (None, why the plan cannot)."""
        import torch

        if self._plan is None:
            return None, "no plan"
        if any(m is not None for m in keras.tree.flatten(mask)):
            return None, "a mask was given"
        try:
            # What Functional.call does first: one tensor per model input, cast to the
            # input's dtype, its rank adjusted (a missing trailing axis of 1 added).
            flat = private_api.standardize_functional_inputs(self.stock_model, inputs)
        except (ValueError, TypeError):
            return None, "inputs do not match the model's inputs (the stock call says how)"
        if len(flat) != len(self._plan.input_slots):
            return None, "inputs do not match the model's inputs"
        if not all(isinstance(x, torch.Tensor) and x.dtype == torch.float32 for x in flat):
            return None, "inputs are not float32 torch tensors after the stock model's cast"
        for x, expected in zip(flat, self._plan.input_shapes):
            if len(x.shape) != len(expected) or any(
                e is not None and e != d for e, d in zip(expected, x.shape)
            ):
                return None, "input shapes differ from the model's (the stock call says how)"
        if private_api.global_forward_hooks_registered() or private_api.layer_hooks_registered(
            self._plan.layers
        ):
            return None, "torch forward hooks are registered (the stock call runs them)"
        return flat, None

    def compute_output_spec(self, inputs, training=None, mask=None):
        return self.stock_model.compute_output_spec(inputs, training=training, mask=mask)

    def compute_output_shape(self, input_shape):
        return self.stock_model.compute_output_shape(input_shape)

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile`; Keras' own `Adam` is then turned into a
        `keras_fmnist.optimizers.FusedAdam` in place (the same object and state, the same
        update, through torch's fused kernel; it still saves as `keras.optimizers.Adam`),
        and the stock model is compiled alike so that `save()` writes the compile
        configuration and the optimizer's state."""
        super().compile(optimizer=optimizer, **kwargs)
        self.stock_model.compile(optimizer=self.optimizer, **kwargs)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        self._decisions[:] = [d for d in self._decisions if d.layers != ("optimizer",)]
        if isinstance(inner, optimizers.FusedAdam) or private_api.is_keras_adam(inner):
            # Fused either way: the counts then record every step that runs Keras' update.
            optimizers.as_fused(inner)
            why_not = optimizers.why_not_fused(inner, self.stock_model.trainable_variables)
            if why_not is None:
                decision = Decision(["optimizer"], "Adam updated by torch's fused kernel")
            else:
                decision = Decision(
                    ["optimizer"], "left alone", f"{why_not}: Keras' own Adam update runs"
                )
        else:
            decision = Decision(
                ["optimizer"],
                "left alone",
                f"{type(inner).__name__} is not Keras' Adam: it runs as Keras does",
            )
        self._decisions.append(decision)

    def save(self, filepath, overwrite=True, zipped=None, **kwargs):
        """Saves the stock model, portably (`keras_fmnist.saving.save_model`): the file
        needs no keras_fmnist (unless the model holds its layers), and loads and predicts on
        every backend."""
        return saving.save_model(self.stock_model, filepath, overwrite=overwrite,
                                 zipped=zipped, **kwargs)

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


def stock_model(model: keras.Model) -> keras.Model:
    """The stock model behind an `AcceleratedModel`, or `model` itself."""
    return model.stock_model if isinstance(model, AcceleratedModel) else model
