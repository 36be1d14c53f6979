#!/usr/bin/env bash
# Set up (or check) mmext's environment: a virtualenv with the pinned OpenMMLab
# stack, mmcv 2.1.0 with compiled ops, and mmext installed in editable mode.
#
#   bash tools/setup_env.sh            # idempotent; seconds when already done
#
# Environment knobs:
#   MMEXT_VENV    where the virtualenv lives          (default: <repo>/.venv)
#   MMEXT_CACHE   where built mmcv wheels are cached  (default: ~/.cache/mmext)
#   MMEXT_PYTHON  the interpreter to build the venv   (default: python3.11, else python3)
#   MMEXT_MMCV_OPS=cpu|cuda   force the kind of mmcv ops (default: cuda when torch sees
#                 a GPU and nvcc is on PATH, else cpu)
#   MAX_JOBS      parallel compile jobs for mmcv      (default: number of cores)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMEXT_VENV:-$ROOT/.venv}
CACHE=${MMEXT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmext}
CONSTRAINTS=$ROOT/tools/constraints.txt
MMCV_VERSION=2.1.0

log() { printf '[mmext setup] %s\n' "$*" >&2; }
die() { printf '[mmext setup] ERROR: %s\n' "$*" >&2; exit 1; }

# Everything that decides the environment's content goes into the stamp, so a
# changed pin or script re-runs the install while an unchanged one is a no-op.
stamp_key=$(cat "$CONSTRAINTS" "$ROOT/setup.cfg" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
STAMP=$VENV/.mmext-setup-$stamp_key
if [[ -f $STAMP ]] && "$VENV/bin/python" -c 'import mmcv._ext, mmdet, mmseg, mmext' 2>/dev/null; then
    exit 0
fi

mkdir -p "$CACHE"
# Two set-ups at once (tests and demo in parallel, two clones) would otherwise
# race on the venv and on the 17-minute mmcv build.
exec 9>"$CACHE/setup.lock"
flock 9

if [[ -n ${MMEXT_PYTHON:-} ]]; then PY=$MMEXT_PYTHON
elif command -v python3.11 >/dev/null; then PY=python3.11
else PY=python3; fi
pyver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ $pyver == 3.11 ]] || log "warning: pinned stack is tested on Python 3.11, found $pyver"

if [[ ! -x $VENV/bin/python ]]; then
    log "creating virtualenv $VENV ($PY $pyver)"
    "$PY" -m venv "$VENV"
fi
VPY=$VENV/bin/python
pip_install() { "$VPY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "$@"; }

log "installing torch, torchvision and the OpenMMLab stack (pinned in tools/constraints.txt)"
pip_install setuptools wheel ninja
pip_install torch torchvision
# mmseg imports ftfy and regex at start-up without declaring them.
pip_install mmengine mmdet mmsegmentation ftfy regex timm pycocotools pytest pytest-xdist
# mmpretrain: reference implementations (VAN, HorNet, MViT) for
# tools/analysis_tools/benchmark.py --compare; mmext itself does not import it.
pip_install mmpretrain

# ---- mmcv with compiled ops: built once per (mmcv, torch, python, ops kind), then cached
torch_ver=$("$VPY" -c 'import torch; print(torch.__version__.split("+")[0])')
ops=${MMEXT_MMCV_OPS:-}
if [[ -z $ops ]]; then
    if command -v nvcc >/dev/null && "$VPY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        ops=cuda
    else
        ops=cpu
    fi
fi
[[ $ops == cpu || $ops == cuda ]] || die "MMEXT_MMCV_OPS must be cpu or cuda, got '$ops'"
variant=$ops
[[ $ops == cuda ]] && variant=cu$("$VPY" -c 'import torch; print(torch.version.cuda)')
key=mmcv-$MMCV_VERSION-torch$torch_ver-py$pyver-$variant-$(uname -m)
wheel_dir=$CACHE/wheels/$key
wheel=$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)

if [[ -z $wheel ]]; then
    jobs=${MAX_JOBS:-$(nproc)}
    log "no cached mmcv wheel for $key: building mmcv $MMCV_VERSION with $ops ops"
    log "this takes about 17 minutes on 2 cores and happens once per machine"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    # mmcv's setup.py imports pkg_resources, which setuptools >= 70 no longer
    # ships in a usable form, while torch 2.14 itself requires setuptools >= 77.
    # An old setuptools on PYTHONPATH serves the build only; the venv keeps its own.
    "$VPY" -m pip install -q --disable-pip-version-check --target "$work/build-setuptools" 'setuptools<70'
    PYTHONPATH=$work/build-setuptools "$VPY" -m pip download -q --disable-pip-version-check \
        --no-deps --no-binary mmcv --no-build-isolation -d "$work" "mmcv==$MMCV_VERSION"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    src=$work/mmcv-$MMCV_VERSION
    # torch >= 2.10 headers use C++20 features; mmcv 2.1.0 hard-codes -std=c++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    grep -q -- '-std=c++20' "$src/setup.py" || die "could not patch mmcv's C++ standard"
    force_cuda=0; [[ $ops == cuda ]] && force_cuda=1
    build_log=$CACHE/logs/$key.log
    mkdir -p "$CACHE/logs"
    log "build log: $build_log"
    set +e
    (cd "$src" && PYTHONPATH=$work/build-setuptools MMCV_WITH_OPS=1 FORCE_CUDA=$force_cuda \
        MAX_JOBS=$jobs "$VPY" -m pip wheel -v --disable-pip-version-check --no-deps \
        --no-build-isolation -w "$work/wheel" .) >"$build_log" 2>&1 &
    build_pid=$!
    # A silent 17-minute step looks hung: report the compile counter.
    while kill -0 $build_pid 2>/dev/null; do
        sleep 60
        step=$(grep -o '^ *\[[0-9]*/[0-9]*\]' "$build_log" | tail -n1 | tr -d ' ' || true)
        log "compiling mmcv ops ${step:-(preparing)}"
    done
    wait $build_pid; rc=$?
    set -e
    [[ $rc == 0 ]] || { tail -n 30 "$build_log" >&2; die "mmcv build failed (full log: $build_log)"; }
    mkdir -p "$wheel_dir.tmp.$$"
    cp "$work"/wheel/mmcv-*.whl "$wheel_dir.tmp.$$/"
    rm -rf "$wheel_dir"; mv "$wheel_dir.tmp.$$" "$wheel_dir"
    wheel=$(ls "$wheel_dir"/mmcv-*.whl | head -n1)
    log "cached $wheel"
fi

log "installing $(basename "$wheel") from the cache"
"$VPY" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$wheel"
"$VPY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT"

"$VPY" -c 'import mmcv._ext, mmdet, mmseg, mmext' || die "the environment does not import; run: $VPY -m mmext doctor"
rm -f "$VENV"/.mmext-setup-*
touch "$STAMP"
log "ready: $VENV (mmcv ops: $variant)"
