#!/usr/bin/env bash
# Runs the main job: sets up, builds in release mode and starts `pitwall demo` (embedded
# broker, generated race, live alerts; Ctrl-C to stop). Extra arguments go to `pitwall demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
PITWALL_SKIP_TANSU=1 scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pitwall/target}"
exec cargo run --release --locked --bin pitwall -- demo "$@"
