#!/usr/bin/env bash
# benches/files-cost.sh N [LATENCY] [CONCURRENCY] — what reading files costs a scan: one simulated fleet of N nodes
# (`fleetaudit simulate`, LATENCY added to every round trip, default 50ms; every node serves its profile's files
# over SFTP), scanned alternately by FA (reads files) and FA_BASE (a fleetaudit built before files were read,
# e.g. `git worktree add /tmp/base 9498d6a && cargo build --release` there), REPS times each (default 3), a
# fresh database each scan. Prints per scan: wall, scanner CPU (user + system) per host, peak RSS, the median
# host's time from connect to verdicts (scan_hosts.duration_ms: round trips x LATENCY, plus CPU); then FA's SFTP
# round trips per host (from one more scan's debug log). The simulator shares the machine's cores.
# Env: FA (default target/release/fleetaudit), FA_BASE (required), REPS, DIR (default /tmp/fleetaudit-files-N).
# Needs /usr/bin/time and sqlite3.
# Example: FA_BASE=/tmp/base/target/release/fleetaudit benches/files-cost.sh 1000 50ms 100
set -euo pipefail
n=${1:?usage: benches/files-cost.sh N [LATENCY] [CONCURRENCY]}; latency=${2:-50ms}; conc=${3:-100}
reps=${REPS:-3}; dir=${DIR:-/tmp/fleetaudit-files-$n}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fa=${FA:-$repo/target/release/fleetaudit}
base=${FA_BASE:?set FA_BASE to a fleetaudit binary that does not read files (see the header)}
[ -x /usr/bin/time ] || { echo "files-cost.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "files-cost.sh: needs sqlite3 (apt-get install sqlite3)" >&2; exit 2; }
# shellcheck source=benches/simulator.sh
source "$repo/benches/simulator.sh"
start_simulator "$fa" "$n" "$latency" "$dir"
# The base binary knows no file settings: its inventory is the same without them.
grep -v -E '^(sftp_command|max_file_bytes|max_files|file_budget) *=' "$dir/inventory.toml" >"$dir/inventory-base.toml"
echo "$n simulated nodes, $latency a round trip, concurrency $conc; $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '%-10s %9s %14s %12s %18s\n' scanner "wall (s)" "CPU/host (ms)" "peak RSS MB" "median host (ms)"
for rep in $(seq "$reps"); do
  for who in files base; do
    if [ "$who" = files ]; then bin=$fa; inv=$dir/inventory.toml; else bin=$base; inv=$dir/inventory-base.toml; fi
    db=$dir/$who-$rep.db; rc=0
    /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$bin" scan -i "$inv" --db "$db" \
      --concurrency "$conc" --quiet 2>"$dir/scan-$who-$rep.err" || rc=$?
    (( rc <= 2 )) || { echo "$who scan exited $rc:" >&2; tail -n 5 "$dir/scan-$who-$rep.err" >&2; exit 1; }
    read -r wall user sys rss < <(tail -n 1 "$dir/time")
    median=$(sqlite3 "$db" "SELECT duration_ms FROM scan_hosts WHERE outcome = 'audited' ORDER BY duration_ms
                            LIMIT 1 OFFSET (SELECT count(*) / 2 FROM scan_hosts WHERE outcome = 'audited')")
    awk -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" -v n="$n" -v who="$who" -v med="$median" \
      'BEGIN {printf "%-10s %9.2f %14.2f %12.0f %18s\n", who, w, (u + s) * 1000 / n, m / 1024, med}'
  done
done
# Round trips, from one more scan with debug logs (not timed: logging costs CPU): per host, the SFTP batches'
# round trips the transport counted, and how many paths it was asked about.
FLEETAUDIT_LOG=fleetaudit=debug "$fa" scan -i "$dir/inventory.toml" --db "$dir/rtt.db" --concurrency "$conc" --quiet \
  2>"$dir/scan-rtt.err" || true
grep 'files read' "$dir/scan-rtt.err" | awk '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "round_trips") t = kv[2]; if (kv[1] == "requests") q += kv[2]
                                if (kv[1] == "rounds") b = kv[2] }
    r += t; c++; n[t]++; if (t > max) max = t; batches[b]++ }
  END { if (!c) exit
        printf "SFTP per host (%d hosts): %.2f round trips (max %d), %.1f paths; hosts by round trips:", c, r / c, max, q / c
        for (k = 0; k <= max; k++) if (n[k]) printf " %d: %d", k, n[k]
        printf "; by batches:"; for (k = 0; k <= 4; k++) if (batches[k]) printf " %d: %d", k, batches[k]; print "" }'
