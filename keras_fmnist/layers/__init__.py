"""Custom Keras layers of the study, registered under the package name "keras_fmnist"."""
from keras_fmnist.layers.deform_conv2d import DeformConv2D  # noqa: F401
from keras_fmnist.layers.drop_block import DropBlock2D  # noqa: F401
from keras_fmnist.layers.stochastic_depth import StochasticDepth  # noqa: F401
from keras_fmnist.layers.stochastic_depth import stochastic_depth_rates  # noqa: F401
