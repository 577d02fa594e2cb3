#!/usr/bin/env bash
# keras_fmnist's two entry points, each setting up what a fresh machine lacks first:
#   ./dev.sh run [run.py flags]   the main job (default: --experiment=baseline)
#   ./dev.sh test [pytest args]   the test suite on torch, jax and tensorflow (two lanes at once)
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
    # A pass keeps about 1.2 of the 2 cores busy (imports and subprocess starts are serial),
    # so two lanes run side by side: torch then its AVX2 numerics; jax then tensorflow. Each
    # pass writes its own log and temporary directory; the logs are printed in order after.
    local_dir=$(mktemp -d "${TMPDIR:-/tmp}/keras_fmnist-test-XXXXXX")
    trap 'rm -rf "$local_dir"' EXIT
    run_pass() {  # name, env assignments..., -- pytest args...
      local name=$1; shift
      local envs=()
      while [ "$1" != "--" ]; do envs+=("$1"); shift; done
      shift
      local status=0
      env "${envs[@]}" "$PY" -m pytest --basetemp="$local_dir/$name" "$@" \
        > "$local_dir/$name.log" 2>&1 || status=$?
      if [ "$status" = 5 ]; then
        echo "dev.sh: pytest collected no tests" >> "$local_dir/$name.log"
        status=1
      fi
      echo "$status" > "$local_dir/$name.status"
    }
    (
      # The float64-reference tests once more with torch's AVX2 kernels: an AVX-512 machine
      # then also checks what an AVX2-only CPU computes (their float32 sums differ).
      run_pass torch KERAS_BACKEND=torch -- -q -m "not backend_independent" "$@"
      run_pass torch-avx2 KERAS_BACKEND=torch ATEN_CPU_CAPABILITY=avx2 -- -q -m numerics "$@"
    ) &
    lane_torch=$!
    (
      run_pass jax KERAS_BACKEND=jax -- -q \
        -m "not torch_only and not cli_orchestration and not backend_independent" "$@"
      run_pass tensorflow KERAS_BACKEND=tensorflow -- -q \
        -m "not torch_only and not cli_orchestration and not not_tensorflow" "$@"
    ) &
    lane_others=$!
    wait "$lane_torch" "$lane_others" || true
    failed=0
    for name in torch torch-avx2 jax tensorflow; do
      case $name in
        torch) title="KERAS_BACKEND=torch" ;;
        torch-avx2) title="KERAS_BACKEND=torch ATEN_CPU_CAPABILITY=avx2, numerics" ;;
        *) title="KERAS_BACKEND=$name" ;;
      esac
      echo "== pytest, $title"
      cat "$local_dir/$name.log" 2>/dev/null || echo "dev.sh: the pass did not run"
      status=$(cat "$local_dir/$name.status" 2>/dev/null || echo 1)
      [ "$status" = 0 ] || failed=1
    done
    for name in torch torch-avx2 jax tensorflow; do
      echo "dev.sh: $name pass exit status $(cat "$local_dir/$name.status" 2>/dev/null || echo missing)"
    done
    exit "$failed"
    ;;
  *)
    echo "usage: ./dev.sh run [run.py flags] | ./dev.sh test [pytest args]" >&2
    exit 2
    ;;
esac
