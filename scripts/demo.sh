#!/usr/bin/env bash
# Runs the main job: sets up, builds in release mode and starts `pitwall demo` (embedded
# broker, generated race and fire clip, live alerts, the overlayed video stored; Ctrl-C to
# stop) with the bridge on 127.0.0.1:8080: the live dashboard at http://127.0.0.1:8080/,
# Grafana's datasource at /grafana, live queries at /v1/queries. Extra arguments go to
# `pitwall demo` (pass your own --bridge ADDR to move it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pitwall/target}"
bridge=(--bridge 127.0.0.1:8080)
for arg in "$@"; do
  case "$arg" in --bridge|--bridge=*) bridge=() ;; esac
done
exec cargo run --release --locked --bin pitwall -- demo "${bridge[@]}" "$@"
