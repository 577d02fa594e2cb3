"""The project's benchmark: Keras (this package) vs the study's plain PyTorch, side by side.

    python -m keras_fmnist.bench [--batch-size 128 --repeats 5 --steps 3 --device cpu
                                  --threads N --json PATH --skip-deform --skip-memory]

1. training images/s of `accelerate(build_resnet18())` + `compile_model` (`train_on_batch`) vs
   the plain PyTorch reference (torchvision resnet18, study surgery, Adam 3e-4): the ratio;
   also a user's own `compile(keras.optimizers.Adam(3e-4), ...)` on the accelerated model,
   and the stock model not accelerated (`--keras-sides`);
2. the same with `deform_layers=(1, 3)` and CutMix, vs torchvision.ops.deform_conv2d blocks;
3. inference images/s of both (part of 1 and 2);
4. DeformConv2D forward + backward, torchvision vs keras implementation
   (`keras_fmnist.bench.deform_conv.measure`; also checks the "auto" rule);
5. peak resident memory (and peak GPU memory on cuda) of each side, each trained alone in
   a fresh subprocess;
6. seconds per Adam update: Keras' own `Adam` vs the same through `accelerate`'s fused
   update, default and amsgrad (`bench.training.optimizer_update_times`).

All timings are in one process, interleaved, warm-up excluded; see `bench/training.py`.
"""

import argparse
import json
import os
import platform
import subprocess
import sys

import keras_fmnist  # noqa: F401
from keras_fmnist import artifacts
import keras

from keras_fmnist.bench import deform_conv
from keras_fmnist.bench import training as bench_training


def _machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    info["keras"] = keras.__version__
    info["backend"] = keras.backend.backend()
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _peak_memory_subprocess(side, args, deform_layers, cutmix):
    code = (
        "import sys, json; from keras_fmnist.bench import training as t; "
        f"print(json.dumps(t.train_only_peak_memory({side!r}, {args.batch_size}, {args.steps}, "
        f"{tuple(deform_layers)!r}, {cutmix!r}, {args.device!r})))"
    )
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print_compare(title, r):
    print(f"\n{title} | batch {r['batch_size']}, {r['repeats']} x {r['steps']} steps, "
          f"device {r['device']}, torch threads {r['torch_threads']}")
    for mode in ("train", "inference"):
        if mode not in r:
            continue
        m = r[mode]
        for unit in ("images_per_s", "images_per_cpu_s"):
            cells = []
            for side, s in m[unit].items():
                cells.append(f"{side} {s['median']:8.1f} [{s['min']:.0f}-{s['max']:.0f}]")
            print(f"  {mode:9s} {unit:17s} " + "   ".join(cells))
        for side in m["ratios_wall"]:
            print(f"  {mode:9s} {side}/torch ratio: wall {m['ratios_wall'][side]:.2f}, "
                  f"cpu {m['ratios_cpu'][side]:.2f}")


def run(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        bench_training.check_device(args.device)
    except ValueError as e:
        raise SystemExit(f"--device {args.device}: {e}")
    report = {"machine": _machine(), "args": vars(args)}
    common = dict(
        batch_size=args.batch_size,
        repeats=args.repeats,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        data_format=args.data_format,
    )
    report["baseline"] = bench_training.compare(keras_sides=tuple(args.keras_sides), **common)
    _print_compare("1+3. ResNet-18 baseline", report["baseline"])
    if not args.skip_deform:
        report["deform_1_3_cutmix"] = bench_training.compare(
            deform_layers=(1, 3), cutmix=True, **common
        )
        _print_compare("2+3. ResNet-18, deformable stages 1+3, CutMix",
                       report["deform_1_3_cutmix"])
        d = deform_conv.measure(
            batch=args.batch_size, channels=64, size=7, repeats=args.repeats,
            warmup=args.warmup,
        )
        report["deform_conv2d"] = d
        print(f"\n4. DeformConv2D fwd+bwd, batch {args.batch_size}, 64 ch, 7x7 "
              f"({d['backend']}, {d['device']})")
        for name, r in d["results"].items():
            print(f"  {name:12s} median {r['median_s'] * 1e3:8.1f} ms "
                  f"[{r['min_s'] * 1e3:.1f}-{r['max_s'] * 1e3:.1f}]")
        print(f"  fastest {d['fastest']}; 'auto' picks {d['auto']}"
              + ("" if d["auto"] == d["fastest"] else "  <-- the auto rule disagrees"))
    if not args.skip_memory:
        memory = {}
        configs = [("baseline", (), False)]
        if not args.skip_deform:
            configs.append(("deform_1_3_cutmix", (1, 3), True))
        for name, deform_layers, cutmix in configs:
            memory[name] = {
                side: _peak_memory_subprocess(side, args, deform_layers, cutmix)
                for side in ("keras", "torch")
            }
        report["peak_memory_mib"] = memory
        print("\n5. peak memory (MiB), each side trained alone in a fresh process")
        for name, sides in memory.items():
            for kind in sides["keras"]:
                print(f"  {name:18s} {kind:5s} keras {sides['keras'][kind]:7.0f}   "
                      f"torch {sides['torch'][kind]:7.0f}")
    if not args.skip_optimizer:
        report["adam_update"] = bench_training.optimizer_update_times(
            repeats=args.repeats, steps=args.steps, warmup=args.warmup
        )
        print("\n6. Adam update of the ResNet-18's weights (ms): Keras' Adam vs fused")
        for config, r in report["adam_update"].items():
            k = r["seconds_per_update"]["keras_adam"]["median"] * 1e3
            f = r["seconds_per_update"]["fused_adam"]["median"] * 1e3
            print(f"  {config:8s} keras {k:7.2f}   fused {f:7.2f}   "
                  f"fused/keras {r['fused_over_keras']:.2f}   {r['fused_counts']}")
    if args.json:
        artifacts.write_json(args.json, report)
    return report


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per repetition")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads for both sides (0: torch's default)")
    parser.add_argument("--data-format", choices=("channels_last", "channels_first"),
                        default=None, help="the Keras model's internal layout "
                        "(default: build_resnet18's)")
    parser.add_argument("--keras-sides", type=lambda t: t.split(","),
                        default=["keras", "keras_user", "keras_stock"],
                        help="Keras setups timed on the baseline, comma-separated: "
                        + ", ".join(bench_training.KERAS_SIDES))
    parser.add_argument("--skip-deform", action="store_true")
    parser.add_argument("--skip-optimizer", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--json", default=None, help="write the full report here")
    args = parser.parse_args(argv)
    bad = [s for s in args.keras_sides if s not in bench_training.KERAS_SIDES]
    if bad or not args.keras_sides:
        parser.error(f"--keras-sides: unknown {bad}; choose from "
                     + ", ".join(bench_training.KERAS_SIDES))
    for name in ("batch_size", "repeats", "steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv=None):
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
