"""What the strong recipe's stem costs: training images/s and the minutes an epoch and a run
take, per stem, on this machine.

    python benchmarks/strong_cost.py OUT_JSON [--steps 5 --repeats 3]

Each stem's model (`build_resnet18(stem=...)`, accelerated, compiled with the recipe's SGD,
label smoothing and EMA) trains `repeats` x `steps` batches of 128 real Fashion-MNIST images
after two warm-up steps; the median is reported, with the epoch time (54,000 training
images) and the run time for `recipes.STRONG["epochs"]` epochs that follow from it. Run it on
an otherwise idle machine.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_fmnist  # noqa: E402
import keras  # noqa: E402

from keras_fmnist import artifacts  # noqa: E402
from keras_fmnist import pipeline  # noqa: E402
from keras_fmnist import recipes  # noqa: E402
from keras_fmnist import training  # noqa: E402

TRAIN_IMAGES = 54_000  # 60,000 less the 10% validation split


def images_per_second(stem, x, y, steps, repeats):
    keras.utils.set_random_seed(0)
    model = keras_fmnist.accelerate(keras_fmnist.build_resnet18(stem=stem))
    training.compile_model(
        model,
        optimizer=training.make_optimizer("sgd", 0.1, weight_decay=5e-4, ema=True),
        label_smoothing=0.1,
    )
    for _ in range(2):
        model.train_on_batch(x, y)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        rates.append(len(x) * steps / (time.perf_counter() - start))
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_json")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    (x_train, y_train), _ = keras_fmnist.load_fashion_mnist()
    x = pipeline.to_model_inputs(x_train[:128])
    y = pipeline.one_hot(y_train[:128])
    result = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "loadavg": os.getloadavg(), "backend": keras.backend.backend()},
              "batch_size": 128, "steps": args.steps, "repeats": args.repeats, "stems": {}}
    for stem in ("imagenet", "cifar"):
        rates = images_per_second(stem, x, y, args.steps, args.repeats)
        rate = statistics.median(rates)
        epoch_minutes = TRAIN_IMAGES / rate / 60
        result["stems"][stem] = {
            "images_per_s": rate, "values": rates, "epoch_minutes": epoch_minutes,
            "run_minutes_at_recipe_epochs": epoch_minutes * recipes.STRONG["epochs"],
        }
        print(f"{stem:8s} {rate:8.1f} images/s  {epoch_minutes:6.1f} min/epoch  "
              f"{epoch_minutes * recipes.STRONG['epochs']:7.1f} min per "
              f"{recipes.STRONG['epochs']}-epoch run")
    artifacts.write_json(args.out_json, result)


if __name__ == "__main__":
    main()
