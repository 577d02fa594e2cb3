"""Training and inference throughput: Keras (`build_resnet18` + `compile_model`) vs plain PyTorch.

The plain-PyTorch reference is what the study ran: torchvision's resnet18 with a 1-channel
stem, layer4 removed and a 256 -> 10 head, `torch.optim.Adam(lr=3e-4)` with its defaults,
cross-entropy on soft targets, eager mode, NCHW, counting correct predictions per batch for
the epoch's training accuracy (the study logs it). With `deform_layers` the reference swaps
the second block of those stages for `TorchDeformConvBlock` (DCNv2 through
`torchvision.ops.deform_conv2d`), as `build_resnet18(deform_layers=...)` does on the Keras
side.

Both sides train on the same random batch (and the same CutMix layer, applied to the batch
before each step on both sides, when `cutmix=True`), in one process, interleaved
A B A B ... so that load from other processes hits both alike; warm-up steps are excluded and
each repetition times `steps` optimizer steps. Throughput is reported per wall-clock second and
per process-CPU second (the latter is much steadier on a shared machine when torch runs
one thread); the ratio is the median of the per-repetition ratios.
"""

import statistics
import time

import numpy as np

import keras_fmnist  # noqa: F401  (sets the default backend before keras loads)
import keras

from keras_fmnist.accelerate import accelerate
from keras_fmnist.augment import CutMix
from keras_fmnist import optimizers
from keras_fmnist.models.resnet import build_resnet18
from keras_fmnist.models.resnet import default_data_format
from keras_fmnist.training import compile_model


def _torch():
    import torch

    return torch


def torch_deform_conv_block(channels):
    """The study's DeformConvBlock in plain torch, with DCNv2 as Zhu et al. 2018 define it (docs/STUDY.md)."""
    torch = _torch()
    import torchvision.ops

    class TorchDeformConvBlock(torch.nn.Module):
        """Offset/mask conv (2*k*k + k*k channels, zero-initialised), DCNv2 3x3, BN, ReLU."""

        def __init__(self, channels, kernel_size=3):
            super().__init__()
            taps = kernel_size * kernel_size
            self.taps = taps
            self.padding = (kernel_size - 1) // 2
            self.offset_conv = torch.nn.Conv2d(
                channels, 3 * taps, kernel_size, padding=self.padding
            )
            # Offsets 0 and masks sigmoid(0) = 0.5: training starts from a plain convolution.
            torch.nn.init.zeros_(self.offset_conv.weight)
            torch.nn.init.zeros_(self.offset_conv.bias)
            self.weight = torch.nn.Parameter(
                torch.empty(channels, channels, kernel_size, kernel_size)
            )
            torch.nn.init.kaiming_uniform_(self.weight, a=5**0.5)
            self.bn = torch.nn.BatchNorm2d(channels)

        def forward(self, x):
            out = self.offset_conv(x)
            offset = out[:, : 2 * self.taps]
            mask = torch.sigmoid(out[:, 2 * self.taps :])
            y = torchvision.ops.deform_conv2d(
                x, offset, self.weight, padding=self.padding, mask=mask
            )
            return torch.relu(self.bn(y))

    return TorchDeformConvBlock(channels)


def torch_resnet18(num_classes=10, deform_layers=()):
    """torchvision resnet18 with the study's surgery (and deformable stages if asked)."""
    torch = _torch()
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    model.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model.layer4 = torch.nn.Identity()
    model.fc = torch.nn.Linear(256, num_classes)
    for stage in deform_layers:
        layer = getattr(model, f"layer{stage}")
        layer[1] = torch_deform_conv_block(64 * 2 ** (stage - 1))
    return model


def random_batch(batch_size, seed=0):
    """Uniform images (batch, 28, 28, 1) and one-hot labels, float32."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch_size, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size)]
    return x, y


def _cutmix_fn(enabled, seed):
    if not enabled:
        return lambda x, y: (x, y)
    layer = CutMix(alpha=1.0, seed=seed)

    def apply(x, y):
        out = layer({"images": x, "labels": y}, training=True)
        return out["images"], out["labels"]

    return apply


def check_device(device):
    """Keras' torch backend puts models on the GPU whenever there is one (and its symbolic
    build ignores `keras.device` scopes), so the Keras side runs where Keras chooses; a CPU
    comparison on a GPU machine needs the GPU hidden before Python starts."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
    if keras.backend.backend() != "torch":
        if device == "cuda":
            raise ValueError("device='cuda' needs the torch backend")
        return
    if (device == "cuda") != _torch().cuda.is_available():
        raise ValueError(
            "device='cuda' but no CUDA device is available" if device == "cuda" else
            "device='cpu' on a machine with CUDA: Keras would train on the GPU; "
            "run with CUDA_VISIBLE_DEVICES= to compare on the CPU"
        )


def make_torch_step(batch_size, deform_layers=(), cutmix=False, device="cpu", seed=0):
    """A callable running one plain-PyTorch training step (the study's loop body)."""
    torch = _torch()
    torch.manual_seed(seed)
    model = torch_resnet18(deform_layers=deform_layers).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = random_batch(batch_size, seed)
    mix = _cutmix_fn(cutmix, seed)

    def step():
        xb, yb = mix(x, y)
        xb = torch.as_tensor(keras.ops.convert_to_numpy(xb)).permute(0, 3, 1, 2).to(device)
        yb = torch.as_tensor(keras.ops.convert_to_numpy(yb)).to(device)
        optimizer.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        loss.backward()
        optimizer.step()
        # The study logs each epoch's average loss and training accuracy, so its loop sums
        # both per batch (host syncs, as Keras' logs); Keras' compiled metrics do the same.
        correct = (logits.argmax(1) == yb.argmax(1)).sum().item()
        return loss.item(), correct

    def infer():
        with torch.no_grad():
            model.eval()
            xb = torch.as_tensor(x).permute(0, 3, 1, 2).to(device)
            out = model(xb).cpu()
            model.train()
        return out

    return step, infer, model


# The Keras sides a comparison can time against plain PyTorch:
KERAS_SIDES = {
    "keras": "accelerate(build_resnet18()) + compile_model (what run.py trains)",
    "keras_user": "accelerate(build_resnet18()) + a user's own "
    "compile(keras.optimizers.Adam(3e-4), CategoricalCrossentropy(from_logits=True), "
    "metrics=['accuracy'])",
    "keras_stock": "build_resnet18() + compile_model, not accelerated",
}


def make_keras_step(batch_size, deform_layers=(), cutmix=False, seed=0, data_format=None,
                    side="keras"):
    """A callable running one `train_on_batch` of the project's compiled model (`side`:
    one of `KERAS_SIDES`)."""
    if side not in KERAS_SIDES:
        raise ValueError(f"side must be one of {', '.join(KERAS_SIDES)}; got {side!r}")
    keras.utils.set_random_seed(seed)
    # What run.py trains: the backend's faster layout unless one is asked for.
    kwargs = {"data_format": data_format or default_data_format()}
    model = build_resnet18(deform_layers=deform_layers, **kwargs)
    if side != "keras_stock":
        model = accelerate(model)
    if side == "keras_user":
        model.compile(
            optimizer=keras.optimizers.Adam(3e-4),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    else:
        compile_model(model)
    x, y = random_batch(batch_size, seed)
    mix = _cutmix_fn(cutmix, seed)

    def step():
        xb, yb = mix(x, y)
        return model.train_on_batch(xb, yb)

    def infer():
        return model.predict_on_batch(x)

    return step, infer, model


def _time(fn, steps):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _summary(values):
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def compare(
    batch_size=128,
    repeats=5,
    steps=3,
    warmup=2,
    deform_layers=(),
    cutmix=False,
    device="cpu",
    inference=True,
    seed=0,
    data_format=None,
    keras_sides=("keras",),
):
    """Keras vs plain PyTorch training (and inference) throughput, interleaved.

    Args:
        batch_size: images per step, both sides.
        repeats: timed repetitions per side (median and spread are reported).
        steps: optimizer steps per repetition.
        warmup: untimed steps per side first.
        deform_layers: deformable stages (1-based), both sides.
        cutmix: apply `keras_fmnist.augment.CutMix` to each batch, both sides.
        device: "cpu" or "cuda" (torch backend only for "cuda").
        inference: also time `predict_on_batch` vs `torch.no_grad()` forward.
        seed: seed of the batch and the models.
        data_format: the Keras model's internal layout (None: `default_data_format()`, the
            backend's faster one, as run.py trains).
        keras_sides: which Keras setups to time (keys of `KERAS_SIDES`; "keras" first).

    Returns:
        A dict with images/s (wall and CPU) of each side, their ratios against torch
        (median over repetitions of the per-repetition ratios: "ratio_wall"/"ratio_cpu" for
        the first Keras side, "ratios_wall"/"ratios_cpu" for each) and the setting.
    """
    check_device(device)
    sides = {"torch": make_torch_step(batch_size, deform_layers, cutmix, device, seed)}
    for side in keras_sides:
        sides[side] = make_keras_step(
            batch_size, deform_layers, cutmix, seed, data_format, side=side
        )
    for step, _, _ in sides.values():
        for _ in range(warmup):
            step()
    modes = [("train", 0)] + ([("inference", 1)] if inference else [])
    result = {
        "benchmark": "training throughput",
        "backend": keras.backend.backend(),
        "device": device,
        "batch_size": batch_size,
        "repeats": repeats,
        "steps": steps,
        "warmup": warmup,
        "deform_layers": list(deform_layers),
        "cutmix": bool(cutmix),
        "keras_data_format": data_format or default_data_format(),
        "keras_sides": {side: KERAS_SIDES[side] for side in keras_sides},
        "torch_threads": _torch().get_num_threads(),
    }
    for mode, index in modes:
        if mode == "inference":
            for entry in sides.values():
                entry[1]()
        wall = {name: [] for name in sides}
        cpu = {name: [] for name in sides}
        for _ in range(repeats):
            for name, entry in sides.items():
                w, c = _time(entry[index], steps)
                wall[name].append(batch_size * steps / w)
                cpu[name].append(batch_size * steps / c if c > 0 else float("inf"))
        ratios_wall = {
            side: statistics.median(k / t for k, t in zip(wall[side], wall["torch"]))
            for side in keras_sides
        }
        ratios_cpu = {
            side: statistics.median(k / t for k, t in zip(cpu[side], cpu["torch"]))
            for side in keras_sides
        }
        result[mode] = {
            "images_per_s": {n: _summary(v) for n, v in wall.items()},
            "images_per_cpu_s": {n: _summary(v) for n, v in cpu.items()},
            "ratio_wall": ratios_wall[keras_sides[0]],
            "ratio_cpu": ratios_cpu[keras_sides[0]],
            "ratios_wall": ratios_wall,
            "ratios_cpu": ratios_cpu,
        }
    return result


def optimizer_update_times(configs=("default", "amsgrad"), repeats=5, steps=5, warmup=2):
    """Seconds per Adam update of the ResNet-18's weights: Keras' own `Adam` vs the same
    optimizer through `accelerate`'s fused update, interleaved, per configuration.

    Configurations: "default" (Adam(3e-4) on the accelerated model's weights, kernels
    channels-last in memory), "amsgrad" (Adam(3e-4, amsgrad=True): the fused kernel does
    not run and Keras' update does), "c_order" (kernels in Keras' own memory order).
    Both sides update their own copy of the same weights with the same gradients.
    """
    results = {}
    for config in configs:
        if config not in ("default", "amsgrad", "c_order"):
            raise ValueError(f"unknown optimizer configuration {config!r}")
        sides = {}
        for side in ("keras_adam", "fused_adam"):
            keras.utils.set_random_seed(0)
            model = build_resnet18()
            if config != "c_order":
                model = accelerate(model)
            variables = model.trainable_variables
            grads = [
                keras.random.normal(v.shape, seed=i) * 1e-3 for i, v in enumerate(variables)
            ]
            optimizer = keras.optimizers.Adam(3e-4, amsgrad=config == "amsgrad")
            optimizer.build(variables)
            counts = None
            if side == "fused_adam" and keras.backend.backend() == "torch":
                counts = optimizers.as_fused(optimizer).counts
            sides[side] = (optimizer, grads, variables, counts)
        for optimizer, grads, variables, _ in sides.values():
            for _ in range(warmup):
                optimizer.apply(grads, variables)
        times = {side: [] for side in sides}
        for _ in range(repeats):
            for side, (optimizer, grads, variables, _) in sides.items():
                start = time.perf_counter()
                for _ in range(steps):
                    optimizer.apply(grads, variables)
                keras.ops.convert_to_numpy(variables[0])  # wait for the device
                times[side].append((time.perf_counter() - start) / steps)
        counts = sides["fused_adam"][3]
        results[config] = {
            "seconds_per_update": {side: _summary(v) for side, v in times.items()},
            "fused_over_keras": statistics.median(
                f / k for f, k in zip(times["fused_adam"], times["keras_adam"])
            ),
            "fused_counts": None if counts is None else counts.as_dict(),
        }
    return results


def peak_rss_mb():
    """This process's peak resident set size in MiB (Linux /proc, else getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_only_peak_memory(side, batch_size=128, steps=3, deform_layers=(), cutmix=False,
                           device="cpu"):
    """Peak memory (MiB) of a process that builds and trains one side only (run it alone).

    Returns a dict: "rss" (this process's peak resident set) and, on "cuda", "cuda" (torch's
    peak allocated GPU memory).
    """
    if side not in ("torch", "keras"):
        raise ValueError(f"side must be 'torch' or 'keras'; got {side!r}")
    check_device(device)
    if side == "torch":
        step = make_torch_step(batch_size, deform_layers, cutmix, device)[0]
    else:
        step = make_keras_step(batch_size, deform_layers, cutmix)[0]
    for _ in range(steps):
        step()
    peak = {"rss": peak_rss_mb()}
    if device == "cuda":
        peak["cuda"] = _torch().cuda.max_memory_allocated() / 2**20
    return peak
