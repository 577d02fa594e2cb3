"""Replacing a finished run is one atomic step, and an interrupted replacement is completed or
undone at the next handling (keras_fmnist.staging); no backend code."""

import os

import pytest

from keras_fmnist import staging

pytestmark = pytest.mark.backend_independent


def _run(directory, tag):
    os.makedirs(directory, exist_ok=True)
    for name in ("model.keras", "history.csv", "metrics.json"):
        with open(os.path.join(directory, name), "w") as f:
            f.write(f"{tag} {name}")


def _tags(directory):
    return {open(os.path.join(directory, n)).read().split()[0] for n in
            ("model.keras", "history.csv", "metrics.json")}


@pytest.mark.parametrize("can_exchange", [True, False])
def test_commit_replaces_the_run_as_a_whole(tmp_path, monkeypatch, can_exchange):
    if not can_exchange:
        monkeypatch.setattr(staging, "exchange", lambda a, b: False)
    run_dir = str(tmp_path / "run")
    _run(run_dir, "old")
    _run(staging.staging_dir(run_dir), "new")
    os.makedirs(os.path.join(staging.staging_dir(run_dir), staging.RESUME_DIR))
    staging.commit(run_dir)
    assert _tags(run_dir) == {"new"}
    assert sorted(os.listdir(tmp_path)) == ["run"]
    assert sorted(os.listdir(run_dir)) == ["history.csv", "metrics.json", "model.keras"]


def test_the_exchange_is_one_system_call_here(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    assert staging.exchange(str(a), str(b))  # Linux: renameat2(RENAME_EXCHANGE)
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


class Crash(Exception):
    pass


def _crash_on(monkeypatch, function_name, call):
    """Makes the `call`-th call of os.<function_name> raise Crash (a kill there)."""
    original = getattr(os, function_name)
    calls = []

    def crashing(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise Crash()
        return original(*args, **kwargs)

    monkeypatch.setattr(staging.os, function_name, crashing)


@pytest.mark.parametrize("where", [
    ("exchange", None),  # killed before the swap
    ("rmtree", None),  # killed after the swap, before the old run was removed
    ("rename", 1),  # fallback: killed before moving the old run aside
    ("rename", 2),  # fallback: old run moved aside, new one not yet in place
])
def test_an_interrupted_commit_is_completed_or_undone(tmp_path, monkeypatch, where):
    function, call = where
    run_dir = str(tmp_path / "run")
    _run(run_dir, "old")
    _run(staging.staging_dir(run_dir), "new")
    with monkeypatch.context() as patch:
        if function == "exchange":
            patch.setattr(staging, "exchange", lambda a, b: (_ for _ in ()).throw(Crash()))
        elif function == "rmtree":  # its first call removes resume/, before the swap
            original, calls = staging.shutil.rmtree, []

            def rmtree(*args, **kwargs):
                calls.append(args)
                if len(calls) == 2:
                    raise Crash()
                return original(*args, **kwargs)

            patch.setattr(staging.shutil, "rmtree", rmtree)
        else:
            patch.setattr(staging, "exchange", lambda a, b: False)
            _crash_on(patch, "rename", call)
        with pytest.raises(Crash):
            staging.commit(run_dir)
    # At any point a complete run (never a mix) is at run_dir or put back there by recover.
    if os.path.exists(run_dir):
        assert len(_tags(run_dir)) == 1
    staging.recover(run_dir)
    assert _tags(run_dir) == {"new"}  # the finished retrain was committed
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_recover_puts_back_a_run_the_fallback_moved_aside_without_a_replacement(tmp_path):
    run_dir = str(tmp_path / "run")
    _run(str(tmp_path / ".replaced-run"), "old")
    assert staging.recover(run_dir) == "restored"
    assert _tags(run_dir) == {"old"}


def test_an_unfinished_attempt_is_left_for_resuming(tmp_path):
    run_dir = str(tmp_path / "run")
    _run(run_dir, "old")
    resume = os.path.join(staging.staging_dir(run_dir), staging.RESUME_DIR)
    os.makedirs(resume)
    assert staging.recover(run_dir) is None
    assert os.path.isdir(resume) and _tags(run_dir) == {"old"}
