"""What the study's augmentation layers share as image-classification preprocessing layers."""

from keras_fmnist.backend.private_api import BaseImagePreprocessingLayer


class ClassificationAugmentation(BaseImagePreprocessingLayer):
    """Base of `BasicAugment`, `MixUp` and `CutMix`: images (and labels) only.

    None of them takes Keras's `factor` argument, none keeps the output shape from
    matching the input, and none can move bounding boxes or segmentation masks (mixing
    two samples' boxes or masks has no single right answer), so those raise.
    """

    _USE_BASE_FACTOR = False

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError(
            f"{self.__class__.__name__} does not transform bounding boxes."
        )

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        raise NotImplementedError(
            f"{self.__class__.__name__} does not transform segmentation masks."
        )

    def compute_output_shape(self, input_shape):
        return input_shape
