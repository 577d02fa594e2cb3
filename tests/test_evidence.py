"""The statistics behind REPORT.md's verdicts, on synthetic runs with known answers
(keras_fmnist.evidence); no backend code."""

import math
import os

import pytest

from keras_fmnist import artifacts
from keras_fmnist import evidence
from keras_fmnist import report

pytestmark = pytest.mark.backend_independent


def test_the_t_interval_of_a_paired_difference():
    d = evidence.paired({0: 91.0, 1: 91.2, 2: 91.4, 7: 50.0}, {0: 90.0, 1: 90.0, 2: 90.0})
    assert d.seeds == (0, 1, 2) and d.n == 3  # seed 7 has no partner
    assert d.mean == pytest.approx(1.2)
    assert d.std == pytest.approx(0.2)
    half = 4.303 * 0.2 / math.sqrt(3)  # t(0.975, 2) = 4.303
    assert d.interval == pytest.approx((1.2 - half, 1.2 + half))
    assert evidence.verdict(d, study_difference=+1.7) == evidence.REPRODUCED
    assert evidence.verdict(d, study_difference=-11.0) == evidence.REVERSED
    wide = evidence.paired({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert wide.interval[0] < 0 < wide.interval[1]  # 2 +- 2.48
    assert evidence.verdict(wide, 1.0) == evidence.NOT_DISTINGUISHABLE
    single = evidence.paired({0: 2.0}, {0: 1.0})
    assert single.interval is None
    assert evidence.verdict(single, 1.0) == evidence.NOT_DISTINGUISHABLE


def test_t_quantiles_and_the_noise_bound():
    assert evidence.t_quantile_975(1) == 12.706 and evidence.t_quantile_975(10) == 2.228
    assert evidence.t_quantile_975(200) == 1.960
    assert evidence.pooled_seed_std([[1.0, 3.0], [2.0, 2.0, 2.0], [5.0]]) == pytest.approx(
        math.sqrt((2.0 * 1 + 0.0 * 2) / 3))
    assert evidence.within_noise(0.5, seed_std=0.3)  # 1.96 * sqrt(2) * 0.3 = 0.83
    assert not evidence.within_noise(1.0, seed_std=0.3)


def _run(root, experiment, seed, val, test, **config):
    config = {"experiment": experiment, "seed": seed, "epochs": 10, "augment": "none",
              "deform_layers": [], "regularizer": None, "p": 0.1, "train_on_full": False,
              "stem": "imagenet", "optimizer": "adam", **config}
    name = f"{experiment}-{config['augment']}-{seed}-{config['regularizer']}"
    metrics = {"status": "finished", "experiment": experiment, "config": config,
               "test_accuracy": test, "history": {"val_accuracy": [val - 0.01, val]},
               "epochs_run": 2, "wall_seconds": 60.0, "identity": None,
               "versions": {"keras_backend": "torch"}}
    artifacts.write_json(os.path.join(root, experiment, name, "metrics.json"), metrics)


def test_the_report_states_mean_interval_and_verdict(tmp_path):
    root = str(tmp_path)
    for seed, gain in ((0, 0.010), (1, 0.012), (2, 0.014)):
        _run(root, "baseline", seed, 0.900, 0.890)
        _run(root, "augment", seed, 0.900 + gain, 0.890, augment="cutmix")
    text = open(report.write_report(root)).read()
    section = text.split("## 6.")[1]
    assert "| no augmentation (baseline) | 90.00% ± 0.00 (n=3) | 89.00% ± 0.00 (n=3) | 0,1,2 |" \
        in section
    row = [l for l in section.splitlines() if l.startswith("| CutMix vs no augmentation")][0]
    # +1.20 points, t interval +-0.50; the study measured -1.57: our interval excludes zero on
    # the other side.
    assert "+1.20 [+0.70, +1.70] (n=3) | reversed | CutMix hurts (slightly) |" in row
    assert os.path.isfile(tmp_path / "figures" / "evidence_paired_differences.png")
