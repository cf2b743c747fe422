#!/usr/bin/env bash
# Installs what pitwall's build and tests need on a Debian machine with the Rust toolchain.
# Idempotent: each step checks first and only installs what is missing.
#
#   scripts/setup.sh           everything: the build, the demo and every test
#   scripts/setup.sh --demo    only what building and running `pitwall demo` needs (scripts/demo.sh):
#                              no test servers, browser, Prometheus, ffmpeg tool or pandas
#   ... --list                 print what the mode needs (Debian packages, pip and cargo
#                              components), install nothing
set -euo pipefail

demo=0
list=0
for arg in "$@"; do
  case "$arg" in
    --demo) demo=1 ;;
    --list) list=1 ;;
    *) echo "unknown argument: $arg (use --demo and/or --list)" >&2; exit 2 ;;
  esac
done

TANSU_VERSION=0.6.0

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# fonts-dejavu-core: the font of the benchmark plots. libav*-dev + libclang-dev: ffmpeg-next
# (FFmpeg's libraries, bindgen); Debian's libavcodec carries libx264 for H.264 encoding.
build_pkgs=(build-essential pkg-config zlib1g-dev fonts-dejavu-core
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev libavdevice-dev libclang-dev)
# Tests only. prometheus: the real Prometheus server a test has scrape the bridge (and promtool,
# which checks the alert rules); chromium: the headless browser that loads the live dashboard in
# a test. ffmpeg: the command-line tool the video-format tests use to write clips as phones,
# drones and stock sites do (H.265, VP8/VP9, AV1, MPEG-4 part 2, MOV/MKV/WebM/AVI, rotation, odd
# sizes); pitwall itself only links the libraries. systemd: `systemd-analyze verify` of the
# shipped service unit.
test_pkgs=(prometheus chromium ffmpeg systemd)
# pip: ONNX Runtime (both), kafka-python and pandas/pyarrow (tests). cargo: Tansu and s3s-fs (tests).
pip_pkgs=("onnxruntime==1.32.0" "onnx==1.23.2" "numpy==2.4.6")
test_pip_pkgs=("kafka-python==3.0.12" "pandas==3.1.1" "pyarrow==26.0.1")
test_cargo=("tansu $TANSU_VERSION" "s3s-fs 0.14.1")

pkgs=("${build_pkgs[@]}")
[ "$demo" = 1 ] || pkgs+=("${test_pkgs[@]}")
if [ "$list" = 1 ]; then
  echo "debian: ${pkgs[*]}"
  if [ "$demo" = 1 ]; then echo "pip: ${pip_pkgs[*]}"; echo "cargo:"; else echo "pip: ${pip_pkgs[*]} ${test_pip_pkgs[*]}"; echo "cargo: ${test_cargo[*]}"; fi
  exit 0
fi
[ "$demo" = 1 ] && export PITWALL_SKIP_TANSU=1 PITWALL_SKIP_S3S=1

need_apt=()
# Python with pip, unless the machine already has one (pyenv, Debian's, ...).
python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3 python3-pip)
for pkg in "${pkgs[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }

# The Kafka-protocol broker the integration tests start (in-memory storage, loopback only).
if [ "${PITWALL_SKIP_TANSU:-0}" != "1" ]; then
  if ! tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    log "installing the Tansu broker $TANSU_VERSION (cargo install; ~15-20 min on 2 cores, once)"
    cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore
  fi
fi
# The S3 server the tests start (s3s-fs over a temporary folder, SigV4): Tansu keeps its log
# there in the broker-restart test.
if [ "${PITWALL_SKIP_S3S:-0}" != "1" ]; then
  if ! s3s-fs --version 2>/dev/null | grep -q "0.14.1"; then
    log "installing the s3s-fs S3 server 0.14.1 (cargo install; ~2-5 min, once)"
    cargo install s3s-fs --version 0.14.1 --locked --features binary
  fi
fi
# kafka-python: an independent Kafka client the tests use to read committed offsets.
if [ "$demo" = 0 ] && ! python3 -c "import kafka" 2>/dev/null; then
  log "installing kafka-python (pip)"
  python3 -m pip install --quiet "${test_pip_pkgs[0]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${test_pip_pkgs[0]}"
fi
# ONNX Runtime's shared library (loaded at run time by `ort`'s load-dynamic) comes from the
# onnxruntime wheel; onnx + numpy build the models in models/ (make_*_model.py) and the tests'
# tiny graphs. Pinned: the library's C API must be at least the one `ort` was built for.
if ! python3 -c "import onnxruntime, onnx, numpy" 2>/dev/null \
   || [ "$(python3 -c 'import onnxruntime; print(onnxruntime.__version__)')" != "1.32.0" ]; then
  log "installing onnxruntime 1.32.0, onnx, numpy (pip)"
  python3 -m pip install --quiet "${pip_pkgs[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${pip_pkgs[@]}"
fi
# pandas + pyarrow: the tests write telemetry exactly as FastF1 users save it (DataFrame.to_csv,
# DataFrame.to_parquet with duration[ns]/timestamp[ns] columns).
if [ "$demo" = 0 ] && ! python3 -c "import pandas, pyarrow" 2>/dev/null; then
  log "installing pandas, pyarrow (pip)"
  python3 -m pip install --quiet "${test_pip_pkgs[@]:1}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${test_pip_pkgs[@]:1}"
fi
log "ready"
