"""Deformable convolution (DCNv1 / DCNv2), channels-last or channels-first, for every Keras
backend.

Deformable ConvNets v2 (Zhu et al. 2018, https://arxiv.org/abs/1811.11168) samples the
input of each kernel tap `k` of output position `p` at a learned fractional position and
scales it by a learned modulation scalar:

    y(p) = sum_k  w_k * x(p0 + p_k + dp_k) * m_k

where `p0 + p_k` is the usual (strided, padded, dilated) tap position, `dp_k = (dy, dx)`
the offset and `m_k` the mask. `x(.)` at a fractional position is the bilinear interpolation
of the input *zero-extended* beyond its border, which is exactly what torchvision's kernel
computes: a sample with y <= -1, y >= H, x <= -1 or x >= W is 0, and otherwise each of its
four integer neighbours contributes (weight (1 - |dy|)(1 - |dx|)) when it lies inside the
image. Without a mask this is DCNv1 (Dai et al. 2017).

Two implementations compute the same function:

* "keras": gather-based, written with `keras.ops` only, so it runs (and differentiates) on
  every backend. Each output tap gathers its four neighbouring pixels (all channels of an
  offset group at once, so a gather moves a contiguous channel vector), blends them with the
  bilinear weights times the mask into an im2col matrix, and one matmul with the kernel
  finishes the convolution.
* "torchvision": `torchvision.ops.deform_conv2d` (torch backend only), channels-first.

Both compute in one layout and take the other as a transposed view (free on torch: a
channels-first input reaches torchvision's kernel as the very tensor it was).

"auto" picks between them with `select_implementation`, the one place that rule lives.
"""

import keras
from keras import ops

from keras_fmnist.validation import int_pair

IMPLEMENTATIONS = ("auto", "keras", "torchvision")
DATA_FORMATS = ("channels_last", "channels_first")

# The "auto" rule: (backend, device type) -> implementation, decided by
# `python -m keras_fmnist.bench.deform_conv`; the numbers behind it, and why each side wins,
# are in benchmarks/results/deform_conv_auto_rule.md. Every other backend has only "keras".
_AUTO_RULE = {
    ("torch", "cpu"): "keras",
    ("torch", "cuda"): "torchvision",
}


def _torchvision_available():
    try:
        import torchvision.ops  # noqa: F401
    except ImportError:
        return False
    return True


def select_implementation(backend=None, device=None):
    """Resolve `implementation="auto"` for a backend and a device type.

    Args:
        backend: Keras backend name; defaults to `keras.backend.backend()`.
        device: Device type of the inputs ("cpu", "cuda", ...); defaults to "cpu".

    Returns:
        "keras" or "torchvision".
    """
    backend = backend or keras.backend.backend()
    device = device or "cpu"
    choice = _AUTO_RULE.get((backend, device), "keras")
    if choice == "torchvision" and not _torchvision_available():
        choice = "keras"
    return choice


def _pair(value, name):
    pair = int_pair(value, 1)
    if pair is None:
        raise ValueError(
            f"Invalid value for argument `{name}`: expected a positive int or a tuple of "
            f"two positive ints. Received: {name}={value}"
        )
    return pair


def _padding_amounts(padding, in_size, kernel_size, strides, dilation):
    """Returns ((top, bottom), (left, right)) zero padding for `padding`."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode != "same":
            raise ValueError(
                "Invalid value for argument `padding`: expected an int, a tuple of two "
                f"ints, 'valid' or 'same'. Received: padding={padding}"
            )
        amounts = []
        for size, k, s, d in zip(in_size, kernel_size, strides, dilation):
            if size is None:  # unknown spatial size: so is the output's
                amounts.append((0, 0))
                continue
            # Keras / TensorFlow "same": output ceil(size / stride), any odd pixel of
            # padding at the end, so results match keras.layers.Conv2D on every backend.
            effective = (k - 1) * d + 1
            out = -(-size // s)
            total = max((out - 1) * s + effective - size, 0)
            amounts.append((total // 2, total - total // 2))
        return tuple(amounts)
    pair = int_pair(padding, 0)
    if pair is None:
        raise ValueError(
            "Invalid value for argument `padding`: expected a non-negative int, a tuple "
            f"of two non-negative ints, 'valid' or 'same'. Received: padding={padding}"
        )
    return (pair[0], pair[0]), (pair[1], pair[1])


def conv_output_size(in_size, kernel_size, strides=1, padding=0, dilation_rate=1):
    """Spatial output size (H_out, W_out) of `deform_conv2d` for an input size (H, W)."""
    kernel_size = _pair(kernel_size, "kernel_size")
    strides = _pair(strides, "strides")
    dilation = _pair(dilation_rate, "dilation_rate")
    pads = _padding_amounts(padding, in_size, kernel_size, strides, dilation)
    return _output_size(in_size, kernel_size, strides, pads, dilation)


def _output_size(in_size, kernel_size, strides, pads, dilation):
    out = []
    for size, k, s, d, (lo, hi) in zip(in_size, kernel_size, strides, dilation, pads):
        out.append(None if size is None else (size + lo + hi - (k - 1) * d - 1) // s + 1)
    return tuple(out)


def _static_shape(x):
    return tuple(x.shape)


def _validate(inputs, offset, kernel, mask, bias, out_size):
    """Checks the shapes; returns (offset_groups, weight_groups)."""
    in_shape = _static_shape(inputs)
    k_shape = _static_shape(kernel)
    o_shape = _static_shape(offset)
    if len(in_shape) != 4:
        raise ValueError(
            "Invalid `inputs`: expected rank 4 (N, H, W, C_in). "
            f"Received: inputs.shape={in_shape}"
        )
    if len(k_shape) != 4:
        raise ValueError(
            "Invalid `kernel`: expected rank 4 (kh, kw, C_in // groups, C_out). "
            f"Received: kernel.shape={k_shape}"
        )
    channels = in_shape[3]
    kh, kw, cin_per_group, filters = k_shape
    if any(size is not None and size < 1 for size in out_size):
        raise ValueError(
            f"Invalid `inputs`: spatial size {in_shape[1:3]} is too small for a "
            f"{kh}x{kw} kernel with this padding and dilation (output {out_size}). "
            f"Received: inputs.shape={in_shape}"
        )
    if cin_per_group < 1 or channels % cin_per_group:
        raise ValueError(
            "Invalid `kernel`: its third dimension (C_in // groups) must divide the input "
            f"channels {channels}. Received: kernel.shape={k_shape}"
        )
    groups = channels // cin_per_group
    if filters % groups:
        raise ValueError(
            f"Invalid `kernel`: C_out={filters} is not divisible by the {groups} groups "
            f"implied by C_in={channels}. Received: kernel.shape={k_shape}"
        )
    taps = kh * kw
    if len(o_shape) != 4:
        raise ValueError(
            "Invalid `offset`: expected rank 4 (N, H_out, W_out, 2 * G * kh * kw). "
            f"Received: offset.shape={o_shape}"
        )
    if o_shape[3] % (2 * taps) or o_shape[3] == 0:
        raise ValueError(
            f"Invalid `offset`: its last dimension must be a positive multiple of "
            f"2 * kh * kw = {2 * taps}. Received: offset.shape={o_shape}"
        )
    offset_groups = o_shape[3] // (2 * taps)
    if channels % offset_groups:
        raise ValueError(
            f"Invalid `offset`: it implies {offset_groups} offset groups, which do not "
            f"divide C_in={channels}. Received: offset.shape={o_shape}"
        )
    expected = (in_shape[0], out_size[0], out_size[1])
    if not _dims_match(o_shape[:3], expected):
        raise ValueError(
            f"Invalid `offset`: expected shape (N, H_out, W_out, ...) = {expected + (o_shape[3],)} "
            f"for this input, kernel, strides, padding and dilation. "
            f"Received: offset.shape={o_shape}"
        )
    if mask is not None:
        m_shape = _static_shape(mask)
        m_expected = expected + (offset_groups * taps,)
        if len(m_shape) != 4 or not _dims_match(m_shape, m_expected):
            raise ValueError(
                f"Invalid `mask`: expected shape (N, H_out, W_out, G * kh * kw) = "
                f"{m_expected}. Received: mask.shape={m_shape}"
            )
    if bias is not None and tuple(_static_shape(bias)) != (filters,):
        raise ValueError(
            f"Invalid `bias`: expected shape ({filters},). "
            f"Received: bias.shape={_static_shape(bias)}"
        )
    return offset_groups, groups


def _dims_match(shape, expected):
    return all(a is None or b is None or a == b for a, b in zip(shape, expected))


def deform_conv2d(
    inputs,
    offset,
    kernel,
    mask=None,
    bias=None,
    strides: int | tuple[int, int] = 1,
    padding: str | int = 0,
    dilation_rate: int | tuple[int, int] = 1,
    implementation: str = "auto",
    data_format: str = "channels_last",
):
    """Deformable 2D convolution (DCNv2 with `mask`, DCNv1 without).

    The channel orders of `offset` and `mask` are torchvision's, moved to the last axis:
    for offset group `g` and kernel tap `k = i * kw + j`, `offset[..., g*2*kh*kw + 2*k]` is
    the vertical shift dy and `offset[..., g*2*kh*kw + 2*k + 1]` the horizontal shift dx,
    in input pixels; `mask[..., g*kh*kw + k]` scales that tap. Offset group `g` covers the
    input channels `[g * C_in // G, (g + 1) * C_in // G)`. Samples are bilinear on the
    zero-extended input (see the module docstring), exactly as torchvision computes them.

    Args:
        inputs: Tensor (N, H, W, C_in).
        offset: Tensor (N, H_out, W_out, 2 * G * kh * kw). G, the number of offset
            (deformable) groups, is inferred from this size and must divide C_in.
        kernel: Tensor (kh, kw, C_in // groups, C_out), the Keras `Conv2D` layout; `groups`
            (grouped convolution) is inferred as C_in // kernel.shape[2].
        mask: Optional tensor (N, H_out, W_out, G * kh * kw) of modulation scalars
            (DCNv2; usually a sigmoid output). `None` gives DCNv1.
        bias: Optional tensor (C_out,).
        strides: int or tuple of two ints.
        padding: int or tuple of two ints (symmetric zero padding, as torchvision), or
            "valid" or "same" (Keras's "same": any odd padding pixel goes at the end).
        dilation_rate: int or tuple of two ints.
        implementation: "auto", "keras" or "torchvision". "keras" runs on any backend;
            "torchvision" needs the torch backend; "auto" takes the faster of the two for the
            backend and device in use, as measured (see `select_implementation`).
        data_format: "channels_last" (the shapes above) or "channels_first": `inputs`,
            `offset`, `mask` and the result have their channel axis at 1, (N, C, H, W).

    Returns:
        Tensor (N, H_out, W_out, C_out), where
        H_out = (H + pad_top + pad_bottom - dilation_h * (kh - 1) - 1) // stride_h + 1
        and likewise for W_out.

    Example:

    >>> x = np.random.rand(2, 7, 7, 4).astype("float32")
    >>> kernel = np.random.rand(3, 3, 4, 8).astype("float32")
    >>> offset = np.zeros((2, 7, 7, 18), "float32")
    >>> mask = np.ones((2, 7, 7, 9), "float32")
    >>> y = deform_conv2d(x, offset, kernel, mask, padding="same")
    >>> tuple(y.shape)  # zero offsets and unit mask: a plain 3x3 convolution
    (2, 7, 7, 8)
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `implementation`: expected one of "
            f"{IMPLEMENTATIONS}. Received: implementation={implementation}"
        )
    backend = keras.backend.backend()
    if implementation == "torchvision" and backend != "torch":
        raise ValueError(
            "Invalid value for argument `implementation`: 'torchvision' needs the torch "
            f"backend (current backend: {backend}); use 'keras' or 'auto'. "
            f"Received: implementation={implementation}"
        )
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"Invalid value for argument `data_format`: expected one of {DATA_FORMATS}. "
            f"Received: data_format={data_format}"
        )
    strides = _pair(strides, "strides")
    dilation = _pair(dilation_rate, "dilation_rate")
    if not isinstance(padding, str):
        _padding_amounts(padding, (1, 1), (1, 1), (1, 1), (1, 1))  # validate early

    if keras.backend.is_keras_tensor(inputs) or keras.backend.is_keras_tensor(offset):
        return DeformConv2d(
            strides=strides,
            padding=padding,
            dilation_rate=dilation,
            implementation=implementation,
            data_format=data_format,
        ).symbolic_call(inputs, offset, kernel, mask, bias)

    inputs = ops.convert_to_tensor(inputs)
    dtype = inputs.dtype
    if not keras.backend.is_float_dtype(dtype):
        # Integer images (uint8 pixels) are sampled and convolved as floats, in the kernel's
        # dtype, as keras.layers.Conv2D's arithmetic does: never in integers (jax returned
        # all zeros) nor a dtype clash (torch). Float inputs keep their own dtype.
        kernel = ops.convert_to_tensor(kernel)
        dtype = kernel.dtype if keras.backend.is_float_dtype(kernel.dtype) else keras.config.floatx()
        inputs = ops.cast(inputs, dtype)
    offset = ops.cast(ops.convert_to_tensor(offset), dtype)
    kernel = ops.cast(ops.convert_to_tensor(kernel), dtype)
    if mask is not None:
        mask = ops.cast(ops.convert_to_tensor(mask), dtype)
    if bias is not None:
        bias = ops.cast(ops.convert_to_tensor(bias), dtype)
    if data_format == "channels_first":
        inputs, offset = _to_channels_last(inputs), _to_channels_last(offset)
        mask = None if mask is None else _to_channels_last(mask)
    outputs = _deform_conv2d(
        inputs, offset, kernel, mask, bias, strides, padding, dilation, implementation
    )
    return _to_channels_first(outputs) if data_format == "channels_first" else outputs


def _to_channels_last(x):
    return ops.transpose(x, (0, 2, 3, 1)) if len(x.shape) == 4 else x


def _to_channels_first(x):
    return ops.transpose(x, (0, 3, 1, 2))


def _deform_conv2d(inputs, offset, kernel, mask, bias, strides, padding, dilation, impl):
    in_size = _static_shape(inputs)[1:3]
    kernel_size = _static_shape(kernel)[:2]
    pads = _padding_amounts(padding, in_size, kernel_size, strides, dilation)
    out_size = _output_size(in_size, kernel_size, strides, pads, dilation)
    offset_groups, groups = _validate(inputs, offset, kernel, mask, bias, out_size)
    if _static_shape(inputs)[0] == 0:
        # An empty batch has an empty result; the gather path's einsum rejects it on jax.
        filters = _static_shape(kernel)[3]
        return ops.zeros((0, *out_size, filters), dtype=inputs.dtype)
    if impl == "auto":
        device = getattr(getattr(inputs, "device", None), "type", None)
        impl = select_implementation(keras.backend.backend(), device)
    if impl == "torchvision":
        return _deform_conv2d_torchvision(
            inputs, offset, kernel, mask, bias, strides, pads, dilation
        )
    return _deform_conv2d_keras(
        inputs, offset, kernel, mask, bias, strides, pads, dilation, out_size,
        offset_groups, groups,
    )


def _deform_conv2d_keras(
    inputs, offset, kernel, mask, bias, strides, pads, dilation, out_size,
    offset_groups, groups,
):
    n = ops.shape(inputs)[0]
    height, width, channels = _static_shape(inputs)[1:]
    kh, kw, cin_per_group, filters = _static_shape(kernel)
    out_h, out_w = out_size
    taps = kh * kw
    g = offset_groups
    cg = channels // g
    dtype = inputs.dtype

    # (N, Ho, Wo, G, K, 2) -> (N, Ho, Wo, K, G, 2): put the tap before the group so the
    # gathered columns come out in (K, C_in) order, the order of the reshaped kernel,
    # and only this small tensor, not the gathered one, needs a transpose.
    offset = ops.reshape(offset, (-1, out_h, out_w, g, taps, 2))
    offset = ops.transpose(offset, (0, 1, 2, 4, 3, 5))
    # Tap positions without offsets, in unpadded input coordinates: (Ho, 1, K, 1) and
    # (1, Wo, K, 1), broadcasting against (N, Ho, Wo, K, G).
    tap_y = ops.reshape(
        ops.repeat(ops.arange(kh) * dilation[0], kw), (1, 1, taps, 1)
    )
    tap_x = ops.reshape(ops.tile(ops.arange(kw) * dilation[1], kh), (1, 1, taps, 1))
    base_y = ops.reshape(ops.arange(out_h) * strides[0] - pads[0][0], (out_h, 1, 1, 1))
    base_x = ops.reshape(ops.arange(out_w) * strides[1] - pads[1][0], (1, out_w, 1, 1))
    y = ops.cast(base_y + tap_y, dtype) + offset[..., 0]
    x = ops.cast(base_x + tap_x, dtype) + offset[..., 1]
    # Beyond one pixel outside the image every neighbour is a zero pixel, so clipping
    # there changes no value and keeps the integer casts below in range.
    y = ops.clip(y, -2.0, height + 1.0)
    x = ops.clip(x, -2.0, width + 1.0)
    y0 = ops.floor(y)
    x0 = ops.floor(x)
    ly = y - y0
    lx = x - x0
    # The input gets a one-pixel zero border; every neighbour index outside the image is
    # clipped onto that border, so it reads 0 (and passes no gradient to the input).
    hp, wp = height + 2, width + 2
    y0i = ops.cast(y0, "int32") + 1
    x0i = ops.cast(x0, "int32") + 1
    y_lo = ops.clip(y0i, 0, hp - 1)
    y_hi = ops.clip(y0i + 1, 0, hp - 1)
    x_lo = ops.clip(x0i, 0, wp - 1)
    x_hi = ops.clip(x0i + 1, 0, wp - 1)

    padded = ops.pad(inputs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Rows of (N * Hp * Wp * G, C_in // G): row ((b * Hp + y) * Wp + x) * G + g holds
    # the channels of offset group g at pixel (y, x) of image b. A free reshape. Row
    # indices are int32 (jax's default), which bounds N * Hp * Wp * G below 2**31.
    table = ops.reshape(padded, (-1, cg))
    batch = ops.reshape(ops.arange(n, dtype="int32") * (hp * wp * g), (-1, 1, 1, 1, 1))
    group = ops.reshape(ops.arange(g, dtype="int32"), (1, 1, 1, 1, g))
    row_lo = batch + y_lo * (wp * g) + group
    row_hi = batch + y_hi * (wp * g) + group
    index = ops.stack(
        [row_lo + x_lo * g, row_lo + x_hi * g, row_hi + x_lo * g, row_hi + x_hi * g],
        axis=-1,
    )
    weights = ops.stack(
        [(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx], axis=-1
    )
    if mask is not None:
        mask = ops.reshape(mask, (-1, out_h, out_w, g, taps))
        mask = ops.transpose(mask, (0, 1, 2, 4, 3))
        weights = weights * ops.expand_dims(mask, -1)
    # (N, Ho, Wo, K, G, 4, Cg) -> blend the 4 neighbours -> (N, Ho, Wo, K, G, Cg).
    # As a batched (1 x 4) @ (4 x Cg) product: faster than a broadcast multiply and sum
    # on CPU torch, forward + backward (one fused kernel instead of two with a temporary).
    corners = ops.take(table, index, axis=0)
    columns = ops.einsum("...c,...cd->...d", weights, corners)

    if groups == 1:
        columns = ops.reshape(columns, (-1, out_h, out_w, taps * channels))
        outputs = ops.matmul(columns, ops.reshape(kernel, (taps * channels, filters)))
    else:
        columns = ops.reshape(columns, (-1, out_h, out_w, taps, groups, cin_per_group))
        kernel = ops.reshape(kernel, (taps, cin_per_group, groups, filters // groups))
        outputs = ops.einsum("nhwkgc,kcgo->nhwgo", columns, kernel)
        outputs = ops.reshape(outputs, (-1, out_h, out_w, filters))
    if bias is not None:
        outputs = outputs + bias
    return outputs


def _deform_conv2d_torchvision(inputs, offset, kernel, mask, bias, strides, pads, dilation):
    import torch
    import torchvision.ops

    (top, bottom), (left, right) = pads
    x = inputs.permute(0, 3, 1, 2)
    if top != bottom or left != right:
        # torchvision pads symmetrically only. Explicit zeros are equivalent: sampling is
        # defined on the zero-extended input, so zeros added in the tensor or implied
        # outside it read the same.
        x = torch.nn.functional.pad(x, (left, right, top, bottom))
        padding = (0, 0)
    else:
        padding = (top, left)
    outputs = torchvision.ops.deform_conv2d(
        x,
        offset.permute(0, 3, 1, 2),
        kernel.permute(3, 2, 0, 1),
        bias=bias,
        stride=strides,
        padding=padding,
        dilation=dilation,
        mask=None if mask is None else mask.permute(0, 3, 1, 2),
    )
    return outputs.permute(0, 2, 3, 1)


class DeformConv2d(keras.Operation):
    """`deform_conv2d` as a Keras operation, so it also accepts symbolic KerasTensors."""

    def __init__(
        self, strides=1, padding=0, dilation_rate=1, implementation="auto",
        data_format="channels_last",
    ):
        super().__init__()
        self.strides = _pair(strides, "strides")
        self.padding = padding
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        self.implementation = implementation
        self.data_format = data_format

    def call(self, inputs, offset, kernel, mask=None, bias=None):
        return deform_conv2d(
            inputs, offset, kernel, mask, bias, self.strides, self.padding,
            self.dilation_rate, self.implementation, self.data_format,
        )

    def compute_output_spec(self, inputs, offset, kernel, mask=None, bias=None):
        first = self.data_format == "channels_first"
        if first:
            inputs, offset = _ShapeOnly.last(inputs), _ShapeOnly.last(offset)
            mask = None if mask is None else _ShapeOnly.last(mask)
        in_shape = tuple(inputs.shape)
        k_shape = tuple(kernel.shape)
        pads = _padding_amounts(
            self.padding, in_shape[1:3], k_shape[:2], self.strides, self.dilation_rate
        )
        out_size = _output_size(
            in_shape[1:3], k_shape[:2], self.strides, pads, self.dilation_rate
        )
        _validate(inputs, offset, kernel, mask, bias, out_size)
        if first:
            shape = (in_shape[0], k_shape[3]) + tuple(out_size)
        else:
            shape = (in_shape[0],) + tuple(out_size) + (k_shape[3],)
        return keras.KerasTensor(shape, dtype=inputs.dtype)


class _ShapeOnly:
    """A tensor's shape and dtype, channels-last, for validating a channels-first call."""

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype

    @classmethod
    def last(cls, x):
        s = tuple(x.shape)
        return cls((s[0], s[2], s[3], s[1]) if len(s) == 4 else s, x.dtype)
