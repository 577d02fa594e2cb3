"""Which Keras backend keras_fmnist runs on: the user's, or torch where the user chose none.

Keras reads its backend once, when it is first imported: from `KERAS_BACKEND`, else from
`keras.json` in `$KERAS_HOME` (default `~/.keras`, or `/tmp/.keras` where the home directory
is not writable), else TensorFlow. keras_fmnist prefers torch (its fast paths are torch's),
but only where the user said nothing: it sets `KERAS_BACKEND` to torch (else jax, else
tensorflow: the first installed) when Keras is not imported yet, the environment names no
backend and `keras.json` names none other than TensorFlow. Keras writes `keras.json` with `"backend": "tensorflow"` on its first import on
any machine, before it even looks at `KERAS_BACKEND`, so that entry cannot tell a choice from
a default: to choose TensorFlow, set `KERAS_BACKEND=tensorflow`.
"""

# What Keras writes into a new keras.json whatever the user wants.
KERAS_DEFAULT_BACKEND = "tensorflow"

import importlib.util
import json
import os
import sys


def keras_json_path():
    """Where Keras reads `keras.json` from (its own rule)."""
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(os.environ.get("KERAS_HOME") or os.path.join(base, ".keras"),
                        "keras.json")


def configured_backend():
    """The backend the user chose (environment, then keras.json), or None (see the module
    for why keras.json's "tensorflow" does not count)."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    try:
        with open(keras_json_path(), encoding="utf-8") as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        return None
    return None if backend in (None, "", KERAS_DEFAULT_BACKEND) else backend


def choose_backend(preferred=("torch", "jax", "tensorflow")):
    """Sets KERAS_BACKEND to the first installed of `preferred` where the user chose no
    backend and Keras is not imported yet; returns the backend chosen (None: Keras' own)."""
    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    backend = configured_backend()
    if backend is None:
        installed = [b for b in preferred if importlib.util.find_spec(b) is not None]
        if installed:
            os.environ["KERAS_BACKEND"] = backend = installed[0]
    return backend
