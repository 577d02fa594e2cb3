"""The study's ResNet-18 as a functional Keras model whose layers map 1:1 to torchvision's.

torchvision's resnet18 (He et al. 2015) with the study's adaptations: a 1-channel stem, stage 4
("layer4") removed and a 256 -> num_classes head. Layer names are torchvision's module paths with
"_" for "." (`conv1`, `bn1`, `layer1_0_conv1`, `layer2_0_downsample_0`, `fc`): Keras' torch
backend registers variables as torch parameters, whose names may not contain ".".
`torchvision_module_name` maps one to the other, which is what `load_torchvision_weights` uses.

The graph is stock Keras layers (Conv2D, BatchNormalization, ReLU, Add, ZeroPadding2D,
MaxPooling2D, GlobalAveragePooling2D, Dense) plus the study's own layers where configured
(DeformConv2D, DropBlock2D, StochasticDepth), as a plain functional `keras.Model`: it saves
and loads without this package and every intermediate output can be tapped.
`keras_fmnist.accelerate` is the separate step that makes it fast on torch.

Padding is torch's wherever Keras' "same" would differ: for a stride-2 convolution over an
even-sized map Keras puts the extra row at the bottom only, which would shift every feature
by half a pixel against torchvision, so strided convolutions and the stem's max-pool get an
explicit `ZeroPadding2D` (for the max-pool, zeros equal torch's -inf padding because its
input is a ReLU's output).

Per-stage block types make the variants: a deformed stage is BasicBlock + DeformConvBlock as the
study placed it; `regularizer` swaps every BasicBlock for its DropBlock or stochastic-depth
variant.
"""

from collections.abc import Sequence

import keras

from keras_fmnist.backend import layout
from keras_fmnist.layers.deform_conv2d import DeformConv2D
from keras_fmnist.layers.drop_block import DropBlock2D
from keras_fmnist.layers.stochastic_depth import StochasticDepth
from keras_fmnist.layers.stochastic_depth import stochastic_depth_rates

STEMS = ("imagenet", "cifar")
REGULARIZERS = ("dropblock", "stodepth")
STOCHASTIC_DEPTH_RULES = ("uniform", "linear")
STAGE_FILTERS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 2
_BN_EPSILON = 1e-5  # torch's default
_BN_MOMENTUM = 0.9  # Keras' moving-average momentum == 1 - torch's momentum (0.1)


def torchvision_module_name(layer_name):
    """`layer2_0_downsample_0` -> `layer2.0.downsample.0`; `conv1`, `fc` stay as they are."""
    return layer_name.replace("_", ".")


def default_data_format(backend: str | None = None) -> str:
    """The faster internal layout for the backend, the one `run.py` trains with.

    torch: channels_first, torch's own layout (`python -m keras_fmnist.bench --data-format`
    measures both; benchmarks/results/). Other backends keep Keras' own default,
    `keras.config.image_data_format()`. `build_resnet18` itself defaults to channels_last,
    the layout every backend runs on every machine.
    """
    backend = backend or keras.backend.backend()
    return "channels_first" if backend == "torch" else keras.config.image_data_format()


def _bn(name, axis):
    return keras.layers.BatchNormalization(
        axis=axis, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, name=name
    )


def _conv(x, filters, kernel_size, strides, name, data_format):
    """A bias-free convolution padded as torch pads: (k - 1) // 2 on every side."""
    pad = (kernel_size - 1) // 2
    # Keras' "same" is torch's padding for stride 1 and an odd kernel, and not otherwise.
    explicit = pad and strides > 1
    if explicit:
        x = keras.layers.ZeroPadding2D(pad, data_format=data_format, name=f"{name}_pad")(x)
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="valid" if explicit or not pad else "same",
        use_bias=False,
        data_format=data_format,
        name=name,
    )(x)


class BlockOptions:
    """What a BasicBlock adds to the plain torchvision block (regularisers)."""

    def __init__(
        self,
        data_format,
        regularizer=None,
        drop_block=None,
        drop_path_rate=0.0,
        deform_implementation="auto",
        seed=None,
    ):
        self.data_format = data_format
        self.deform_implementation = deform_implementation
        self.channel_axis = -1 if data_format == "channels_last" else 1
        self.regularizer = regularizer
        self.drop_block = drop_block  # (rate, block_size) or None
        self.drop_path_rate = drop_path_rate
        # Each random layer gets its own seed: equal seeds would make every layer drop the
        # same positions at the same step.
        self.seed = seed

    def layer_seed(self, offset):
        return None if self.seed is None else self.seed + offset


def basic_block(x, filters, strides, name, options):
    """torchvision's BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is a 1x1 conv + BN exactly when the shape changes (stride != 1 or another channel
    count), as torchvision decides, not by channel count alone (the study's code did).

    DropBlock variant (Ghiasi et al. 2018 put it after the convolutions of a residual block):
    DropBlock2D after each BN, before the addition. Stochastic-depth variant (Huang et al. 2016):
    the residual branch passes through StochasticDepth before the addition.
    """
    channel_axis = options.channel_axis
    in_filters = x.shape[channel_axis]
    shortcut = x
    if strides != 1 or in_filters != filters:
        shortcut = keras.layers.Conv2D(
            filters,
            1,
            strides=strides,
            use_bias=False,
            data_format=options.data_format,
            name=f"{name}_downsample_0",
        )(x)
        shortcut = _bn(f"{name}_downsample_1", channel_axis)(shortcut)

    y = _conv(x, filters, 3, strides, f"{name}_conv1", options.data_format)
    y = _bn(f"{name}_bn1", channel_axis)(y)
    y = _drop_block(y, f"{name}_dropblock1", options, seed_offset=0)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2", options.data_format)
    y = _bn(f"{name}_bn2", channel_axis)(y)
    y = _drop_block(y, f"{name}_dropblock2", options, seed_offset=1)
    if options.regularizer == "stodepth" and options.drop_path_rate > 0:
        y = StochasticDepth(
            options.drop_path_rate, seed=options.layer_seed(2), name=f"{name}_stochastic_depth"
        )(y)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_relu2")(y)


def _drop_block(x, name, options, seed_offset):
    if options.regularizer != "dropblock":
        return x
    rate, block_size = options.drop_block
    return DropBlock2D(
        rate,
        block_size=block_size,
        seed=options.layer_seed(seed_offset),
        data_format=options.data_format,
        name=name,
    )(x)


def deform_conv_block(x, filters, name, options):
    """The study's DeformConvBlock: modulated deformable 3x3 conv (DCNv2), BN, ReLU.

    `DeformConv2D` owns its zero-initialised offset/mask convolution, so a fresh block starts as
    a plain 3x3 convolution scaled by the initial modulation sigmoid(0) = 0.5.
    """
    y = DeformConv2D(
        filters,
        kernel_size=3,
        padding="same",
        modulated=True,
        use_bias=False,
        implementation=options.deform_implementation,
        data_format=options.data_format,
        name=f"{name}_deform_conv",
    )(x)
    y = _bn(f"{name}_bn", options.channel_axis)(y)
    return keras.layers.ReLU(name=f"{name}_relu")(y)


def _validate(stem, stages, deform_layers, regularizer, p, block_size, stochastic_depth_rule):
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
    if stages not in (1, 2, 3, 4):
        raise ValueError(f"stages must be 1, 2, 3 or 4; got {stages!r}")
    bad = [s for s in deform_layers if s not in range(1, stages + 1)]
    if bad:
        raise ValueError(
            f"deform_layers must name stages in 1..{stages}; got {tuple(deform_layers)}"
        )
    if regularizer is not None and regularizer not in REGULARIZERS:
        raise ValueError(
            f"regularizer must be None, 'dropblock' or 'stodepth'; got {regularizer!r}"
        )
    if regularizer is not None and not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1); got {p}")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an integer >= 1; got {block_size!r}")
    if stochastic_depth_rule not in STOCHASTIC_DEPTH_RULES:
        raise ValueError(
            "stochastic_depth_rule must be one of "
            f"{', '.join(STOCHASTIC_DEPTH_RULES)}; got {stochastic_depth_rule!r}"
        )


def build_resnet18(
    num_classes: int = 10,
    input_shape: tuple[int, int, int] = (28, 28, 1),
    stem: str = "imagenet",
    stages: int = 3,
    deform_layers: Sequence[int] = (),
    regularizer: str | None = None,
    p: float = 0.1,
    block_size: int = 7,
    stochastic_depth_rule: str = "uniform",
    deform_implementation: str = "auto",
    input_mean: float | Sequence[float] | None = None,
    input_variance: float | Sequence[float] | None = None,
    data_format: str | None = None,
    seed: int | None = None,
    name: str = "resnet18",
) -> keras.Model:
    """Builds the study's ResNet-18 (torchvision's resnet18, adapted) as a functional model.

    Args:
        num_classes: size of the classification head (logits, no softmax).
        input_shape: (H, W, C) of the channels-last input.
        stem: "imagenet" (torchvision's 7x7/2 conv + BN + ReLU + 3x3/2 max-pool; 28x28 -> 7x7)
            or "cifar" (3x3/1 conv + BN + ReLU, no pool; keeps 28x28 features).
        stages: residual stages kept (the study keeps 3 of torchvision's 4).
        deform_layers: stages (1-based) whose second block is the study's DeformConvBlock.
        regularizer: None, "dropblock" (DropBlock2D in every BasicBlock) or "stodepth"
            (StochasticDepth on every residual branch).
        p: the regulariser's drop probability.
        block_size: DropBlock's block size (7 as in Ghiasi et al. 2018; clamped to the map).
        stochastic_depth_rule: "uniform" (every block drops with `p`) or "linear" (Huang et al.
            2016's decay: block l of L drops with p * l / L).
        deform_implementation: passed to DeformConv2D ("auto", "keras", "torchvision").
        input_mean, input_variance: when given, a Normalization layer standardises the input
            with these (the training set's) statistics inside the model.
        data_format: "channels_last" or "channels_first" for the internal layers; the model's
            input is channels-last either way. None: channels_last, which runs (and whose
            saved file loads) on every backend and CPU; on torch `default_data_format()`
            ("channels_first") trains a few percent faster through `accelerate` (run.py uses
            it). channels_first is refused (ValueError) where the backend cannot run it
            (TensorFlow on a CPU without its oneDNN kernels).
        seed: seed for the regularisers' random layers.
        name: the model's name.

    Returns:
        A functional `keras.Model` of stock Keras layers (and the study's own layers where
        configured) mapping (N, H, W, C) images to (N, num_classes) logits. Train it as is
        or through `keras_fmnist.accelerate(model)` (faster on torch, same weights).

    Example:

    >>> model = build_resnet18(deform_layers=(1, 3))
    >>> model.output_shape
    (None, 10)
    """
    deform_layers = tuple(sorted(set(deform_layers or ())))
    _validate(stem, stages, deform_layers, regularizer, p, block_size, stochastic_depth_rule)
    if data_format is None:
        data_format = "channels_last"
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last' or 'channels_first'; got {data_format!r}"
        )
    layout.check_channels_first(data_format, "build_resnet18")

    num_blocks = stages * BLOCKS_PER_STAGE
    drop_path_rates = [0.0] * num_blocks
    if regularizer == "stodepth":
        if stochastic_depth_rule == "linear":
            drop_path_rates = list(stochastic_depth_rates(p, num_blocks))
        else:
            drop_path_rates = [p] * num_blocks

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_mean is not None:
        x = keras.layers.Normalization(
            mean=input_mean, variance=input_variance, name="normalize"
        )(x)
    if data_format == "channels_first":
        x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)
    channel_axis = -1 if data_format == "channels_last" else 1

    if stem == "imagenet":
        x = _conv(x, 64, 7, 2, "conv1", data_format)
        x = _bn("bn1", channel_axis)(x)
        x = keras.layers.ReLU(name="relu")(x)
        # torch pads the pool with -inf; zeros are the same here (ReLU output >= 0).
        x = keras.layers.ZeroPadding2D(1, data_format=data_format, name="maxpool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, data_format=data_format, name="maxpool")(x)
    else:
        x = _conv(x, 64, 3, 1, "conv1", data_format)
        x = _bn("bn1", channel_axis)(x)
        x = keras.layers.ReLU(name="relu")(x)

    block_index = 0
    for stage in range(1, stages + 1):
        filters = STAGE_FILTERS[stage - 1]
        for i in range(BLOCKS_PER_STAGE):
            options = BlockOptions(
                data_format,
                regularizer=regularizer,
                drop_block=(p, block_size),
                drop_path_rate=drop_path_rates[block_index],
                deform_implementation=deform_implementation,
                seed=None if seed is None else seed + 3 * block_index,
            )
            block_name = f"layer{stage}_{i}"
            if i > 0 and stage in deform_layers:
                x = deform_conv_block(x, filters, block_name, options)
            else:
                strides = 2 if (i == 0 and stage > 1) else 1
                x = basic_block(x, filters, strides, block_name, options)
            block_index += 1

    x = keras.layers.GlobalAveragePooling2D(data_format=data_format, name="avgpool")(x)
    outputs = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=name)
