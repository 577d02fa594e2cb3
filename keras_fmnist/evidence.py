"""What the seeds say about the study's conclusions: paired differences and their intervals.

For each of the study's comparisons (`COMPARISONS`), the two configurations' runs are paired
by seed (same split, same data order, same initial weights where the architectures share
them) and the per-seed differences d_i = a_i - b_i summarised as

    mean  d = (1/n) sum d_i
    95% confidence interval  d +- t(0.975, n - 1) * s / sqrt(n),   s the sample std of d_i

(Student's t; the seed-to-seed variation is the noise). The verdict beside the study's own
difference: *reproduced* where the interval excludes zero on the study's side,
*reversed* where it excludes zero on the other side, *not distinguishable at this n* where
it holds zero (or fewer than two seeds are paired).
"""

import dataclasses
import math
import statistics

# t(0.975, df) for df = 1..30 (two-sided 95%); beyond 30 the normal quantile.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
          2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
          2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

REPRODUCED = "reproduced"
REVERSED = "reversed"
NOT_DISTINGUISHABLE = "not distinguishable at this n"


def t_quantile_975(df):
    """The 0.975 quantile of Student's t with `df` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df must be >= 1; got {df}")
    return _T_975[df - 1] if df <= len(_T_975) else 1.960


@dataclasses.dataclass(frozen=True)
class Paired:
    """Paired differences a - b over the seeds both have."""

    seeds: tuple
    differences: tuple

    @property
    def n(self):
        return len(self.differences)

    @property
    def mean(self):
        return statistics.fmean(self.differences) if self.differences else None

    @property
    def std(self):
        return statistics.stdev(self.differences) if self.n >= 2 else None

    @property
    def interval(self):
        """(low, high) of the 95% Student-t confidence interval of the mean, or None."""
        if self.n < 2:
            return None
        half = t_quantile_975(self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half


def paired(a, b):
    """`a`, `b`: {seed: value}. The differences a - b over their common seeds, seed order."""
    seeds = tuple(sorted(set(a) & set(b)))
    return Paired(seeds, tuple(a[s] - b[s] for s in seeds))


def verdict(difference, study_difference):
    """The verdict of a `Paired` against the sign of the study's difference (see module)."""
    interval = difference.interval
    if interval is None or interval[0] <= 0.0 <= interval[1]:
        return NOT_DISTINGUISHABLE
    ours_positive = interval[0] > 0.0
    return REPRODUCED if ours_positive == (study_difference > 0) else REVERSED


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One headline configuration, recognised in a run's recorded `config`."""

    label: str
    fields: dict

    def matches(self, config):
        if config.get("epochs") != 10 or config.get("train_limit") or config.get("test_limit"):
            return False
        if config.get("stem", "imagenet") != "imagenet" or config.get("optimizer", "adam") != "adam":
            return False
        for key, value in self.fields.items():
            got = config.get(key)
            if key == "deform_layers":
                got = tuple(got or ())
            if got != value:
                return False
        return True


def _config(label, **fields):
    defaults = {"deform_layers": (), "regularizer": None, "train_on_full": False}
    return Configuration(label, {**defaults, **fields})


CONFIGURATIONS = {
    "none": _config("no augmentation (baseline)", experiment="baseline", augment="none"),
    "basic": _config("basic augmentation", experiment="augment", augment="basic"),
    "mixup": _config("MixUp", experiment="augment", augment="mixup"),
    # Also the deformable sweep's "no deformable stage" run: the same training (its runs
    # equal this one's to the bit), recorded under the augment experiment.
    "cutmix": _config("CutMix", experiment="augment", augment="cutmix"),
    "deform3": _config("CutMix, deformable stage 3", experiment="deform", augment="cutmix",
                       deform_layers=(3,)),
    "deform13": _config("CutMix, deformable stages 1+3", experiment="deform",
                        augment="cutmix", deform_layers=(1, 3)),
    "dropblock": _config("CutMix, stage 3, DropBlock p=0.1", experiment="regularize",
                         augment="cutmix", deform_layers=(3,), regularizer="dropblock", p=0.1),
    "stodepth": _config("CutMix, stage 3, stochastic depth p=0.1", experiment="regularize",
                        augment="cutmix", deform_layers=(3,), regularizer="stodepth", p=0.1),
    "final": _config("final: CutMix, stage 3, train+validation", experiment="final",
                     augment="cutmix", deform_layers=(3,), train_on_full=True),
}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One conclusion of the study: configuration `a` against `b` on `metric`, and what the
    study measured (its difference a - b in points; None where it reported no number)."""

    a: str
    b: str
    metric: str  # "val" (best validation accuracy) or "test"
    study_difference: float | None
    study_claim: str


# The study's own numbers (docs/STUDY.md): basic 76.72, MixUp 82.86, CutMix 92.12 best val;
# baseline 93.69 best val; deformable 1+3 93.84 best val (CutMix); final 1+3 92.96 test;
# DropBlock 92.79 and stochastic depth 81.50 test (p = 0.1, CutMix, stages 1+3).
COMPARISONS = (
    Comparison("basic", "none", "val", 76.72 - 93.69, "basic augmentation hurts"),
    Comparison("mixup", "none", "val", 82.86 - 93.69, "MixUp hurts"),
    Comparison("cutmix", "none", "val", 92.12 - 93.69, "CutMix hurts (slightly)"),
    Comparison("mixup", "basic", "val", 82.86 - 76.72, "MixUp beats basic"),
    Comparison("cutmix", "basic", "val", 92.12 - 76.72, "CutMix beats basic"),
    Comparison("deform3", "cutmix", "val", None, "stage 3 alone: not reported"),
    Comparison("deform13", "cutmix", "val", 93.84 - 92.12,
               "deformable stages 1+3 help (its best of 8)"),
    Comparison("dropblock", "deform3", "test", 92.79 - 92.96,
               "DropBlock about as good as none (against its final model)"),
    Comparison("stodepth", "deform3", "test", 81.50 - 92.96, "stochastic depth hurts"),
    Comparison("dropblock", "stodepth", "test", 92.79 - 81.50,
               "DropBlock beats stochastic depth"),
)


def best_validation(metrics):
    values = (metrics.get("history") or {}).get("val_accuracy") or []
    if not values or any(v is None for v in values):
        return None
    return max(values)


def _metric(metrics, metric):
    return best_validation(metrics) if metric == "val" else metrics.get("test_accuracy")


def by_seed(runs, configuration, metric):
    """{seed: value (percent)} of the finished runs of `configuration`."""
    out = {}
    for m in runs:
        if m.get("status") == "finished" and configuration.matches(m.get("config") or {}):
            value = _metric(m, metric)
            if value is not None:
                out[m["config"]["seed"]] = 100.0 * value
    return out


@dataclasses.dataclass(frozen=True)
class Row:
    comparison: Comparison
    difference: Paired
    verdict: str


def evaluate(runs):
    """A `Row` per comparison, from finished runs' recorded metrics."""
    rows = []
    for c in COMPARISONS:
        difference = paired(by_seed(runs, CONFIGURATIONS[c.a], c.metric),
                            by_seed(runs, CONFIGURATIONS[c.b], c.metric))
        if c.study_difference is None:
            rows.append(Row(c, difference, _sign_only(difference)))
        else:
            rows.append(Row(c, difference, verdict(difference, c.study_difference)))
    return rows


def _sign_only(difference):
    """Without a study number: whether our interval shows a difference at all."""
    interval = difference.interval
    if interval is None or interval[0] <= 0.0 <= interval[1]:
        return NOT_DISTINGUISHABLE
    return "differs (no study number)"


def summaries(runs):
    """{configuration key: (best validation {seed: %}, test {seed: %})}."""
    return {key: (by_seed(runs, c, "val"), by_seed(runs, c, "test"))
            for key, c in CONFIGURATIONS.items()}


def pooled_seed_std(values_by_configuration):
    """The seed-to-seed standard deviation pooled over configurations with two seeds or
    more (sqrt of the mean of their variances, weighted by degrees of freedom), or None."""
    total, df = 0.0, 0
    for values in values_by_configuration:
        if len(values) >= 2:
            total += statistics.variance(values) * (len(values) - 1)
            df += len(values) - 1
    return math.sqrt(total / df) if df else None


def within_noise(margin, seed_std):
    """True if a single-seed margin between two configurations is within what two runs
    differing only in their seed differ by at 95% (1.96 * sqrt(2) * seed std)."""
    return margin < 1.96 * math.sqrt(2.0) * seed_std
