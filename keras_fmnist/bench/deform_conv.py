"""Micro-benchmark: forward + backward of a 3x3 DeformConv2D, per implementation.

    python -m keras_fmnist.bench.deform_conv [--batch 128 --channels 64 --size 7
                                              --repeats 5 --threads N --json PATH]

Times one training step's worth of work (forward, then gradients of the summed output
with respect to the input and every weight) of a `DeformConv2D(channels, 3)` layer on a
(batch, size, size, channels) input, for each implementation the backend offers, in one
process, on the same data and weights, timed in turns (round robin), so that each
sees the same load on a shared machine. The layer's offset convolution gets small random
weights, so the offsets are not all zero as in a fresh layer. `--threads` sets torch's
intra-op thread count (torch backend only). Warm-up steps are excluded; the median and
the spread (min, max) over `repeats` timed steps are reported.
`keras_fmnist.ops.deform_conv.select_implementation` ("auto") must pick the fastest
implementation this reports on the same backend and device (on an unloaded machine).
"""

import argparse
import statistics
import time

import keras_fmnist  # noqa: F401  (sets the default backend before keras loads)
import keras
import numpy as np

from keras_fmnist import artifacts
from keras_fmnist.layers.deform_conv2d import DeformConv2D
from keras_fmnist.ops.deform_conv import select_implementation


def available_implementations(backend=None):
    backend = backend or keras.backend.backend()
    if backend == "torch":
        return ("keras", "torchvision")
    return ("keras",)


def _device():
    if keras.backend.backend() == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend()
    return "cpu"


def _threads():
    if keras.backend.backend() == "torch":
        import torch

        return torch.get_num_threads()
    return None


def _make_step(layer, x):
    """A zero-argument callable that runs forward + backward once and waits for it."""
    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        x = keras.ops.convert_to_tensor(x).requires_grad_(True)
        weights = [w.value for w in layer.trainable_weights]

        def step():
            for tensor in [x] + weights:
                tensor.grad = None
            layer(x).sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize()

        return step
    if backend == "jax":
        import jax

        x = keras.ops.convert_to_tensor(x)
        trainable = [w.value for w in layer.trainable_weights]
        non_trainable = [w.value for w in layer.non_trainable_weights]

        def loss(trainable, x):
            y, _ = layer.stateless_call(trainable, non_trainable, x)
            return y.sum()

        grad = jax.jit(jax.grad(loss, argnums=(0, 1)))

        def step():
            jax.block_until_ready(grad(trainable, x))

        return step
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.Variable(x)

        @tf.function
        def grads():
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(layer(x))
            return tape.gradient(y, [x] + layer.trainable_variables)

        def step():
            [g.numpy() for g in grads()]

        return step
    raise ValueError(f"Unsupported backend: {backend}")


def measure(batch=128, channels=64, size=7, repeats=5, implementations=None, warmup=2,
            seed=0):
    """Times forward + backward of a 3x3 DeformConv2D for each implementation.

    Args:
        batch, channels, size: input shape (batch, size, size, channels); the layer maps
            `channels` to `channels` filters.
        repeats: timed steps per implementation (warm-up steps excluded).
        implementations: names to time; defaults to all the backend offers.
        warmup: untimed steps first (compilation, allocator warm-up).
        seed: seed of the input and the weights.

    Returns:
        A dict with the setting, per implementation the median / min / max seconds and
        all timings, `fastest`, `auto` (what implementation="auto" picks here) and
        `ratio` (each implementation's median over the fastest median).
    """
    implementations = tuple(implementations or available_implementations())
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, size, size, channels)).astype("float32")
    offset_kernel = None
    steps = {}
    for name in implementations:
        keras.utils.set_random_seed(seed)
        layer = DeformConv2D(channels, 3, implementation=name)
        layer.build(x.shape)
        # Offsets of a few tenths of a pixel, so sampling is genuinely fractional; the
        # same weights for every implementation.
        if offset_kernel is None:
            offset_kernel = 0.05 * rng.standard_normal(layer.offset_kernel.shape)
        layer.offset_kernel.assign(offset_kernel.astype("float32"))
        steps[name] = _make_step(layer, x)
        for _ in range(warmup):
            steps[name]()
    # Round robin, so that a shared machine's changing load hits every implementation
    # alike and the ratio stays meaningful.
    times = {name: [] for name in implementations}
    for _ in range(repeats):
        for name in implementations:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    results = {
        name: {
            "median_s": statistics.median(t),
            "min_s": min(t),
            "max_s": max(t),
            "times_s": t,
        }
        for name, t in times.items()
    }
    fastest = min(results, key=lambda n: results[n]["median_s"])
    return {
        "benchmark": "deform_conv2d forward+backward",
        "backend": keras.backend.backend(),
        "device": _device(),
        "batch": batch,
        "channels": channels,
        "size": size,
        "kernel_size": 3,
        "repeats": repeats,
        "warmup": warmup,
        "threads": _threads(),
        "results": results,
        "fastest": fastest,
        "auto": select_implementation(keras.backend.backend(), _device()),
        "ratio": {
            n: results[n]["median_s"] / results[fastest]["median_s"] for n in results
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--implementations", nargs="+", default=None)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (torch backend only)")
    parser.add_argument("--json", default=None, help="write the result dict here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if keras.backend.backend() != "torch":
            parser.error("--threads applies to the torch backend only")
        import torch

        torch.set_num_threads(args.threads)
    report = measure(args.batch, args.channels, args.size, args.repeats,
                     args.implementations, args.warmup)
    print(f"{report['benchmark']} | backend {report['backend']} ({report['device']}) | "
          f"batch {args.batch}, {args.channels} ch, {args.size}x{args.size}, "
          f"{args.repeats} repeats, threads {report['threads']}")
    for name, r in report["results"].items():
        print(f"  {name:12s} median {r['median_s'] * 1e3:8.1f} ms  "
              f"[min {r['min_s'] * 1e3:.1f}, max {r['max_s'] * 1e3:.1f}]  "
              f"x{report['ratio'][name]:.2f} of fastest")
    print(f"  fastest: {report['fastest']}; implementation='auto' picks: {report['auto']}"
          + ("" if report["auto"] == report["fastest"] else "  <-- MISMATCH"))
    if args.json:
        artifacts.write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
