"""Whether this backend can run channels-first convolutions here.

TensorFlow's CPU convolution kernels take channels-last (NHWC) tensors only; the oneDNN
kernels that TensorFlow turns on by default on CPUs with AVX-512-class features (or with
TF_ENABLE_ONEDNN_OPTS=1) also take NCHW. So a channels-first model builds everywhere but
fails at its first call on many CPUs. The layers and the builder of this package ask here
and refuse channels-first up front, with the reason, where it cannot run.
"""

import functools

import keras


def channels_first_unsupported():
    """None where channels-first convolutions run on this backend and machine, else why not."""
    if keras.backend.backend() != "tensorflow":
        return None
    return _tensorflow_channels_first_unsupported()


@functools.cache
def _tensorflow_channels_first_unsupported():
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return None
    try:  # measured, not guessed: the same check TensorFlow makes at the first call
        tf.nn.conv2d(tf.zeros([1, 1, 3, 3]), tf.zeros([1, 1, 1, 1]), 1, "VALID",
                     data_format="NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        return (
            "TensorFlow's CPU convolutions take channels-last (NHWC) tensors only on this "
            "machine (its oneDNN kernels, which take NCHW, are off: TF_ENABLE_ONEDNN_OPTS=0, "
            "or a CPU without AVX-512)"
        )
    return None


def check_channels_first(data_format, who):
    """Raises ValueError if `data_format` is channels-first and cannot run here."""
    if data_format != "channels_first":
        return
    reason = channels_first_unsupported()
    if reason:
        raise ValueError(
            f"{who}: data_format='channels_first' cannot run here: {reason}; "
            "use data_format='channels_last'"
        )
