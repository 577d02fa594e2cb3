#!/usr/bin/env bash
# keras_fmnist's two entry points, each setting up what a fresh machine lacks first:
#   ./dev.sh run [run.py flags]   the main job (default: --experiment=baseline)
#   ./dev.sh test [pytest args]   the test suite on torch, then on jax, then on tensorflow
# Setup: Debian's dataset-fashion-mnist (where apt-get is usable), a virtual environment at
# .venv with the pinned requirements-dev.txt, and the package installed editable.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY="$VENV/bin/python"
DATA_DIR=/usr/share/datasets/fashion-mnist

ensure_dataset() {
  if [ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] || [ -n "${FASHION_MNIST_DIR:-}" ]; then
    return
  fi
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "dev.sh: installing Debian's dataset-fashion-mnist" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "dev.sh: Fashion-MNIST not in $DATA_DIR and apt-get is not usable here;" \
         "set FASHION_MNIST_DIR to a directory with the four IDX .gz files" >&2
  fi
}

ensure_venv() {
  # The stamp holds a hash of the requirement files: unchanged pins skip pip entirely.
  local stamp="$VENV/.requirements.sha256"
  local want
  want=$(cat requirements.txt requirements-dev.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -x "$PY" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  [ -x "$PY" ] || python3 -m venv "$VENV"
  echo "dev.sh: installing pinned packages into $VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
}

run_pytest() {
  # pytest exits 5 when it collected no tests: a suite that ran nothing has not passed.
  local status=0
  "$PY" -m pytest "$@" || status=$?
  if [ "$status" = 5 ]; then
    echo "dev.sh: pytest collected no tests" >&2
    return 1
  fi
  return "$status"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  run)
    ensure_dataset
    ensure_venv
    exec "$PY" run.py "$@"
    ;;
  test)
    ensure_dataset
    ensure_venv
    # One pytest process per backend (Keras reads KERAS_BACKEND once, at import). The
    # markers are declared in pyproject.toml: torch_only tests need torch's own ops;
    # cli_orchestration ones (run.py's sweep machinery, no backend code) run once, for
    # CI time; not_tensorflow ones use what Keras' TensorFlow backend lacks; backend_independent
    # ones run no Keras code and so run once, in the tensorflow pass, where TF is loaded.
    echo "== pytest, KERAS_BACKEND=torch" >&2
    KERAS_BACKEND=torch run_pytest -q -m "not backend_independent" "$@"
    # The float64-reference tests once more with torch's AVX2 kernels: an AVX-512 machine
    # then also checks what an AVX2-only CPU computes (their float32 sums differ).
    echo "== pytest, KERAS_BACKEND=torch ATEN_CPU_CAPABILITY=avx2, numerics" >&2
    KERAS_BACKEND=torch ATEN_CPU_CAPABILITY=avx2 run_pytest -q -m numerics "$@"
    echo "== pytest, KERAS_BACKEND=jax" >&2
    KERAS_BACKEND=jax run_pytest -q \
      -m "not torch_only and not cli_orchestration and not backend_independent" "$@"
    echo "== pytest, KERAS_BACKEND=tensorflow" >&2
    KERAS_BACKEND=tensorflow run_pytest -q \
      -m "not torch_only and not cli_orchestration and not not_tensorflow" "$@"
    ;;
  *)
    echo "usage: ./dev.sh run [run.py flags] | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
