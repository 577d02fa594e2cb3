"""Custom Keras layers of the study, registered under the package name "keras_fmnist"."""
from keras_fmnist.layers.deform_conv2d import DeformConv2D  # noqa: F401
from keras_fmnist.layers.drop_block import DropBlock2D  # noqa: F401
from keras_fmnist.layers.stochastic_depth import StochasticDepth  # noqa: F401
from keras_fmnist.layers.stochastic_depth import stochastic_depth_rates  # noqa: F401
from keras_fmnist.layers.fast_batch_normalization import FastBatchNormalization  # noqa: F401
from keras_fmnist.layers.fast_conv2d import FastConv2D  # noqa: F401
from keras_fmnist.layers.fast_max_pooling2d import FastMaxPooling2D  # noqa: F401
from keras_fmnist.layers.inplace_relu import InplaceReLU  # noqa: F401
from keras_fmnist.layers.inplace_add import InplaceAdd  # noqa: F401
