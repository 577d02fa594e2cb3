"""Host syncs and host data in one training step on torch: what stands between the step and
a captured CUDA graph, counted on any machine (the CPU included).

    KERAS_BACKEND=torch python -m keras_fmnist.bench.host_syncs [--batch-size 8 --json PATH]

A CUDA graph replays device work only: inside a captured step, reading a tensor as a Python
number (`int(t)`, `t.item()`, `bool(t)`: aten's `_local_scalar_dense`), an op whose output
size depends on the data (`nonzero`, `masked_select`, `unique`) or a tensor made from host
data (`torch.tensor(3.0)`: aten's `lift_fresh`, a host-to-device copy on CUDA) either
synchronises with the host or is not replayed. Each is an aten op, so the same count on the
CPU says what capture would meet on a GPU. For each configuration `accelerate(model)` is
compiled as `run.py` compiles it (`experiments.compile_for_run`), one `train_on_batch` warms
it up, and the next one runs under a `TorchDispatchMode` that records these ops and the
Python line that caused each (the first frame outside torch).
"""

import argparse
import collections
import os
import sys
import traceback

import keras_fmnist  # noqa: F401  (sets the default backend before keras loads)
import keras

from keras_fmnist import artifacts
from keras_fmnist import experiments
from keras_fmnist.accelerate import accelerate
from keras_fmnist.backend import private_api
from keras_fmnist.bench import training as bench_training
from keras_fmnist.run_config import RunConfig

# aten op -> why capture cannot keep it.
HOST_OPS = {
    "aten::_local_scalar_dense": "host sync: a tensor read as a Python number",
    "aten::nonzero": "host sync: output size depends on the data",
    "aten::masked_select": "host sync: output size depends on the data",
    "aten::_unique2": "host sync: output size depends on the data",
    "aten::lift_fresh": "host data: a tensor made from a Python value (host-to-device copy)",
}
CONFIGURATIONS = {
    "baseline": {},
    "deform-1-3": {"deform_layers": (1, 3)},
    "dropblock-0.1": {"deform_layers": (3,), "regularizer": "dropblock", "p": 0.1},
    "stodepth-0.1": {"deform_layers": (3,), "regularizer": "stodepth", "p": 0.1},
}
_THIS_FILE = os.path.abspath(__file__)
# Keras' op and backend layers: the code that calls them is where a change would go.
_PLUMBING = tuple(os.sep.join(("keras", "src", d, "")) for d in
                  ("backend", "ops", "random", "dtype_policies"))


def _where(torch_dir):
    """Where an op came from: the innermost Python line outside the torch package (Keras'
    torch backend counts as Keras), then, if that is inside Keras' backend or ops, the line
    that called into them (the layer or step to change)."""
    inner = None
    for frame in reversed(traceback.extract_stack()):
        path = os.path.abspath(frame.filename)
        if path.startswith(torch_dir) or path == _THIS_FILE or frame.filename.startswith("<"):
            continue
        line = f"{_short(path)}:{frame.lineno}"
        if inner is None:
            inner = line
        if not any(part in path for part in _PLUMBING):
            return line if line == inner else f"{inner} <- {line}"
    return inner or "?"


def _short(path):
    for marker in ("site-packages" + os.sep, os.sep + "keras_fmnist" + os.sep):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail if marker.startswith("site") else "keras_fmnist" + os.sep + tail
    return path


def host_op_census(fn, *args, **kwargs):
    """Runs `fn(*args, **kwargs)` and returns `Counter({(aten op, where): count})` of the
    HOST_OPS it ran (torch backend)."""
    import torch

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    census = collections.Counter()

    class Census(private_api.torch_dispatch_mode_class()):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.name().split(".")[0]  # "aten::add.Tensor" -> "aten::add"
            if name in HOST_OPS:
                census[(name, _where(torch_dir))] += 1
            return func(*args, **(kwargs or {}))

    with Census():
        fn(*args, **kwargs)
    return census


def training_step_census(config, batch_size=8, seed=0):
    """The HOST_OPS of one training step (`train_on_batch`, after a warm-up step) of
    `accelerate(model)` built from `config` and compiled as `run_training` compiles it."""
    model, _ = experiments.build_model(config)
    model = accelerate(model)
    experiments.compile_for_run(model, config, steps_per_epoch=1)
    x, y = bench_training.random_batch(batch_size, seed)
    model.train_on_batch(x, y)
    census = host_op_census(model.train_on_batch, x, y)
    keras.backend.clear_session()
    return census


def _rows(census):
    return [{"op": op, "why": HOST_OPS[op], "where": where, "count": count}
            for (op, where), count in census.most_common()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS),
                        help=f"comma-separated, of {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--json", help="also write the census here")
    args = parser.parse_args(argv)
    names = [n for n in args.configurations.split(",") if n]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or not names:
        parser.exit(2, f"host_syncs: unknown configuration(s) {', '.join(unknown) or '(none)'}"
                       f"; choose from {', '.join(CONFIGURATIONS)}\n")
    if args.batch_size < 1:
        parser.exit(2, f"host_syncs: --batch-size must be at least 1; got {args.batch_size}\n")
    if keras.backend.backend() != "torch":
        parser.exit(2, "host_syncs: counts torch's aten ops; run it with KERAS_BACKEND=torch "
                       f"(the backend is {keras.backend.backend()})\n")
    results = {}
    for name in names:
        census = training_step_census(RunConfig(**CONFIGURATIONS[name]), args.batch_size)
        results[name] = _rows(census)
        syncs = sum(n for (op, _), n in census.items() if op != "aten::lift_fresh")
        lifts = sum(n for (op, _), n in census.items() if op == "aten::lift_fresh")
        print(f"{name}: {syncs} host sync(s), {lifts} tensor(s) from host data per step")
        for row in results[name]:
            print(f"  {row['count']:4d}  {row['op']:28s} {row['where']}")
    if args.json:
        artifacts.write_json(args.json, {"batch_size": args.batch_size,
                                         "versions": experiments.versions(),
                                         "configurations": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
