#!/usr/bin/env bash
# System calls per line relayed by the middle client of a 5-client chain, one line at a time:
#   benches/syscalls.sh [BIN] [smol|async-std]
# Runs the load tool's latency phase with BIN (default: the release build), attaches
# `strace -c -f` to the third client for 2 seconds, and divides every system call it made by
# the lines it sent on (one `sendto` each). Needs strace and a release build of the load tool
# (`cargo bench --all-features --bench load --no-run`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/floodchat}")
runtime=${2:-smol}
name=$(basename "$bin")
load=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -n1)
out=$(mktemp)
# The clients are found as the load tool's children, never by name: other floodchat
# processes on the machine are none of this script's business.
"$load" --runs 1 --lines 1000 --latency-lines 30000 --runtime "$runtime" --bin "$bin" \
    >/dev/null 2>&1 &
tool=$!
trap 'kill "$tool" 2>/dev/null || true; rm -f "$out"' EXIT
for _ in $(seq 300); do
    [[ $(pgrep -P "$tool" | wc -l) -ge 5 ]] && break
    sleep 0.1
done
sleep 2
pid=$(pgrep -P "$tool" | sed -n 3p)
timeout 2 strace -c -f -p "$pid" -o "$out" >/dev/null 2>&1 || true
wait "$tool" || true
awk -v who="$name $runtime" '$NF == "sendto" {lines = $4} $NF == "total" {calls = $4}
    END {printf "%s: %d system calls for %d lines, %.1f a line\n", who, calls, lines, calls / lines}' "$out"
