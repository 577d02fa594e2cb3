"""A run trains beside its directory and replaces it in one atomic step when it finishes.

A run's directory `<experiment>/<name>` holds a finished run or nothing: model, history,
figures and `metrics.json` of one training, always together. A run trains in its staging
directory `<experiment>/.incoming-<name>` (with its mid-run checkpoint, `resume/`); when it
has finished, `commit` swaps the two directories with one `renameat2(RENAME_EXCHANGE)` (the
Linux system call that exchanges two paths atomically) and removes the old one. Interrupted
at any point, `<name>` holds either the previous finished run, intact, or the new one, and the
staging directory holds what a rerun needs: the checkpoint to resume from, or a finished run
whose swap `recover` completes.

Where the filesystem cannot exchange (some network filesystems), `commit` moves the old
directory aside to `.replaced-<name>` and the new one into place: two renames, each atomic,
with a window in which `<name>` is missing; `recover` then puts back whichever complete run
belongs there. A `.commit` marker in the new run's directory says which side is new.
"""

import contextlib
import ctypes
import ctypes.util
import errno
import os
import shutil

STAGING_PREFIX = ".incoming-"
REPLACED_PREFIX = ".replaced-"
COMMIT_MARKER = ".commit"
RESUME_DIR = "resume"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def staging_dir(run_dir):
    """Where `run_dir`'s next training writes until it finishes."""
    parent, name = os.path.split(os.path.abspath(run_dir))
    return os.path.join(parent, STAGING_PREFIX + name)


def _replaced_dir(run_dir):
    parent, name = os.path.split(os.path.abspath(run_dir))
    return os.path.join(parent, REPLACED_PREFIX + name)


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _libc_renameat2()


def exchange(a, b):
    """Swaps paths `a` and `b` atomically; False where the system or filesystem cannot."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(code)}")


def _fsync_dir(path):
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mark(directory):
    with open(os.path.join(directory, COMMIT_MARKER), "w", encoding="utf-8") as f:
        f.flush()
        os.fsync(f.fileno())


def _unmark(directory):
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(directory, COMMIT_MARKER))


def commit(run_dir):
    """Makes the finished run in `staging_dir(run_dir)` the run at `run_dir`, atomically,
    and removes what it replaced. The caller holds the run's claim."""
    staging = staging_dir(run_dir)
    shutil.rmtree(os.path.join(staging, RESUME_DIR), ignore_errors=True)
    _mark(staging)
    _swap_in(run_dir, staging)


def _swap_in(run_dir, staging):
    """Puts the marked `staging` at `run_dir` (see the module) and cleans up."""
    run_dir = os.path.abspath(run_dir)
    parent = os.path.dirname(run_dir)
    if not os.path.exists(run_dir):
        os.rename(staging, run_dir)
    elif not exchange(staging, run_dir):
        replaced = _replaced_dir(run_dir)
        shutil.rmtree(replaced, ignore_errors=True)
        os.rename(run_dir, replaced)
        os.rename(staging, run_dir)
    _fsync_dir(parent)
    _finish(run_dir)


def _finish(run_dir):
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)
    shutil.rmtree(_replaced_dir(run_dir), ignore_errors=True)
    _unmark(run_dir)
    _fsync_dir(os.path.dirname(os.path.abspath(run_dir)))


def recover(run_dir):
    """Completes or undoes a `commit` that was interrupted (call it holding the run's lock).

    Returns what was done: None, "committed" (a finished run's swap completed) or "restored"
    (the previous run put back where the fallback had moved it aside).
    """
    staging = staging_dir(run_dir)
    replaced = _replaced_dir(run_dir)
    if os.path.exists(os.path.join(staging, COMMIT_MARKER)):
        _swap_in(run_dir, staging)  # the new run had not been swapped in yet
        return "committed"
    if os.path.exists(os.path.join(run_dir, COMMIT_MARKER)):
        _finish(run_dir)  # swapped in; what it replaced was not yet removed
        return None
    if not os.path.exists(run_dir) and os.path.isdir(replaced):
        os.rename(replaced, run_dir)  # the fallback moved it aside and stopped there
        _fsync_dir(os.path.dirname(os.path.abspath(run_dir)))
        return "restored"
    shutil.rmtree(replaced, ignore_errors=True)
    return None


def discard(run_dir):
    """Removes the staging directory (an unfinished attempt that cannot be resumed)."""
    shutil.rmtree(staging_dir(run_dir), ignore_errors=True)
