"""Training recipes beyond the study's: settings of `RunConfig`, each ingredient a Keras piece.

`STRONG` is this project's recipe for the study's network family trained from scratch
(`python run.py --experiment=strong`, `flags/strong.cfg`). Its ingredients, each removable
for the ablation (`STRONG_ABLATIONS`):

- a full-resolution first stage (`stem="cifar"`: 3x3 stride-1 convolution, no max-pool, as
  the published Fashion-MNIST ResNets and WRNs use; the study's stem shrinks 28x28 to 7x7
  before stage 1);
- SGD with Nesterov momentum 0.9 (Sutskever et al. 2013) at 0.1 for batch 128, decoupled
  weight decay 5e-4, cosine decay to 0 after a linear warm-up (Goyal et al. 2017;
  Loshchilov & Hutter 2017);
- label smoothing 0.1 (Szegedy et al. 2016);
- a moving average of the weights (`use_ema`, momentum 0.999; Polyak & Juditsky 1992),
  which is what validation, the checkpoint and the test see;
- pad-4 random crop + horizontal flip (`augment="crop_flip"`);
- every epoch validated, the best validation epoch kept (`patience=0`: no early stop);
- the test accuracy with horizontal-flip test-time augmentation reported beside the plain
  one (`tta`), never instead of it.
"""

STRONG = {
    "stem": "cifar",
    "optimizer": "sgd",
    "learning_rate": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "lr_schedule": "cosine",
    "warmup_epochs": 2,
    "label_smoothing": 0.1,
    "ema": True,
    "ema_momentum": 0.999,
    "augment": "crop_flip",
    "epochs": 30,
    "patience": 0,
    "tta": True,
}

# Each ingredient removed in turn: {name: the settings that undo it}.
STRONG_ABLATIONS = {
    "study stem (7x7/2 + max-pool)": {"stem": "imagenet"},
    "Adam 3e-4 instead of SGD": {"optimizer": "adam", "learning_rate": 3e-4,
                                 "weight_decay": 0.0},
    "no weight decay": {"weight_decay": 0.0},
    "constant learning rate": {"lr_schedule": "constant", "warmup_epochs": 0},
    "no label smoothing": {"label_smoothing": 0.0},
    "no weight averaging": {"ema": False},
    "no augmentation": {"augment": "none"},
}
