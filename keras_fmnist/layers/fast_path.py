"""When the layers' torch fast paths apply."""

import keras


def is_torch_float32(x):
    """True where the torch fast paths apply: torch backend and a float32 torch tensor."""
    if keras.backend.backend() != "torch":
        return False
    import torch  # only on the torch backend: jax-only installs have no torch

    return isinstance(x, torch.Tensor) and x.dtype == torch.float32
