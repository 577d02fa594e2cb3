"""Data augmentation as Keras preprocessing layers."""

from keras_fmnist.augment.basic import BasicAugment
from keras_fmnist.augment.cutmix import CutMix
from keras_fmnist.augment.mixup import MixUp
from keras_fmnist.augment.mixing import sample_beta

__all__ = ["BasicAugment", "CutMix", "MixUp", "sample_beta"]
