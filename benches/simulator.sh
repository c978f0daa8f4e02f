# benches/simulator.sh — sourced by the simulator benchmarks (sim-scale.sh, files-cost.sh), not run.
# start_simulator FA N LATENCY DIR [ARG...]: empties DIR, starts `FA simulate` of N nodes there in the background (its
# PID in $sim, killed when the sourcing script exits; ARGs go to `simulate`, e.g. --profile kubeadm-default) and
# waits up to 60 s for the inventory it writes.
start_simulator() {
  local fa=$1 n=$2 latency=$3 dir=$4 me
  shift 4
  me=$(basename "$0")
  rm -rf "$dir"; mkdir -p "$dir"
  "$fa" simulate --nodes "$n" --latency "$latency" --dir "$dir" "$@" >"$dir/simulate.log" 2>&1 &
  sim=$!
  trap 'kill "$sim" 2>/dev/null; wait "$sim" 2>/dev/null || true' EXIT
  for _ in $(seq 600); do
    [ -s "$dir/inventory.toml" ] && return 0
    kill -0 "$sim" || { cat "$dir/simulate.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$me: the simulator did not come up" >&2
  exit 1
}
