"""Benchmark: augmentation pipeline throughput vs. the training step it feeds.

    python -m keras_fmnist.bench.augment_pipeline [--batch 128 --steps 50 --warmup 5
        --augmentations cutmix mixup basic --train-steps 5 --no-training --threads N
        --json PATH]

Times the augmentation layers on Fashion-MNIST-shaped batches ((batch, 28, 28, 1) float32
images with one-hot labels of 10 classes, held as NumPy arrays as a data loader would hand
them over, so conversion to backend tensors is included), one batch per call with
`training=True`, in a single process. Reported per layer: images/s from the median batch
time, and the spread. When `keras_fmnist.models.resnet.build_resnet18` is available it also
times `train_on_batch` of the study's model (Adam 3e-4, cross-entropy on the soft labels) on
the same batch, in the same process, and reports pipeline / training throughput: the
augmentation must not be what limits training (the project asks for a ratio >= 10 for
CutMix). Timings on a shared machine vary; the ratio, measured side by side, is the number
to compare.
"""

import argparse
import statistics
import time

import keras_fmnist  # noqa: F401  (sets the default backend before keras loads)
import keras
import numpy as np

from keras_fmnist import artifacts
from keras_fmnist.augment import BasicAugment
from keras_fmnist.augment import CutMix
from keras_fmnist.augment import MixUp
from keras_fmnist.data import IMAGE_SIZE
from keras_fmnist.data import NUM_CLASSES
from keras_fmnist.models.resnet import build_resnet18

AUGMENTATIONS = {
    "cutmix": lambda seed: CutMix(alpha=1.0, seed=seed),
    "mixup": lambda seed: MixUp(alpha=0.2, seed=seed),
    "basic": lambda seed: BasicAugment(padding=4, seed=seed),
}
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)  # one grey channel, channels-last


def _device():
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    return "cpu"


def _set_threads(threads):
    """Sets torch's intra-op thread count (None: leave it); returns the count in use.

    On a loaded machine torch's default (one thread per core) spins against other
    processes, and small element-wise ops then take many times longer with two threads than
    with one. Both sides of the ratio run with the same setting.
    """
    if keras.backend.backend() != "torch":
        return None
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _wait(x):
    """Blocks until `x` is computed (jax and torch-on-GPU run asynchronously)."""
    keras.ops.convert_to_numpy(x[..., :1, :1, :1] if len(x.shape) == 4 else x)


def _batches(batch, count, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        images = rng.uniform(0.0, 1.0, (batch,) + IMAGE_SHAPE).astype("float32")
        labels = np.eye(NUM_CLASSES, dtype="float32")[rng.integers(0, NUM_CLASSES, batch)]
        out.append((images, labels))
    return out


def _summary(times, batch):
    median = statistics.median(times)
    return {
        "images_per_s": batch / median,
        "median_batch_s": median,
        "min_batch_s": min(times),
        "max_batch_s": max(times),
        "steps": len(times),
    }


def time_augmentation(name, batch=128, steps=50, warmup=5, seed=0):
    """Median time of one `training=True` call of augmentation `name` on a fresh batch."""
    layer = AUGMENTATIONS[name](seed)
    data = _batches(batch, 8, seed)
    times = []
    for step in range(warmup + steps):
        images, labels = data[step % len(data)]
        start = time.perf_counter()
        out = layer({"images": images, "labels": labels}, training=True)
        _wait(out["images"])
        _wait(out["labels"])
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return _summary(times, batch)


def time_training(batch=128, steps=5, warmup=2, seed=0):
    """Median `train_on_batch` time of the study's ResNet-18."""
    keras.utils.set_random_seed(seed)
    model = build_resnet18(num_classes=NUM_CLASSES, input_shape=IMAGE_SHAPE)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    data = _batches(batch, 2, seed + 1)
    times = []
    for step in range(warmup + steps):
        images, labels = data[step % len(data)]
        start = time.perf_counter()
        model.train_on_batch(images, labels)  # returns host floats: synchronous
        if step >= warmup:
            times.append(time.perf_counter() - start)
    result = _summary(times, batch)
    result["model"] = "build_resnet18() (ImageNet stem, 3 stages), Adam 3e-4"
    return result


def measure(
    batch=128,
    steps=50,
    warmup=5,
    augmentations=("cutmix",),
    train_steps=5,
    train_warmup=2,
    include_training=True,
    seed=0,
    threads=None,
):
    """Measures augmentation throughput and, optionally, the training step beside it.

    Args:
        batch: images per batch (28x28x1).
        steps, warmup: timed and untimed calls per augmentation.
        augmentations: names among "cutmix", "mixup", "basic".
        train_steps, train_warmup: timed and untimed `train_on_batch` calls.
        include_training: time the model too (skipped if no model builder exists).
        seed: seed of the data, the layers and the model.
        threads: torch intra-op threads for the whole measurement (None: torch's default).

    Returns:
        A dict: the setting, `pipeline` (per augmentation: images_per_s, median / min /
        max seconds per batch), `training` (the same for train_on_batch, or None) and
        `ratio_pipeline_over_training` (per augmentation, or None).
    """
    torch_threads = _set_threads(threads)
    pipeline = {
        name: time_augmentation(name, batch, steps, warmup, seed) for name in augmentations
    }
    training = time_training(batch, train_steps, train_warmup, seed) if include_training else None
    ratio = None
    if training is not None:
        ratio = {
            name: result["images_per_s"] / training["images_per_s"]
            for name, result in pipeline.items()
        }
    return {
        "benchmark": "augmentation pipeline throughput",
        "backend": keras.backend.backend(),
        "device": _device(),
        "torch_threads": torch_threads,
        "batch": batch,
        "image_shape": IMAGE_SHAPE,
        "pipeline": pipeline,
        "training": training,
        "ratio_pipeline_over_training": ratio,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--augmentations", nargs="+", default=["cutmix"], choices=sorted(AUGMENTATIONS)
    )
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    parser.add_argument("--json", default=None, help="write the result dict here")
    args = parser.parse_args(argv)
    report = measure(
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        augmentations=tuple(args.augmentations),
        train_steps=args.train_steps,
        include_training=not args.no_training,
        threads=args.threads,
    )
    print(
        f"{report['benchmark']} | backend {report['backend']} ({report['device']}) | "
        f"batch {args.batch} x 28x28x1"
        + (f" | torch threads {report['torch_threads']}" if report["torch_threads"] else "")
    )
    for name, r in report["pipeline"].items():
        print(
            f"  {name:8s} {r['images_per_s']:12,.0f} images/s  median "
            f"{r['median_batch_s'] * 1e3:7.2f} ms/batch [min {r['min_batch_s'] * 1e3:.2f}, "
            f"max {r['max_batch_s'] * 1e3:.2f}] over {r['steps']} batches"
        )
    t = report["training"]
    if t is not None:
        print(
            f"  training {t['images_per_s']:12,.0f} images/s  median "
            f"{t['median_batch_s'] * 1e3:7.2f} ms/batch [min {t['min_batch_s'] * 1e3:.2f}, "
            f"max {t['max_batch_s'] * 1e3:.2f}] over {t['steps']} train_on_batch calls"
        )
        for name, ratio in report["ratio_pipeline_over_training"].items():
            flag = "" if ratio >= 10 else "  <-- below the required 10x"
            print(f"  {name} pipeline / training throughput: {ratio:.1f}x{flag}")
    if args.json:
        artifacts.write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
