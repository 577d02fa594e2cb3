"""The study's experiments as lists of runs, and the numbers it reported (docs/STUDY.md).

`plan` turns an experiment name and its choices (stages to deform, augmentation, regulariser,
p) into the `RunConfig`s to train; the sweep runner trains them and `report` compares them
with `STUDY`.
"""

import dataclasses
import itertools

from keras_fmnist.models.resnet import REGULARIZERS

EXPERIMENTS = ("baseline", "augment", "deform", "regularize", "final", "study", "headline",
               "strong", "report")
AUGMENTATIONS = ("none", "basic", "mixup", "cutmix")
# Beyond the study (the strong recipe): accepted by --augment, not part of "all".
EXTRA_AUGMENTATIONS = ("crop_flip", "crop_flip_cutmix")
# p in 0.1 .. 1.0 as the study swept it. p = 1.0 drops every unit (DropBlock) or every block
# (stochastic depth): nothing is left to rescale, so those runs are planned but reported as
# not trainable rather than silently left out.
P_SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 11))
STAGES = (1, 2, 3)
# The study's deformable sweep: all 8 subsets of stages {1, 2, 3}.
DEFORM_CONFIGS = tuple(
    combo for r in range(len(STAGES) + 1) for combo in itertools.combinations(STAGES, r)
)
STUDY_BEST_LAYERS = (1, 3)

# Validation / test accuracies the study reported (percent), docs/STUDY.md.
STUDY = {
    "baseline": {"val_epoch1": 87.42, "best_val": 93.69, "best_epoch": 8, "val_epoch10": 92.97},
    "augment": {"basic": 76.72, "mixup": 82.86, "cutmix": 92.12},
    "deform": {"best_layers": (1, 3), "best_val": 93.84},
    "final": {"layers": (1, 3), "test": 92.96},
    "regularize": {"best_p": {"dropblock": 0.1, "stodepth": 0.1},
                   "test": {"dropblock": 92.79, "stodepth": 81.50}},
}

# What each experiment uses when the flag is left unset: the study moved on with CutMix and
# deformable stages 1+3 after experiments 2 and 3.
DEFAULT_AUGMENT = {"baseline": "none", "augment": "all", "deform": "cutmix",
                   "regularize": "cutmix", "final": "cutmix", "strong": "crop_flip"}
DEFAULT_LAYERS = {"baseline": "none", "augment": "none", "deform": "all",
                  "regularize": "1,3", "final": "1,3", "strong": "none"}


# The configurations behind the study's conclusions, as (experiment, choices): the baseline;
# each augmentation; deformable stages 3 (the stages our own deformable sweep selected) and
# 1+3 (the study's), with CutMix; DropBlock and stochastic depth at p = 0.1 on stage 3 with
# CutMix; the final model on train+validation. Each run is the very run of its experiment
# (same experiment name, same identity), so seed 0's runs of the study are these runs.
HEADLINE = (
    ("baseline", {}),
    ("augment", {"augment": "basic"}),
    ("augment", {"augment": "mixup"}),
    ("augment", {"augment": "cutmix"}),
    ("deform", {"layers": "3", "augment": "cutmix"}),
    ("deform", {"layers": "1,3", "augment": "cutmix"}),
    ("regularize", {"layers": "3", "augment": "cutmix", "regularizer": "dropblock", "p": "0.1"}),
    ("regularize", {"layers": "3", "augment": "cutmix", "regularizer": "stodepth", "p": "0.1"}),
    ("final", {"layers": "3", "augment": "cutmix"}),
)


class PlanError(ValueError):
    """An experiment choice that cannot be planned (reported as a one-line usage error)."""


def parse_layers(text):
    """"all" -> the 8 subsets; "none" -> [()]; "1,3" -> [(1, 3)].

    Empty lists, empty items ("1,") and repeated stages ("1,1") are errors, not guesses.
    """
    text = str(text).strip().lower()
    if text == "all":
        return list(DEFORM_CONFIGS)
    if text == "none":
        return [()]
    usage = f"--layers must be all, none or stages from 1,2,3 (e.g. 1,3); got {text!r}"
    items = [item.strip() for item in text.split(",")]
    if not text or any(not item for item in items):
        raise PlanError(usage)
    try:
        stages = [int(item) for item in items]
    except ValueError:
        raise PlanError(usage) from None
    if any(s not in STAGES for s in stages):
        raise PlanError(usage)
    repeated = sorted({s for s in stages if stages.count(s) > 1})
    if repeated:
        raise PlanError(f"--layers names stage {repeated[0]} more than once; got {text!r}")
    return [tuple(sorted(stages))]


def parse_p(text):
    """"sweep" -> P_SWEEP; "0.1" -> (0.1,)."""
    text = str(text).strip().lower()
    if text == "sweep":
        return list(P_SWEEP)
    try:
        p = float(text)
    except ValueError:
        p = None
    if p is None or not 0.0 < p < 1.0:
        raise PlanError(f"--p must be sweep or a number in (0, 1); got {text!r}")
    return [p]


def layers_name(stages):
    return "+".join(str(s) for s in stages) if stages else "none"


def trainable(config):
    """False for the p = 1.0 sweep point (nothing survives to rescale)."""
    return not (config.regularizer and config.p >= 1.0)


def plan(experiment, base, layers=None, augment=None, regularizer="dropblock", p="0.1"):
    """The runs of one experiment.

    Args:
        experiment: one of EXPERIMENTS except "report".
        base: a RunConfig with the shared settings (epochs, seed, limits, ...).
        layers: --layers ("all", "none", "1,3"); None for the experiment's default.
        augment: --augment (AUGMENTATIONS or "all"); None for the experiment's default.
        regularizer: --regularizer for the regularize experiment.
        p: --p ("sweep" or a number) for the regularize experiment.

    Returns:
        A list of RunConfig, in training order.
    """
    if experiment not in EXPERIMENTS or experiment in ("report", "study", "headline"):
        raise PlanError(f"no runs to plan for experiment {experiment!r}")
    augment = augment or DEFAULT_AUGMENT[experiment]
    augments = list(AUGMENTATIONS) if augment == "all" else [augment]
    known = AUGMENTATIONS + EXTRA_AUGMENTATIONS
    if augment != "all" and augment not in known:
        raise PlanError(f"--augment must be one of {', '.join(known)}, all; got {augment!r}")
    if len(augments) > 1 and experiment != "augment":
        raise PlanError("--augment=all is for --experiment=augment")
    layer_sets = parse_layers(layers or DEFAULT_LAYERS[experiment])
    if len(layer_sets) > 1 and experiment != "deform":
        raise PlanError("--layers=all is for --experiment=deform")
    ps = [None]
    if experiment == "strong" and base.regularizer is not None:
        ps = parse_p(p)  # the study's regularisers added to the recipe
        regularizer = base.regularizer
    if experiment == "regularize":
        if regularizer not in REGULARIZERS:
            raise PlanError(f"--regularizer must be one of {', '.join(REGULARIZERS)}")
        ps = parse_p(p)
    runs = []
    for aug in augments:
        for stages in layer_sets:
            for value in ps:
                changes = {"experiment": experiment, "augment": aug, "deform_layers": stages}
                if value is not None:
                    changes.update(regularizer=regularizer, p=value)
                if experiment == "final":
                    changes.update(train_on_full=True, patience=0)
                runs.append(dataclasses.replace(base, **changes))
    return runs
