#!/usr/bin/env bash
# Runs every pitwall test: sets up first (scripts/setup.sh), then formatting and the whole
# workspace's tests, integration tests against real broker processes included.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
# A stable target directory outside the checkout keeps builds warm across clean clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pitwall/target}"
cargo fmt --all -- --check
cargo test --workspace --locked "$@"
# The examples must keep running, not only compiling.
for example in windows anomaly_rule kafka_pipeline; do
  echo "example $example:"
  cargo run --quiet --locked --example "$example" | tail -n 3
done
