#!/usr/bin/env bash
# benches/shared-scale.sh N [LATENCY] [CONCURRENCY] — one scan of N simulated nodes (`fleetaudit simulate`, LATENCY
# added to every round trip, default 50ms) stored three ways, alternating, REPS rounds (default 2), each into a
# fresh database: one scanner into SQLite, one into PostgreSQL, and three scanners sharing one scan in
# PostgreSQL (each at CONCURRENCY / 3, so the fleet sees the same number of connections, default 512 in all).
# Prints per run: wall time until the last scanner exits, the scanners' CPU (user + system, summed) per host,
# PostgreSQL's CPU per host (its processes, the server's own and its finished backends'), and the hosts recorded.
# The PostgreSQL server is this script's own (initdb in DIR/pg, a Unix socket, default settings, fsync on), as
# is the simulator: all share the machine's cores with the scanners.
# Env: FA (default target/release/fleetaudit, built here), REPS, DIR (default /tmp/fleetaudit-shared-N), PGBIN
# (default: the newest /usr/lib/postgresql/*/bin). Needs /usr/bin/time (apt-get install time) and postgresql.
# Example: benches/shared-scale.sh 10000 50ms 512
set -euo pipefail
n=${1:?usage: benches/shared-scale.sh N [LATENCY] [CONCURRENCY]}; latency=${2:-50ms}; conc=${3:-512}
reps=${REPS:-2}; dir=${DIR:-/tmp/fleetaudit-shared-$n}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -x /usr/bin/time ] || { echo "shared-scale.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }
pgbin=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$pgbin/initdb" ] || { echo "shared-scale.sh: needs PostgreSQL's server (apt-get install postgresql)" >&2; exit 2; }
if [ -z "${FA:-}" ]; then
  (cd "$repo" && cargo build --release --locked --quiet)
  FA=$repo/target/release/fleetaudit
fi
# shellcheck source=benches/simulator.sh
source "$repo/benches/simulator.sh"
start_simulator "$FA" "$n" "$latency" "$dir/fleet"

# PostgreSQL refuses to run as root: as nobody then.
pg=$dir/pg; mkdir -p "$pg/socket"
as_pg() { if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown -R 65534:65534 "$pg"
as_pg "$pgbin/initdb" -D "$pg/data" -U fleetaudit --auth=trust -E UTF8 --locale=C >"$pg/initdb.log"
as_pg "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/server.log" -o "-c listen_addresses='' -k $pg/socket" -w start >/dev/null
trap 'kill "$sim" 2>/dev/null; as_pg "$pgbin/pg_ctl" -D "$pg/data" -m immediate -w stop >/dev/null 2>&1 || true' EXIT
postmaster=$(head -n 1 "$pg/data/postmaster.pid")
hz=$(getconf CLK_TCK)
# The server's CPU so far: its own and its reaped backends' (fields 14-17), and its live children's.
pg_cpu() {
  local total
  total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
  for c in $(pgrep -P "$postmaster"); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$c/stat" 2>/dev/null || echo 0) ))
  done
  awk -v t="$total" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'
}
url() { echo "postgres://fleetaudit@localhost/$1?host=$pg/socket"; }
psql_q() { "$pgbin/psql" -X -q -A -t -h "$pg/socket" -U fleetaudit -d "$1" -c "$2"; }

echo "$n simulated nodes, $latency a round trip, $conc connections in all; $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
printf '%-14s %9s %14s %15s %9s\n' run "wall (s)" "CPU/host (ms)" "PG CPU/host (ms)" recorded
for rep in $(seq "$reps"); do
  for how in sqlite postgres-1 postgres-3; do
    run=$dir/$how-$rep; mkdir -p "$run"
    scanners=1; db=$run/history.db
    if [ "$how" != sqlite ]; then
      psql_q postgres "CREATE DATABASE r${rep}_${how//-/_}" >/dev/null
      db=$(url "r${rep}_${how//-/_}")
      [ "$how" = postgres-3 ] && scanners=3
    fi
    p0=$(pg_cpu); t0=$(date +%s.%N)
    pids=()
    for s in $(seq "$scanners"); do
      FLEETAUDIT_LOG=warn /usr/bin/time -f '%e %U %S %M' -o "$run/time-$s" "$FA" scan -i "$dir/fleet/inventory.toml" \
        --db "$db" --concurrency $(( conc / scanners )) --quiet 2>"$run/scan-$s.err" &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || (( $? <= 2 )) || { echo "a scanner failed:" >&2; tail -n 5 "$run"/scan-*.err >&2; exit 1; }; done
    t1=$(date +%s.%N); p1=$(pg_cpu)
    cpu=$(cat "$run"/time-* | awk '{c += $2 + $3} END {print c}')
    if [ "$how" = sqlite ]; then
      recorded=$(sqlite3 "$run/history.db" "SELECT count(*) FROM scan_hosts WHERE scan_id = 1")
    else
      recorded=$(psql_q "r${rep}_${how//-/_}" "SELECT count(*) || ' in ' || count(DISTINCT scan_id) || ' scan' FROM scan_hosts")
    fi
    awk -v h="$how" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" -v c="$cpu" -v n="$n" -v a="$p0" -v b="$p1" -v r="$recorded" \
      'BEGIN {printf "%-14s %9.2f %14.2f %15s %9s\n", h, w, c * 1000 / n, (h == "sqlite" ? "-" : sprintf("%.2f", (b - a) * 1000 / n)), r}'
  done
done
