#!/usr/bin/env bash
# Finds flaky tests: runs test binaries again and again, optionally with both cores kept busy
# by another process, and counts the failures. A failing run's output is kept.
#
#   tests/flake.sh [--runs N] [--load] [TEST ...]   each test binary N times (default 200;
#                                                  default tests: every one that starts
#                                                  processes: process attacks heal reconnect
#                                                  terminal)
#   tests/flake.sh --suite [--runs N] [--load]      the whole `cargo test --all-features`
#                                                  N times (default 20)
#   tests/flake.sh --ignored [--runs N] TEST ...    the ignored tests of TEST (the ones that
#                                                  need root: netns, chaos)
#
# --load starts one busy loop per core for as long as the runs take. Failed runs' output goes
# to target/flake/. Exits 1 if any run failed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=""
load=false
suite=false
ignored=()
tests=()
while (($#)); do
    case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --load) load=true; shift ;;
    --suite) suite=true; shift ;;
    --ignored) ignored=(-- --ignored); shift ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) tests+=("$1"); shift ;;
    esac
done
if $suite; then
    runs=${runs:-20}
else
    runs=${runs:-200}
    ((${#tests[@]})) || tests=(process attacks heal reconnect terminal)
fi

out=target/flake
mkdir -p "$out"
burners=()
stop_load() {
    for pid in "${burners[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT
if $load; then
    for _ in $(seq "$(nproc)"); do
        (while :; do :; done) &
        burners+=($!)
    done
    echo "== load: ${#burners[@]} busy loops"
fi

# Build once, so that every run times the tests and not the compiler.
cargo test --all-features --no-run -q 2>/dev/null || cargo test --all-features --no-run

failed=0
report=()
run_many() {
    local name=$1
    shift
    local fails=0 start=$SECONDS
    for i in $(seq "$runs"); do
        # A line every 20 runs, or every run when the runs are few (a run of the suite is long).
        if ((runs <= 20 || i % 20 == 0)); then
            echo "   $name: run $i of $runs, $fails failed so far, $((SECONDS - start)) s"
        fi
        if ! "$@" >"$out/$name.last" 2>&1; then
            fails=$((fails + 1))
            cp "$out/$name.last" "$out/$name.fail.$i"
            echo "   $name: run $i failed, output in $out/$name.fail.$i"
            grep -m3 -E 'panicked|FAILED' "$out/$name.fail.$i" | sed 's/^/     /' || true
        fi
    done
    report+=("$name: $fails failed of $runs runs in $((SECONDS - start)) s")
    echo "${report[-1]}"
    failed=$((failed + fails))
}

if $suite; then
    echo "== the whole suite, $runs runs"
    run_many suite cargo test --all-features -q
else
    for t in "${tests[@]}"; do
        echo "== $t, $runs runs"
        run_many "$t" cargo test --all-features -q --test "$t" "${ignored[@]}"
    done
fi

echo "== summary$($load && echo ', under load')"
printf '%s\n' "${report[@]}"
((failed == 0))
