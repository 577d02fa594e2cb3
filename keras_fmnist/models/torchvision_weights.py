"""Copies a torchvision resnet18 state_dict into a `build_resnet18` model.

The Keras layer names are torchvision's module paths (with "_" for "."), so the mapping is by
name: Keras layer `layer1_0_conv1` takes the state_dict's `layer1.0.conv1.weight`. Layouts differ only in axis order:
conv weights (out, in, kh, kw) -> (kh, kw, in, out), dense (out, in) -> (in, out). BatchNorm
maps gamma/beta/moving mean/moving variance to weight/bias/running_mean/running_var.
"""

import os
from collections.abc import Mapping

import numpy as np

import keras

from keras_fmnist.models.resnet import torchvision_module_name


def _to_numpy(value):
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _required_entries():
    """Every entry of a torchvision resnet18 state_dict that `load_torchvision_weights` reads
    for the study's model (stem and stages 1-3), with its shape (None: any size); checked
    all before any model is built. Stage 4 and the 1000-class head are not read."""
    entries = {"conv1.weight": (64, None, 7, 7)}

    def batch_norm(name, channels):
        for key in ("weight", "bias", "running_mean", "running_var"):
            entries[f"{name}.{key}"] = (channels,)

    batch_norm("bn1", 64)
    for stage, channels in ((1, 64), (2, 128), (3, 256)):
        for block in (0, 1):
            name = f"layer{stage}.{block}"
            in_channels = channels // 2 if stage > 1 and block == 0 else channels
            entries[f"{name}.conv1.weight"] = (channels, in_channels, 3, 3)
            batch_norm(f"{name}.bn1", channels)
            entries[f"{name}.conv2.weight"] = (channels, channels, 3, 3)
            batch_norm(f"{name}.bn2", channels)
            if stage > 1 and block == 0:
                entries[f"{name}.downsample.0.weight"] = (channels, in_channels, 1, 1)
                batch_norm(f"{name}.downsample.1", channels)
    return entries


REQUIRED_ENTRIES = _required_entries()


def load_state_dict_file(path: str | os.PathLike) -> dict:
    """Reads a `.pth` state_dict (a plain dict of tensors, or a pickled full model).

    Raises:
        ValueError: one line naming the file and why it is not a torchvision resnet18
            state_dict (unreadable, not a mapping of tensors, missing or misshapen entries).
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle, zip and runtime errors for a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable torch file ({first})") from None
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state_dict (got {type(obj).__name__})")
    for key, shape in REQUIRED_ENTRIES.items():
        if key not in obj:
            raise ValueError(f"{path}: not a torchvision resnet18 state_dict (no {key!r})")
        actual = tuple(getattr(obj[key], "shape", ()))
        if len(actual) != len(shape) or any(
                want is not None and got != want for got, want in zip(actual, shape)):
            raise ValueError(f"{path}: {key} has shape {actual}, a resnet18 has "
                             f"{tuple('*' if d is None else d for d in shape)}")
    return obj


def _conv_kernel(weight, target_shape, name):
    weight = _to_numpy(weight)
    kernel = np.transpose(weight, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)
    if kernel.shape[2] != target_shape[2] and target_shape[2] == 1:
        # An ImageNet stem sees RGB; summing its filters over the input channels gives the
        # grayscale filter that responds to a gray image as the RGB filter did to (g, g, g).
        kernel = kernel.sum(axis=2, keepdims=True)
    if kernel.shape != tuple(target_shape):
        raise ValueError(
            f"{name}: torchvision weight has shape {tuple(weight.shape)}, the Keras kernel "
            f"needs {tuple(target_shape)}"
        )
    return kernel


def load_torchvision_weights(model: keras.Model, state_dict: Mapping | str | os.PathLike,
                             verbose: bool = True) -> dict[str, list[str]]:
    """Loads torchvision resnet18 weights into a model built by `build_resnet18`.

    Args:
        model: the Keras model (layer names as torchvision's modules).
        state_dict: a mapping of torchvision parameter names to tensors/arrays, or a path to a
            `.pth` file holding one.
        verbose: print what was skipped.

    Returns:
        A dict with "loaded" (Keras layers that received weights), "skipped_keys"
        (state_dict entries with no Keras layer, e.g. `layer4.*`), "not_loaded" (Keras layers
        with weights that the state_dict does not cover, e.g. a deformable block) and
        "mismatched" (names whose shapes differ, e.g. a 1000-class head on a 10-class model).
    """
    if isinstance(state_dict, (str, bytes)) or hasattr(state_dict, "__fspath__"):
        state_dict = load_state_dict_file(state_dict)
    used = set()
    report = {"loaded": [], "skipped_keys": [], "not_loaded": [], "mismatched": []}
    for layer in model.layers:
        if not layer.weights:
            continue
        name = torchvision_module_name(layer.name)
        if isinstance(layer, keras.layers.Conv2D) and f"{name}.weight" in state_dict:
            key = f"{name}.weight"
            try:
                values = [_conv_kernel(state_dict[key], layer.kernel.shape, name)]
            except ValueError:
                report["mismatched"].append(layer.name)
                used.add(key)
                continue
            used.add(key)
            if layer.use_bias:
                values.append(_to_numpy(state_dict[f"{name}.bias"]))
                used.add(f"{name}.bias")
        elif isinstance(layer, keras.layers.BatchNormalization) and f"{name}.weight" in state_dict:
            keys = [f"{name}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
            values = [_to_numpy(state_dict[k]) for k in keys]
            used.update(keys)
            used.add(f"{name}.num_batches_tracked")
        elif isinstance(layer, keras.layers.Dense) and f"{name}.weight" in state_dict:
            keys = [f"{name}.weight", f"{name}.bias"]
            values = [_to_numpy(state_dict[keys[0]]).T, _to_numpy(state_dict[keys[1]])]
            used.update(keys)
            if values[0].shape != tuple(layer.kernel.shape):
                report["mismatched"].append(layer.name)
                continue
        else:
            report["not_loaded"].append(layer.name)
            continue
        layer.set_weights(values)
        report["loaded"].append(layer.name)
    report["skipped_keys"] = sorted(
        k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")
    )
    if verbose and (report["skipped_keys"] or report["not_loaded"] or report["mismatched"]):
        skipped_modules = sorted({k.rsplit(".", 1)[0] for k in report["skipped_keys"]})
        print(
            f"load_torchvision_weights: loaded {len(report['loaded'])} layers; "
            f"skipped {len(skipped_modules)} torchvision modules not in the model "
            f"({', '.join(_summarise(skipped_modules))}); "
            f"kept initial weights of {', '.join(report['not_loaded'] + report['mismatched']) or 'none'}"
        )
    return report


def _summarise(module_names):
    """layer4.0.conv1, layer4.0.bn1, ... -> layer4.*, keeping other names as they are."""
    out = []
    for name in module_names:
        head = name.split(".")[0]
        short = f"{head}.*" if "." in name else name
        if short not in out:
            out.append(short)
    return out
