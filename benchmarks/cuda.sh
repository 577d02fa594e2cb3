#!/usr/bin/env bash
# The CUDA half of the benchmark, for a machine with a GPU:
#   benchmarks/cuda.sh OUT_DIR
# 1-3. python -m keras_fmnist.bench on cuda (Keras vs plain PyTorch, baseline and
#      deformable 1+3 + CutMix, training and inference);
# 4.   DeformConv2D forward+backward, keras vs torchvision, at the shapes of the two
#      deformable stages (64 ch at 7x7, 256 ch at 2x2), which decides the "auto" rule on cuda;
# then the parity tests (deformable convolution vs torchvision, fast layers, ResNet) on it.
set -uo pipefail
out=${1:?usage: benchmarks/cuda.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 2
nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
python3 -m keras_fmnist.bench --device cuda --repeats 7 --steps 5 \
    --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.log"
for shape in "64 7" "256 2"; do
    set -- $shape
    python3 -m keras_fmnist.bench.deform_conv --channels "$1" --size "$2" --repeats 9 \
        --json "$out/deform_conv_c$1_s$2.json"
done 2>&1 | tee "$out/deform_conv.log"
python3 -m pytest -q -p no:cacheprovider tests/test_deform_conv.py tests/test_fast_layers.py \
    tests/test_drop_block.py tests/test_stochastic_depth.py tests/test_bench.py \
    tests/test_resnet.py 2>&1 | tee "$out/pytest_cuda.log" | tail -30
