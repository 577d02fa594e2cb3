"""`accelerate(model)`: the same functional Keras model, with a faster forward on torch.

`build_resnet18` returns a stock functional `keras.Model` (Conv2D, BatchNormalization, ReLU,
Add, ZeroPadding2D, MaxPooling2D, ... plus the study's own layers): portable, saveable
without this package, and correct to tap anywhere. On the torch backend Keras runs each of
those layers through `Layer.__call__` and its generic ops, which costs a ResNet-18 step on a
CPU a good part of plain PyTorch's speed. `accelerate` is the one, explicit step that buys
it back. It plans the model's graph once and returns an `AcceleratedModel` that shares the
model's layers and weights and runs:

- a direct graph walk: each layer's `call` in graph order, without `Layer.__call__`'s
  per-call bookkeeping;
- `ZeroPadding2D` folded into the `Conv2D` (or `MaxPooling2D`) it feeds, as torch's own
  symmetric padding argument; max-pooling padding is folded only where the padded tensor
  is provably non-negative (a ReLU's output), since zeros and torch's -inf padding then
  give the same maximum;
- `Conv2D` through `torch.nn.functional.conv2d` with the kernel stored channels-last in
  memory (same values; neither the kernel nor its gradient is copied per call);
- `BatchNormalization` through torch's fused batch-norm kernels, with a backward pass as
  accurate as the stock graph's (`batch_norm.py` says how and why), fused with the ReLU it
  feeds where that ReLU is its only reader, moving statistics updated Keras' way (biased
  variance, `moving = m * moving + (1 - m) * batch`);
- ReLU and the residual `Add` in place, as torchvision does, but only where the graph
  proves it safe: the overwritten tensor has exactly one reader, is neither a model input
  nor a model output, and was produced by a layer whose backward pass does not need it;
- on a model compiled through it with Keras' `Adam`, that optimizer's update through
  torch's fused Adam kernel (same update; see `keras_fmnist.optimizers.FusedAdam`).

The package: `graph.py` (a read-only view of the model's graph), `lowerings.py` (the
registry: how each layer type runs; the one place to add one), `inplace.py` (which ReLU and
Add steps overwrite their input), `planner.py` (from model to plan), `plan.py`, `kernels.py`
and `batch_norm.py` (the torch computations), `model.py` (`accelerate`, `AcceleratedModel`).

Everything private this needs lives in `keras_fmnist.backend.private_api`, pinned to the
releases it was written for. Nothing falls back silently: `verbose=True` prints what was
applied where and what was left alone and why; `acceleration_counts` counts the calls that
took the planned path and those that went to the stock model (with the reason, warned
about once per reason); saving writes the stock model. On backends other than torch `accelerate` returns the model as is.
"""

from keras_fmnist.accelerate.model import AcceleratedModel
from keras_fmnist.accelerate.model import accelerate
from keras_fmnist.accelerate.model import stock_model
from keras_fmnist.accelerate.plan import Decision

__all__ = ["AcceleratedModel", "Decision", "accelerate", "stock_model"]
