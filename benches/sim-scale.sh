#!/usr/bin/env bash
# benches/sim-scale.sh N [LATENCY] [CONCURRENCY] — a scan of N simulated nodes (`fleetaudit simulate`: russh
# servers on 127.0.0.1, LATENCY added to every round trip, default 50ms) at CONCURRENCY (default 512), run
# REPS times (default 3) on one database: the first scan, then unchanged rescans. Prints per scan: wall time
# of the whole `fleetaudit scan` (connect, kex, ps -ef, judge 56 rules, store, render the HTML report), the
# scanner's CPU (user + system) and peak RSS, the database's growth per host, the simulator's CPU, and the
# cluster stage's time (from the scan's `cluster stage finished` log line) as a share of the wall time.
# The simulator shares the machine's cores with the scanner, as a real fleet would not.
# Env: FA (the fleetaudit binary; default target/release/fleetaudit, built here), REPS, DIR (default
# /tmp/fleetaudit-sim-N). Needs /usr/bin/time (apt-get install time).
# Example: benches/sim-scale.sh 10000 50ms 512
set -euo pipefail
n=${1:?usage: benches/sim-scale.sh N [LATENCY] [CONCURRENCY]}; latency=${2:-50ms}; conc=${3:-512}
reps=${REPS:-3}; dir=${DIR:-/tmp/fleetaudit-sim-$n}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -x /usr/bin/time ] || { echo "sim-scale.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
if [ -z "${FA:-}" ]; then
  (cd "$repo" && cargo build --release --locked --quiet)
  FA=$repo/target/release/fleetaudit
fi
# shellcheck source=benches/simulator.sh
source "$repo/benches/simulator.sh"
start_simulator "$FA" "$n" "$latency" "$dir"
hz=$(getconf CLK_TCK)
sim_cpu() { awk -v hz="$hz" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$sim/stat"; }
db=$dir/fleetaudit.db; size=0
echo "$n simulated nodes, $latency a round trip, concurrency $conc; $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '%-6s %9s %12s %13s %11s %15s %12s\n' scan "wall (s)" "CPU (s)" "CPU/host (ms)" "peak RSS MB" "DB growth B/host" "sim CPU (s)"
for rep in $(seq "$reps"); do
  s0=$(sim_cpu)
  rc=0
  FLEETAUDIT_LOG=${FLEETAUDIT_LOG:-info} /usr/bin/time -f '%e %U %S %M' -o "$dir/time" "$FA" scan -i "$dir/inventory.toml" --concurrency "$conc" --quiet \
    2>"$dir/scan-$rep.err" || rc=$?
  (( rc <= 2 )) || { echo "scan exited $rc:" >&2; tail -n 5 "$dir/scan-$rep.err" >&2; exit 1; }
  s1=$(sim_cpu)
  audited=$(sqlite3 "$db" "SELECT count(*) FROM host_status WHERE scan_id = (SELECT max(id) FROM scans) AND outcome = 'audited'" 2>/dev/null || echo '?')
  new=$(( $(stat -c %s "$db") + $(stat -c %s "$db-wal" 2>/dev/null || echo 0) ))
  read -r wall user sys rss < <(tail -n 1 "$dir/time")   # (time -o first notes a non-zero exit)
  awk -v r="$rep" -v w="$wall" -v u="$user" -v s="$sys" -v m="$rss" -v n="$n" -v g="$(( new - size ))" -v a="$s0" -v b="$s1" \
    -v ok="$audited" 'BEGIN {printf "%-6s %9.2f %12.2f %13.2f %11.0f %15.0f %12.2f   (%s audited)\n",
      r == 1 ? "first" : "rescan", w, u + s, (u + s) * 1000 / n, m / 1024, g / n, b - a, ok}'
  # The cluster stage (parse new certificates, read them back, judge every cluster rule, store the verdicts),
  # as the scan logs it, and its share of the scan's wall time.
  stage=$(grep -a 'cluster stage finished' "$dir/scan-$rep.err" | sed -E 's/.*seconds=([0-9.e-]+).*/\1/' | tail -n 1)
  [ -n "$stage" ] && awk -v c="$stage" -v w="$wall" 'BEGIN {printf "       cluster stage %.2f s = %.1f %% of the wall time\n", c, 100 * c / w}'
  size=$new
done
