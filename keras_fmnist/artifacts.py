"""Atomic artifact writes: a temporary file in the target's directory, then a rename.

`os.replace` within one directory is atomic on POSIX, so a reader (or a resumed sweep) sees
either the previous complete file or the new complete file, never a truncated one.
"""

import contextlib
import io
import json
import math
import os
import tempfile

from keras_fmnist import saving


# Temporary files of atomic writes in progress in this process, so that an interrupt handler
# can remove them before the process exits (see `remove_active_temp_files`).
_ACTIVE_TEMP_FILES = set()


def remove_active_temp_files():
    """Removes the temporary files of this process's unfinished atomic writes."""
    for tmp in list(_ACTIVE_TEMP_FILES):
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        _ACTIVE_TEMP_FILES.discard(tmp)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """Yields a temporary path beside `path`; renames it onto `path` if the block succeeds.

    `suffix` defaults to the target's extension, since some writers (Keras' `model.save`)
    choose the format by it.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    _ACTIVE_TEMP_FILES.add(tmp)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        if e.filename is None:  # a failed write names no file: say which artifact it was
            raise OSError(e.errno, e.strerror, path) from e
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        _ACTIVE_TEMP_FILES.discard(tmp)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    """Writes strict JSON: non-finite floats (a diverged run's NaN loss) become null."""
    text = json.dumps(_finite(obj), indent=2, sort_keys=True, default=_jsonable,
                      allow_nan=False)
    write_text(path, text + "\n")


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy / backend arrays
        value = value.tolist()
        if isinstance(value, list):
            return _finite(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_figure(fig, path, dpi=120):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    write_bytes(path, buffer.getvalue())


def save_model(model, path):
    """The model as a `.keras` file that loads and predicts on every backend
    (`keras_fmnist.saving`), written atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        saving.save_model(getattr(model, "stock_model", model), tmp)


def _jsonable(value):
    if hasattr(value, "item"):  # numpy / backend scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
