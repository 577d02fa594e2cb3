"""Which training-mode batch norm `accelerate` runs on torch: accuracy and speed, measured.

    python -m keras_fmnist.bench.batch_norm [--repeats 20 --seeds 3 --json PATH]

Candidates (each returns (y, batch mean, batch inverse std), differentiable in x, gamma, beta):

- `native`: `torch.native_batch_norm` on the channels-last activations as they come (what
  plain PyTorch's `nn.BatchNorm2d` runs);
- `contiguous`: the same kernel on a channels-first copy of the input;
- `float64`: the same kernel in float64 (a precision ceiling, not a candidate for speed);
- `accelerate`: `keras_fmnist.accelerate.batch_norm.batch_norm_training`, what accelerate runs
  (the kernel's forward with a pairwise batch mean for the moving average; the backward
  given a centred dy and its dx recentred);
- `exact_statistics`: `accelerate`'s backward after exact forward statistics (pairwise
  mean, then the pairwise mean of the squared deviations, then the kernel in inference
  mode).

Three measurements, all in this process:

1. one op in isolation against a float64 reference: channels-last inputs of two sizes and two
   distributions, a gradient with a per-channel constant part (as a global average pool
   gives); worst relative error (max abs error / max abs value) of y, dx, dgamma, dbeta, the
   mean and the inverse std. The stock Keras graph's own formula (`keras.ops.moments` and
   `keras.ops.batch_normalization`, what `BatchNormalization` runs) is measured beside them;
2. in the model: `accelerate(build_resnet18(...))` with each candidate against the same model
   built under the float64 dtype policy (same weights, same images): worst relative error of
   the logits, of any weight's gradient, of any moving mean and variance after one training call; the
   median over `--seeds` image batches (a ReLU whose input lies within rounding of zero flips
   in some batches, for any float32 path, and dominates the worst error there);
3. speed: milliseconds per `train_on_batch` of `accelerate(build_resnet18())` compiled with
   `compile_model` (batch 128), the candidates timed in turns; median and min.
"""

import argparse
import time

import keras_fmnist  # noqa: F401  (sets the default backend before keras loads)
import keras
import numpy as np

from keras_fmnist import artifacts
from keras_fmnist import training
from keras_fmnist.accelerate import accelerate
from keras_fmnist.accelerate import batch_norm as accelerated_batch_norm
from keras_fmnist.accelerate import kernels
from keras_fmnist.backend import private_api


def _candidates():
    import torch

    # Each takes `relu` as the accelerated op does (a ReLU on its output, in place).
    def native(x, gamma, beta, epsilon, relu=False):
        y, mean, invstd = private_api.native_batch_norm(
            x, gamma, beta, None, None, True, 0.0, epsilon)
        return (y.relu_() if relu else y), mean, invstd

    def contiguous(x, gamma, beta, epsilon, relu=False):
        return native(x.contiguous(), gamma, beta, epsilon, relu)

    def float64(x, gamma, beta, epsilon, relu=False):
        y, mean, invstd = native(x.double(), gamma.double(), beta.double(), epsilon, relu)
        return y.to(x.dtype), mean.to(x.dtype), invstd.to(x.dtype)

    class ExactStatistics(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, gamma, beta, epsilon, relu):
            mean = x.sum((0, 2, 3)).div_(x.numel() // x.shape[1])
            deviation = x - mean.view(1, -1, 1, 1)
            variance = deviation.square_().sum((0, 2, 3)).div_(x.numel() // x.shape[1])
            y = torch.batch_norm(x, gamma, beta, mean, variance, False, 0.0, epsilon, False)
            if relu:
                y = y.relu_()
            invstd = (variance + epsilon).rsqrt_()
            ctx.save_for_backward(x, gamma, mean, invstd, y if relu else None)
            ctx.epsilon = epsilon
            ctx.mark_non_differentiable(mean, invstd)
            return y, mean, invstd

        # The chosen op's backward, given these statistics.
        backward = staticmethod(accelerated_batch_norm._function().backward)

    def exact_statistics(x, gamma, beta, epsilon, relu=False):
        return ExactStatistics.apply(x, gamma, beta, epsilon, relu)

    return {
        "native": native,
        "contiguous": contiguous,
        "float64": float64,
        "accelerate": accelerated_batch_norm.batch_norm_training,
        "exact_statistics": exact_statistics,
    }


def _keras_formula(x, gamma, beta, epsilon):
    """The stock graph's training-mode batch norm, as keras.layers.BatchNormalization runs it."""
    mean, variance = keras.ops.moments(x, axes=(0, 2, 3))
    y = keras.ops.batch_normalization(x, mean, variance, 1, beta, gamma, epsilon)
    return y, mean, keras.ops.rsqrt(variance + epsilon)


def _relative(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def isolated_errors(cases=None):
    """Measurement 1: {case: {candidate: {quantity: relative error}}}."""
    import torch

    cases = cases or [
        ((8, 64, 28, 28), 0.0, 1.0),
        ((128, 64, 14, 14), 0.0, 1.0),
        ((128, 64, 14, 14), 2.0, 0.5),
    ]
    functions = {**_candidates(), "stock_keras_formula": _keras_formula}
    epsilon = 1e-5
    results = {}
    for shape, mean, std in cases:
        rng = np.random.default_rng(0)
        x = rng.normal(mean, std, shape)
        channels = shape[1]
        # A per-channel constant gradient plus a smaller varying part.
        dy = rng.normal(0, 1, shape) + rng.normal(0, 10, (1, channels, 1, 1))
        gamma = rng.uniform(0.5, 1.5, channels)
        beta = rng.normal(0, 1, channels)

        def run(fn, dtype):
            tensors = [
                torch.tensor(x, dtype=dtype).contiguous(memory_format=torch.channels_last),
                torch.tensor(gamma, dtype=dtype),
                torch.tensor(beta, dtype=dtype),
            ]
            for t in tensors:
                t.requires_grad_()
            y, batch_mean, invstd = fn(*tensors, epsilon)
            y.backward(torch.tensor(dy, dtype=dtype).contiguous(memory_format=torch.channels_last))
            return [t.detach().numpy() for t in (y, tensors[0].grad, tensors[1].grad,
                                                 tensors[2].grad, batch_mean, invstd)]

        reference = run(functions["native"], torch.float64)
        case = f"{'x'.join(map(str, shape))}, x ~ N({mean}, {std}^2)"
        results[case] = {
            name: dict(zip(("y", "dx", "dgamma", "dbeta", "mean", "invstd"),
                           (_relative(a, b) for a, b in zip(run(fn, torch.float32), reference))))
            for name, fn in functions.items()
        }
    return results


def _model_outputs(model, x):
    """Logits, weight gradients and moving statistics after one training call."""
    import torch

    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape))
    weights = model.trainable_weights
    for w in weights:
        w.value.grad = None
    out = model(torch.as_tensor(x), training=True)
    (out * torch.arange(10, dtype=out.dtype)).sum().backward()
    return (out.detach().numpy(), [w.value.grad.numpy().copy() for w in weights],
            [keras.ops.convert_to_numpy(l.moving_mean) for l in bns],
            [keras.ops.convert_to_numpy(l.moving_variance) for l in bns])


def _worst(pairs):
    return max(_relative(a, b) for a, b in pairs)


def model_errors(configs=None, seeds=3):
    """Measurement 2: {config: {path: {"logits", "gradients", "moving_variance"}}} (medians)."""
    module = kernels  # where the accelerated batch norm step looks the op up
    chosen = module.batch_norm_training
    configs = configs or [({"stem": "cifar", "stages": 1}, 8), ({}, 16), ({}, 128)]
    results = {}
    try:
        for kwargs, batch in configs:
            keras.utils.set_random_seed(0)
            stock = keras_fmnist.build_resnet18(**kwargs)
            keras.config.set_dtype_policy("float64")
            try:
                reference = keras_fmnist.build_resnet18(**kwargs)
            finally:
                keras.config.set_dtype_policy("float32")
            reference.set_weights([w.astype("float64") for w in stock.get_weights()])
            fast = accelerate(stock)
            errors = {}
            for seed in range(seeds):
                x = np.random.default_rng(seed).uniform(size=(batch, 28, 28, 1))
                ref = _model_outputs(reference, x)
                paths = {"stock": stock}
                for name, fn in _candidates().items():
                    paths[name] = (fast, fn)
                for name, path in paths.items():
                    if isinstance(path, tuple):
                        module.batch_norm_training = path[1]
                        got = _model_outputs(path[0], x.astype("float32"))
                    else:
                        got = _model_outputs(path, x.astype("float32"))
                    seen = errors.setdefault(name, {"logits": [], "gradients": [],
                                                    "moving_mean": [], "moving_variance": []})
                    seen["logits"].append(_relative(got[0], ref[0]))
                    seen["gradients"].append(_worst(zip(got[1], ref[1])))
                    seen["moving_mean"].append(_worst(zip(got[2], ref[2])))
                    seen["moving_variance"].append(_worst(zip(got[3], ref[3])))
            label = f"build_resnet18({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}), batch {batch}"
            results[label] = {
                name: {k: float(np.median(v)) for k, v in seen.items()}
                for name, seen in errors.items()
            }
    finally:
        module.batch_norm_training = chosen
    return results


def step_times(repeats=20, steps=2, batch_size=128,
               names=("native", "contiguous", "accelerate", "exact_statistics")):
    """Measurement 3: {candidate: {"median_ms", "min_ms"}} per train_on_batch."""
    module = kernels
    chosen = module.batch_norm_training
    candidates = _candidates()
    keras.utils.set_random_seed(0)
    model = accelerate(keras_fmnist.build_resnet18())
    training.compile_model(model)
    x = np.random.default_rng(0).uniform(size=(batch_size, 28, 28, 1)).astype("float32")
    y = keras.utils.to_categorical(np.arange(batch_size) % 10, 10)
    times = {name: [] for name in names}
    try:
        for name in names:  # warm-up
            module.batch_norm_training = candidates[name]
            model.train_on_batch(x, y)
        for _ in range(repeats):
            for name in names:
                module.batch_norm_training = candidates[name]
                start = time.perf_counter()
                for _ in range(steps):
                    model.train_on_batch(x, y)
                times[name].append((time.perf_counter() - start) / steps * 1e3)
    finally:
        module.batch_norm_training = chosen
    return {n: {"median_ms": float(np.median(t)), "min_ms": float(min(t))}
            for n, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if keras.backend.backend() != "torch":
        parser.error("this benchmark measures accelerate's torch kernels: KERAS_BACKEND=torch")
    import torch

    report = {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"torch {torch.__version__}, CPU capability {report['cpu_capability']}, "
          f"{report['threads']} threads")
    report["isolated"] = isolated_errors()
    print("\n1. one op against float64 (worst relative error)")
    for case, rows in report["isolated"].items():
        print(f"  {case}")
        for name, errors in rows.items():
            print(f"    {name:20s} " + "  ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    report["model"] = model_errors(seeds=args.seeds)
    print(f"\n2. accelerate(model) against the float64 model (median of {args.seeds} batches)")
    for config, rows in report["model"].items():
        print(f"  {config}")
        for name, errors in rows.items():
            print(f"    {name:20s} " + "  ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    if not args.skip_speed:
        report["speed"] = step_times(repeats=args.repeats)
        print("\n3. ms per training step, batch 128, timed in turns")
        for name, t in report["speed"].items():
            print(f"    {name:20s} median {t['median_ms']:.1f}  min {t['min_ms']:.1f}")
    if args.json:
        artifacts.write_json(args.json, report)


if __name__ == "__main__":
    main()
