"""`.keras` files that load and predict on every backend and machine.

Two things tie a model saved by Keras to where it was saved:

- the layout: a channels-first graph (torch's faster layout, what `run.py` trains there)
  cannot run on a TensorFlow CPU without oneDNN, where convolutions take channels-last
  tensors only;
- the optimizer: on torch Keras swaps in optimizer classes of its private
  `keras.src.backend.torch.optimizers` modules and writes that module path into the file;
  loading it then imports torch, which crashes a process that loaded TensorFlow first.

`save_model` writes a channels-last copy of a channels-first model (same weights, same
outputs, the optimizer's state carried over) and records Keras' optimizers under their public
names (`keras.optimizers.Adam`, ...). The file loads with plain `keras.saving.load_model`
everywhere (after `import keras_fmnist` where it holds the project's own layers).
"""

import os

import keras

from keras_fmnist.backend import private_api

# The builder's Permute from the channels-last input to the channels-first layers.
TO_CHANNELS_FIRST = "to_channels_first"


def is_channels_first(model):
    return any(getattr(layer, "data_format", None) == "channels_first"
               for layer in private_api.all_layers(model))


def _channels_last_layer(layer):
    if isinstance(layer, keras.layers.Permute) and layer.name == TO_CHANNELS_FIRST:
        return keras.layers.Identity(name=layer.name)
    config = layer.get_config()
    if config.get("data_format") == "channels_first":
        config["data_format"] = "channels_last"
    if isinstance(layer, keras.layers.BatchNormalization) and config["axis"] in (1, -3):
        config["axis"] = -1
    return layer.__class__.from_config(config)


def channels_last_copy(model: keras.Model) -> keras.Model:
    """A channels-last model computing what the channels-first functional `model` computes,
    with its weights (and, if compiled, its compile configuration and optimizer state).

    Raises:
        ValueError: `model` takes channels-first inputs (only its internal layers may be
            channels-first, as `build_resnet18` builds them: a channels-last input permuted
            by a Permute named "to_channels_first").
    """
    if not private_api.is_functional(model):
        raise ValueError("channels_last_copy needs a functional model")
    if not any(layer.name == TO_CHANNELS_FIRST for layer in model.layers):
        raise ValueError(
            f"{model.name}: channels-first layers without a '{TO_CHANNELS_FIRST}' Permute from "
            "a channels-last input; its layout cannot be changed by renaming layers")
    copy = keras.models.clone_model(model, clone_function=_channels_last_layer)
    copy.set_weights(model.get_weights())
    if model.optimizer is not None and model.compiled:
        copy.compile_from_config(model.get_compile_config())
        copy.optimizer.build(copy.trainable_variables)
        if len(copy.optimizer.variables) == len(model.optimizer.variables):
            for target, source in zip(copy.optimizer.variables, model.optimizer.variables):
                target.assign(source)
    return copy


def portable_model(model: keras.Model) -> keras.Model:
    """`model`, or its channels-last copy where it has channels-first layers."""
    return channels_last_copy(model) if is_channels_first(model) else model


def save_model(model: keras.Model, path: str | os.PathLike, **kwargs) -> None:
    """`model.save(path)` as a file that loads and predicts on every backend (the module)."""
    model = portable_model(model)
    with private_api.keras_torch_optimizers_saved_as_public():
        keras.Model.save(model, path, **kwargs)
