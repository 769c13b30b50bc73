#!/usr/bin/env bash
# Instructions per request through the Tower layer, counted by callgrind: a
# repeatable count on a noisy machine, where wall-clock times wander.
#
#   tower-layer/benches/callgrind.sh              # every case, 100000 requests each
#   CALLS=20000 tower-layer/benches/callgrind.sh wait reject
#   BIN=/path/to/layer_callgrind tower-layer/benches/callgrind.sh   # a binary built elsewhere
#
# Each case runs tower-layer/benches/examples/layer_callgrind.rs; callgrind
# collects only inside its measured loop (after a 1.1 s warm-up past the
# clock's calibration). "net" subtracts the `noop` case (the loop and the
# indirect call); "layer" subtracts the `bare` case (the service without
# the layer, and the driving of one request). Times are in benches/layer.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

calls=${CALLS:-100000}
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=(wait wait_max_wait reject keyed_wait keyed_reject keyed_and_wait keyed_and_reject stacked_wait stacked_reject bare_http http_no_headers http_headers http_structured http_structured_also keyed_http_headers)
fi

bin=${BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet -p fueltank-tower-benches --example layer_callgrind
    target_dir=$(cargo metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    bin="$target_dir/release/examples/layer_callgrind"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Instructions in the measured loop for one case.
count() {
    valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect='*measured_loop*' \
        --callgrind-out-file="$out/$1.out" "$bin" "$1" "$calls" >/dev/null 2>"$out/$1.log" ||
        { cat "$out/$1.log" >&2; exit 1; }
    sed -n 's/^summary: *//p; s/^totals: *//p' "$out/$1.out" | head -n1 | awk '{print $1}'
}

noop=$(count noop)
bare=$(count bare)
printf '%-16s %14s %12s %10s %10s\n' case instructions per-request net layer
for case in noop bare "${cases[@]}"; do
    case $case in
    noop) total=$noop ;;
    bare) total=$bare ;;
    *) total=$(count "$case") ;;
    esac
    awk -v c="$case" -v t="$total" -v n="$noop" -v b="$bare" -v k="$calls" \
        'BEGIN { printf "%-16s %14d %12.1f %10.1f %10.1f\n", c, t, t / k, (t - n) / k, (t - b) / k }'
done
