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
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# The examples must keep running, not only compiling.
for example in windows anomaly_rule live_query video_pipeline kafka_pipeline; do
  echo "example $example:"
  cargo run --quiet --locked --example "$example" | tail -n 3
done
# One closing line with the totals of every test binary (the last binaries are doc-tests with
# no tests, which would otherwise be the closing line).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
