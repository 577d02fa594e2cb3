"""RunConfig: one definition per setting, checked when made; run.py's flags come from it; a
run's identity and directory are planned once."""

import dataclasses
import subprocess
import sys

import pytest

from helpers import ROOT
from keras_fmnist import run_config
from keras_fmnist import run_data
from keras_fmnist.run_config import RunConfig


def test_frozen_change_with_replace():
    config = RunConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert dataclasses.replace(config, epochs=3).epochs == 3


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "RunConfig.epochs: must be at least 1; got 0"),
    ({"epochs": "10"}, "RunConfig.epochs: must be int; got '10'"),
    ({"epochs": True}, "RunConfig.epochs: must be int; got True"),
    ({"learning_rate": float("nan")}, "RunConfig.learning_rate: must be a finite number"),
    ({"momentum": 1.5}, "RunConfig.momentum: must be at most 1.0; got 1.5"),
    ({"augment": "cutout"}, "RunConfig.augment: must be one of none, basic, mixup"),
    ({"experiment": "study"}, "RunConfig.experiment: must be one of baseline, augment"),
    ({"ema": 1}, "RunConfig.ema: must be bool; got 1"),
    ({"val_fraction": 1.0}, "RunConfig.val_fraction must be in (0, 1); got 1.0"),
    ({"regularizer": "dropblock", "p": 0.0}, "RunConfig.p must be in (0, 1]; got 0.0"),
    ({"deform_layers": (1, 4)}, "RunConfig.deform_layers must be distinct stages"),
    ({"deform_layers": (3, 3)}, "RunConfig.deform_layers must be distinct stages"),
    ({"run_name": "../escaped"}, "RunConfig.run_name must be a plain directory name"),
    ({"run_name": ".hidden"}, "RunConfig.run_name must be a plain directory name"),
    ({"warmup_epochs": 2}, "RunConfig.warmup_epochs needs lr_schedule='cosine'"),
    ({"warmup_epochs": 10, "lr_schedule": "cosine"}, "must be below epochs=10"),
])
def test_bad_settings_are_refused_when_made(changes, message):
    with pytest.raises(ValueError) as caught:
        RunConfig(**changes)
    assert message in str(caught.value)


def test_good_settings_and_a_json_round_trip():
    config = RunConfig(deform_layers=[1, 3], regularizer="stodepth", p=1.0, train_limit=600,
                       learning_rate=1)  # an int rate is a number too
    assert config.deform_layers == (1, 3)  # JSON gives a list; the config holds a tuple
    assert RunConfig(**json_round_trip(config)) == config


def json_round_trip(config):
    import json

    return json.loads(json.dumps(dataclasses.asdict(config)))


def test_identity_and_directory_are_planned_once(monkeypatch, fashion_mnist):
    config = RunConfig(train_limit=600)
    calls = []
    real = run_data.split_sizes
    monkeypatch.setattr(run_data, "split_sizes", lambda c: calls.append(c) or real(c))
    plan = config.planned()
    assert (config.run_dir(), config.identity_hash(), config.identity()) == (
        plan.run_dir, plan.identity_hash, plan.identity)
    assert plan.run_dir.endswith(f"{config.readable_name()}-{plan.identity_hash}")
    assert len(calls) == 1
    # A changed setting is another run: replace makes a new, unplanned config.
    other = dataclasses.replace(config, seed=1)
    assert other.identity_hash() != config.identity_hash() and len(calls) == 2


def test_every_setting_flag_is_a_field_with_its_default():
    """run.py defines one flag per setting field, with the field's default and help."""
    script = (
        "import run\n"
        "from keras_fmnist import run_config\n"
        "for f in run_config.flag_settings():\n"
        "    flag = run.FLAGS[f.name]\n"
        "    assert flag.default == f.default, (f.name, flag.default, f.default)\n"
        "    assert f.metadata['help'][:30] in flag.help, f.name\n"
        "run.FLAGS(['run.py', '--epochs=3', '--stem=cifar', '--ema'])\n"
        "config = run.config_from_flags()\n"
        "assert (config.epochs, config.stem, config.ema) == (3, 'cifar', True), config\n"
        "print(len(run_config.flag_settings()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.split()[-1]) == sum(
        f.metadata["flag"] for f in dataclasses.fields(RunConfig))
    settings = {f.name for f in run_config.flag_settings()}
    assert {"epochs", "learning_rate", "tensorboard", "data_format"} <= settings
    assert not settings & {"experiment", "augment", "deform_layers", "regularizer", "p"}
