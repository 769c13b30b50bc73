#!/usr/bin/env bash
# Instructions per call of each non-blocking take, counted by callgrind: a
# repeatable count on a noisy machine, where wall-clock times wander.
#
#   benches/callgrind.sh            # every case, 100000 calls each
#   CALLS=20000 benches/callgrind.sh has_fuel_denied governor_denied
#
# Each case runs benches/examples/take_callgrind.rs; callgrind collects only inside
# its measured loop (after a 1.1 s warm-up past the clock's calibration).
# "net" subtracts the `noop` case: the loop and the indirect call.
#
# The `*_manual` and `*_fake` cases count each limiter's logic on a clock
# that stands still, which is the like-for-like comparison; the others add
# each limiter's own clock read. Times are in benches/take.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

calls=${CALLS:-100000}
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=(has_fuel_allowed_manual has_fuel_denied_manual
        governor_allowed_fake governor_denied_fake
        instant monotonic has_fuel_allowed_unbounded has_fuel_allowed_limit
        has_fuel_allowed_two_rates has_fuel_denied has_fuel_denied_two_rates try_take_spend governor_allowed governor_denied
        leaky_allowed leaky_denied)
fi

cargo build --release --quiet -p fueltank-benches --example take_callgrind
target_dir=$(cargo metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin="$target_dir/release/examples/take_callgrind"
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
printf '%-28s %14s %10s %10s\n' case instructions per-call net
for case in noop "${cases[@]}"; do
    total=$([ "$case" = noop ] && echo "$noop" || count "$case")
    awk -v c="$case" -v t="$total" -v n="$noop" -v k="$calls" \
        'BEGIN { printf "%-28s %14d %10.1f %10.1f\n", c, t, t / k, (t - n) / k }'
done
