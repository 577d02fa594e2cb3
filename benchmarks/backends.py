"""Training speed of the same model on each Keras backend, each in its own process.

    python benchmarks/backends.py --backends torch,jax,tensorflow --steps 20 --repeats 3 \
        --out benchmarks/results/cpu_backends.json

The model is the study's baseline: `keras_fmnist.build_resnet18()` compiled by
`keras_fmnist.training.compile_model` (Adam, soft-target cross-entropy), trained with
`model.train_on_batch` on batches of `--batch_size` real Fashion-MNIST images (the first
`--images` of the training set, cycled). On torch it is measured twice: the stock graph, as
on the other backends, and `keras_fmnist.accelerate(model)` (what run.py trains), reported as
`accelerated_images_per_second`; on jax and tensorflow `accelerate` returns the model
unchanged, so there is one figure. The torch child also times the study's plain-PyTorch
training step (`keras_fmnist.bench.training.make_torch_step`: the same network and Adam, no
Keras) as `pytorch_reference_images_per_second`, so the reference sits in the same file,
measured under the same conditions. Every backend runs in a fresh subprocess because
`KERAS_BACKEND` is read once, when keras is first imported. Per backend: `--warmup` steps
first (graph tracing / compilation, not timed), then `--repeats` timed runs of `--steps`
steps; the reported figure is the median of the repeats' images/s. `train_on_batch` returns
its logs as numbers, so each timed step has finished when the next starts.

The machine's load average is recorded before and after: other work on the CPU slows every
backend, so compare numbers from one file only.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKENDS = ("torch", "jax", "tensorflow")
# Quiet TensorFlow's C++ start-up lines in the child (they are not results).
CHILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1; got {text}")
    return value


def _backend_list(text):
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BACKENDS]
    if not names or unknown or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected distinct names from {','.join(BACKENDS)}; got {text!r}"
        )
    return names


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=_backend_list, default=list(BACKENDS),
                        help="comma-separated, from torch,jax,tensorflow (default: all)")
    parser.add_argument("--steps", type=_positive_int, default=20,
                        help="timed training steps per repeat")
    parser.add_argument("--repeats", type=_positive_int, default=3,
                        help="timed runs per backend; the median is reported")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps first (tracing, compilation); default 3")
    parser.add_argument("--batch_size", type=_positive_int, default=128)
    parser.add_argument("--images", type=_positive_int, default=512,
                        help="real training images used (cycled); default 512")
    parser.add_argument("--out", default=None, help="JSON file to write (atomically)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0; got {args.warmup}")
    return args


def measure(args):
    """In the child: time training steps on the backend keras was imported with."""
    import numpy as np

    import keras
    import keras_fmnist
    from keras_fmnist import pipeline
    from keras_fmnist import training

    assert keras.backend.backend() == args.child, (keras.backend.backend(), args.child)
    (x_train, y_train), _ = keras_fmnist.load_fashion_mnist(source="files")
    x = pipeline.to_model_inputs(x_train[: args.images])
    y = pipeline.one_hot(y_train[: args.images])
    mean, variance = pipeline.standardisation_stats(x_train[: args.images])
    # Whole batches only, so every step has the same shape (no retracing on jax / tf).
    n_batches = max(len(x) // args.batch_size, 1)
    batches = [
        (x[i * args.batch_size : (i + 1) * args.batch_size],
         y[i * args.batch_size : (i + 1) * args.batch_size])
        for i in range(n_batches)
    ]

    def time_training(accelerated):
        keras.utils.set_random_seed(0)
        model = keras_fmnist.build_resnet18(input_mean=mean, input_variance=variance)
        if accelerated:
            model = keras_fmnist.accelerate(model)
        model = training.compile_model(model)
        step = 0

        def train(steps):
            nonlocal step
            for _ in range(steps):
                xb, yb = batches[step % n_batches]
                logs = model.train_on_batch(xb, yb, return_dict=True)
                step += 1
            return logs

        start = time.perf_counter()
        train(args.warmup)
        warmup_seconds = time.perf_counter() - start
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            logs = train(args.steps)
            elapsed = time.perf_counter() - start
            rates.append(args.steps * len(batches[0][0]) / elapsed)
        if not np.isfinite(float(logs["loss"])):
            raise RuntimeError(f"non-finite training loss on {args.child}: {logs['loss']}")
        return rates, warmup_seconds, logs

    rates, warmup_seconds, logs = time_training(accelerated=False)
    extra = {}
    if args.child == "torch":
        fast_rates, _, _ = time_training(accelerated=True)
        reference_rates = time_pytorch_reference(args)
        extra = {
            "accelerated_images_per_second": round(statistics.median(fast_rates), 1),
            "accelerated_repeats_images_per_second": [round(r, 1) for r in fast_rates],
            "pytorch_reference_images_per_second": round(statistics.median(reference_rates), 1),
            "pytorch_reference_repeats_images_per_second": [
                round(r, 1) for r in reference_rates
            ],
        }
    backend_module = {"torch": "torch", "jax": "jax", "tensorflow": "tensorflow"}[args.child]
    return {
        "images_per_second": round(statistics.median(rates), 1),
        "repeats_images_per_second": [round(r, 1) for r in rates],
        "warmup_seconds": round(warmup_seconds, 2),
        "batch_size": len(batches[0][0]),
        "last_loss": round(float(logs["loss"]), 4),
        **extra,
        "versions": {
            "keras": keras.__version__,
            backend_module: __import__(backend_module).__version__,
        },
    }


def time_pytorch_reference(args):
    """images/s of the study's plain-PyTorch training step (no Keras), on the CPU."""
    from keras_fmnist.bench import training as bench_training

    step, _, _ = bench_training.make_torch_step(args.batch_size, device="cpu")
    for _ in range(args.warmup):
        step()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()  # returns Python numbers: the step has finished
        rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
    return rates


def run_child(backend, args):
    cmd = [sys.executable, os.path.abspath(__file__), f"--child={backend}",
           f"--steps={args.steps}", f"--repeats={args.repeats}", f"--warmup={args.warmup}",
           f"--batch_size={args.batch_size}", f"--images={args.images}"]
    env = {**os.environ, **CHILD_ENV, "KERAS_BACKEND": backend}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"backends.py: the {backend} run failed (exit {result.returncode}):\n"
            + result.stderr[-4000:]
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_json_atomically(path, obj):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args)))
        return
    load_before = os.getloadavg()
    results = {}
    for backend in args.backends:
        results[backend] = run_child(backend, args)
        line = f"{backend}: {results[backend]['images_per_second']} images/s"
        if "accelerated_images_per_second" in results[backend]:
            line += (
                f" (accelerate: {results[backend]['accelerated_images_per_second']}; plain "
                f"PyTorch: {results[backend]['pytorch_reference_images_per_second']})"
            )
        print(line, file=sys.stderr)
    report = {
        "what": "training images/s of build_resnet18() + compile_model, train_on_batch, "
                "median of repeats, warm-up excluded; on torch also of "
                "accelerate(build_resnet18()) and of the plain-PyTorch reference step",
        "backends": results,
        "steps": args.steps,
        "repeats": args.repeats,
        "warmup_steps": args.warmup,
        "batch_size": args.batch_size,
        "images": args.images,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out:
        write_json_atomically(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
