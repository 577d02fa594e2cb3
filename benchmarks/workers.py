"""The --workers speed-up: one small sweep (the 4 augmentation runs) with 1 and with N workers.

    python benchmarks/workers.py OUT_JSON [--workers N] [-- extra run.py flags]

Both sweeps run one after the other on this machine, each into a fresh artifacts directory;
OUT_JSON gets their wall times and the ratio. Run it on an otherwise idle machine.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = ["--experiment=augment", "--augment=all", "--train_limit=20000", "--test_limit=2000",
         "--epochs=2", "--verbose=0"]


def time_sweep(workers, artifacts_dir, extra):
    start = time.perf_counter()
    subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *SWEEP, *extra,
                    f"--artifacts_dir={artifacts_dir}", f"--workers={workers}"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("extra", nargs="*", help="more run.py flags")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        one = time_sweep(1, os.path.join(scratch, "1"), args.extra)
        many = time_sweep(args.workers, os.path.join(scratch, "n"), args.extra)
    result = {
        "workers_1_seconds": round(one, 1),
        f"workers_{args.workers}_seconds": round(many, 1),
        "speedup": round(one / many, 3),
        "sweep": SWEEP + args.extra,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "backend": os.environ.get("KERAS_BACKEND", "torch"),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
