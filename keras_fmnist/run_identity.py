"""What identifies a run: every setting that can change its result, and the data it saw.

Two runs with equal identities are the same experiment and share one directory; two runs
whose identities differ in anything never do. The identity is every field of the run's
`RunConfig` except those that only say where output goes or how loudly (`OUTPUT_ONLY`), with
two substitutions that make it about content rather than location: the data directory and
source become a fingerprint of the arrays loaded (Debian's files, a copy elsewhere and
tensorflow-datasets give the same data and so the same identity), and a torchvision weights
path becomes the file's SHA-256. The Keras backend and the split sizes are part of it too.
"""

import dataclasses
import functools
import hashlib
import json
import os

# Settings that cannot change a run's result: where it writes, how it is named, how verbose
# it is, and where the data is read from (replaced by the data's fingerprint).
OUTPUT_ONLY = ("artifacts_dir", "run_name", "verbose", "data_dir", "data_source",
               "tensorboard")
# Settings added after runs were recorded, with the value that reproduces the behaviour from
# before they existed: at that value they are left out of the identity, so adding a setting
# never orphans the recorded runs (their hashes stay what they were).
NEUTRAL_DEFAULTS = {
    "optimizer": "adam",
    "weight_decay": 0.0,
    "lr_schedule": "constant",
    "warmup_epochs": 0,
    "label_smoothing": 0.0,
    "ema": False,
    "tta": False,
}
HASH_LENGTH = 8


def array_fingerprint(*arrays):
    """SHA-256 over the dtype, shape and bytes of each array, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def file_sha256(path):
    """SHA-256 of a file, hashed once per (path, size, mtime): every `run_dir()` asks again."""
    stat = os.stat(path)
    return _file_sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _file_sha256(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(config, data_fingerprint, split, backend, data_format):
    """The identity of a run as a JSON-able dict.

    Args:
        config: the run's RunConfig.
        data_fingerprint: `array_fingerprint` of the four loaded arrays.
        split: {"train": n, "val": n, "test": n}, the examples the run trains, validates and
            tests on.
        backend: the Keras backend name.
        data_format: the model's resolved layout (None in the config means the backend's
            default, which is resolved here so that equal runs share an identity).
    """
    settings = {
        k: v for k, v in dataclasses.asdict(config).items()
        if k not in OUTPUT_ONLY and not (k in NEUTRAL_DEFAULTS and v == NEUTRAL_DEFAULTS[k])
    }
    settings["deform_layers"] = list(settings["deform_layers"])
    settings["data_format"] = data_format
    # A regulariser's knobs mean nothing without it: a baseline run is the same whatever --p.
    if settings.get("regularizer") is None:
        settings.pop("p", None)
    if settings.get("regularizer") != "dropblock":
        settings.pop("block_size", None)
    if settings.get("optimizer", "adam") != "sgd":
        settings.pop("momentum", None)
    if not settings.get("ema", False):
        settings.pop("ema_momentum", None)
    if config.torchvision_weights:
        settings["torchvision_weights"] = {"sha256": file_sha256(config.torchvision_weights)}
    return {
        "settings": settings,
        "backend": backend,
        "data": {"sha256": data_fingerprint, "split": dict(split)},
    }


def identity_hash(identity):
    """A short stable hash of an identity (the suffix of the run's directory)."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]
