"""Run claims: one worker trains a run, however many sweeps or machines share the artifacts.

A worker claims a run before training it by creating its claim file
`<experiment>/.claims/<name>.json` exclusively (`O_CREAT | O_EXCL`), holding its host, pid, the
process's start time and the claim's start time. The check "finished? claimed? stale?" and
the creation happen under an advisory lock on `<experiment>/.claims/<name>.lock`
(`fcntl.flock`; the kernel releases it when a process dies), so two workers can never both
decide a run is theirs. Claim and lock live beside the run's directory, not in it: a run is
replaced by swapping its directory (`keras_fmnist.staging`), and they must stay put.

A claim is stale when its process is gone: on the same host, no process with its pid and
start time exists; on another host (a Ray cluster on shared storage), its owner has not
touched the claim for `STALE_AFTER_SECONDS` (owners touch it every epoch through
`ClaimHeartbeat`). A stale claim is taken over; an interrupted swap is completed or undone
then (`staging.recover`), and leftover `.tmp-*` files (a kill during an atomic write) removed.
"""

import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import socket
import time

import keras

from keras_fmnist import staging

CLAIMS_DIR = ".claims"
# Longer than any epoch of the study on the slowest machine measured (about 6 min on a loaded
# 2-core CPU), so a live owner on another host always refreshes its claim in time.
STALE_AFTER_SECONDS = 3600


def _process_start_ticks(pid):
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces, so count from its closing paren.
    return int(stat[stat.rindex(")") + 2:].split()[19])


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_info():
    """Who is claiming: host, pid, the process's start time, and now."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "process_start_ticks": _process_start_ticks(pid),
        "claimed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def is_stale(info, claim_path, now=None):
    """True when the claim's owner is gone (see the module docstring)."""
    if info.get("host") != socket.gethostname():
        try:
            age = (now or time.time()) - os.path.getmtime(claim_path)
        except OSError:
            return True
        return age > STALE_AFTER_SECONDS
    pid = info.get("pid")
    if not isinstance(pid, int) or not _pid_alive(pid):
        return True
    ticks = info.get("process_start_ticks")
    return ticks is not None and _process_start_ticks(pid) not in (None, ticks)


def _claims_path(run_dir, suffix):
    parent, name = os.path.split(os.path.abspath(run_dir))
    return os.path.join(parent, CLAIMS_DIR, name + suffix)


def claim_path(run_dir):
    """The run's claim file: `<experiment>/.claims/<name>.json`."""
    return _claims_path(run_dir, ".json")


def lock_path(run_dir):
    return _claims_path(run_dir, ".lock")


def read_claim(run_dir):
    """The claim's content, {} for an unreadable claim file, or None when unclaimed."""
    path = claim_path(run_dir)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # half-written by a killed owner: stale by construction


def live_claim(run_dir):
    """The claim of a live owner, or None (unclaimed or stale)."""
    info = read_claim(run_dir)
    if info is None or is_stale(info, claim_path(run_dir)):
        return None
    return info


def describe(info):
    return f"{info.get('host', '?')}:{info.get('pid', '?')} since {info.get('claimed_at', '?')}"


@contextlib.contextmanager
def _locked(run_dir):
    os.makedirs(os.path.dirname(lock_path(run_dir)), exist_ok=True)
    with open(lock_path(run_dir), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# Claims this process holds, so that an interrupt handler can release them before exiting.
_HELD = {}


def release_all():
    """Releases every claim this process holds (an interrupt handler's last act)."""
    for claim in list(_HELD.values()):
        claim.release()


@dataclasses.dataclass
class Claim:
    """A claim held by this process; `release()` gives it up (idempotent)."""

    run_dir: str
    info: dict

    @property
    def path(self):
        return claim_path(self.run_dir)

    def touch(self):
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self):
        _HELD.pop(self.path, None)
        with contextlib.suppress(FileNotFoundError):
            if read_claim(self.run_dir) == self.info:
                os.remove(self.path)


def remove_temp_files(run_dir):
    """Removes `.tmp-*` files left by a process killed during an atomic write, in the run's
    directory and its staging directory."""
    removed = []
    paths = [os.path.join(d, ".tmp-*") for d in (run_dir, staging.staging_dir(run_dir))]
    for path in [p for pattern in paths for p in glob.glob(pattern)]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def try_claim(run_dir, finished):
    """Claims `run_dir` unless it is finished or claimed by a live owner.

    Args:
        run_dir: the run's directory (it need not exist).
        finished: a function returning a truthy value (e.g. the recorded metrics) when the run
            is finished; called under the lock, right before claiming, after an interrupted
            swap of the run's directory has been completed or undone.

    Returns:
        ("done", value of finished()), ("claimed", the live owner's info) or
        ("claim", a Claim now held by this process).
    """
    path = claim_path(run_dir)
    with _locked(run_dir):
        info = read_claim(run_dir)
        owner_alive = info is not None and not is_stale(info, path)
        if not owner_alive:
            # Nobody writes here now: finish what a killed owner left half done.
            staging.recover(run_dir)
            remove_temp_files(run_dir)
        done = finished()
        if done:
            return "done", done
        if owner_alive:
            return "claimed", info
        if info is not None:
            os.remove(path)
        info = owner_info()
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
    claim = Claim(run_dir, info)
    _HELD[claim.path] = claim
    return "claim", claim


class ClaimHeartbeat(keras.callbacks.Callback):
    """Touches a held claim every epoch, so workers on other hosts see its owner is alive."""

    def __init__(self, claim):
        super().__init__()
        self.claim = claim

    def on_epoch_end(self, epoch, logs=None):
        self.claim.touch()
