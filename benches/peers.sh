#!/usr/bin/env bash
# benches/peers.sh N [TOOL:CONCURRENCY ...] — fleetaudit side by side with OpenSSH, pssh, parallel-ssh and
# Ansible on one loopback fleet of N nodes behind a real OpenSSH sshd, the tools run alternately (round-robin,
# REPS rounds) so a slow minute on a shared machine hits every tool alike. Prints one row per tool: median wall
# time, client CPU per host, peak memory, hosts whose `ps -ef` came back, and fleetaudit's ratios to OpenSSH.
#
# Uses the fleet bench that comes with this machine (../shared/bench: fleet-up, peers, fleet-down; set BENCH to
# its directory). Needs root (network namespace, cgroups). Every connection stays inside the fleet's own
# network namespace on 127.0.X.Y. Env:
#   REPS (default 3)   rounds; medians are over them
#   CONC (default 64)  concurrency of every tool unless a TOOL:C says otherwise
#   FLEET_KEX          passed to fleet-up: `curve25519-sha256` makes every client pay the same key exchange
#   FA                 the fleetaudit binary (default: target/release/fleetaudit, built here)
#   FILES=kubeadm      give the machine a kubeadm control plane's files first (benches/kubeadm-files.sh; taken
#                      away again at exit): without them every file the fleet's processes name is missing, and
#                      a scan reads no file and judges 43 rules a host `error` (SNAPSHOT_FA: the build that
#                      makes them, when FA predates `snapshot`)
#   OUT                results directory (default: /tmp/fleetaudit-peers-N)
# Example:
#   sudo FLEET_KEX=curve25519-sha256 benches/peers.sh 200 openssh custom pssh-lib
set -euo pipefail
n=${1:?usage: benches/peers.sh N [openssh|pssh|pssh-lib|ansible|custom[:CONCURRENCY] ...]}; shift
[[ $n =~ ^[0-9]+$ ]] || { echo "peers.sh: N must be a number of nodes, got '$n'" >&2; exit 2; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench=${BENCH:-$repo/../shared/bench}
[ -x "$bench/fleet-up" ] && [ -x "$bench/peers" ] ||
  { echo "peers.sh: no fleet bench at $bench (fleet-up, peers, fleet-down); set BENCH=DIR" >&2; exit 2; }
(( EUID == 0 )) || { echo "peers.sh: run as root (fleet-up needs a network namespace and cgroups)" >&2; exit 2; }
command -v sqlite3 >/dev/null || { echo "peers.sh: needs sqlite3 (apt-get install sqlite3)" >&2; exit 2; }
conc=${CONC:-64}; reps=${REPS:-3}
tools=("$@"); (( ${#tools[@]} )) || tools=(openssh custom pssh pssh-lib ansible)
for i in "${!tools[@]}"; do [[ ${tools[$i]} == *:* ]] || tools[$i]=${tools[$i]}:$conc; done

if [ -z "${FA:-}" ]; then
  (cd "$repo" && cargo build --release --locked --quiet)
  FA=$repo/target/release/fleetaudit
fi
export FA
out=${OUT:-/tmp/fleetaudit-peers-$n}; fleet=$out/fleet
mkdir -p "$out"; results=$out/results.tsv; rm -f "$results" "$fleet"/fleetaudit-*.db*
case ${FILES:-} in
  '' | kubeadm) ;;
  *) echo "peers.sh: FILES is kubeadm or unset, not '$FILES'" >&2; exit 2 ;;
esac
trap '"$bench/fleet-down" "$fleet" >&2; [ -z "${FILES:-}" ] || "$repo/benches/kubeadm-files.sh" remove "$out/files"' EXIT
[ -z "${FILES:-}" ] || "$repo/benches/kubeadm-files.sh" plant "$out/files"
"$bench/fleet-up" "$n" "$fleet" >&2

# fleetaudit as the peers' `custom` tool: a full scan (connect, check host key, ps -ef, parse, judge 56 rules,
# store, render the HTML report) into one database per concurrency, so rounds after the first are rescans, as
# under cron. Exit 1 (a rule failed: the fleet's
# apiserver lacks --kubelet-certificate-authority) and 2 (a host not audited, counted below) are results.
export PEER_CMD='"$FA" scan -i "$FLEET_DIR/inventory.toml" --db "$FLEET_DIR/fleetaudit-$CONC.db" --concurrency "$CONC" --quiet; test $? -le 2'
audited() { sqlite3 "$1" "SELECT count(*) FROM host_status WHERE scan_id = (SELECT max(id) FROM scans) AND outcome = 'audited'"; }

for rep in $(seq "$reps"); do
  for spec in "${tools[@]}"; do
    REPS=1 RESULTS=$results "$bench/peers" "$fleet" "$spec" >/dev/null
    if [[ $spec == custom:* ]]; then
      # The fleet bench cannot see inside fleetaudit's database: count the hosts it audited there, and put the
      # count in the row's ok/failed columns.
      ok=$(audited "$fleet/fleetaudit-${spec#*:}.db")
      awk -F'\t' -v OFS='\t' -v ok="$ok" -v n="$n" 'NR == 1 || $2 != "custom" || $7 != "-" {print; next}
        {$7 = ok; $8 = n - ok; print}' "$results" >"$results.tmp" && mv "$results.tmp" "$results"
    fi
    tail -n 1 "$results" >&2
  done
done

# Medians per tool. Columns of results.tsv: date tool n conc rep wall_s ok failed exit client_cpu_s sshd_cpu_s
# machine_cpu_s other_cpu_s max_rss_1proc_mb client_tree_anon_mb bg_cores.
kex=${FLEET_KEX:-default (OpenSSH picks sntrup761x25519-sha512; russh and libssh2 curve25519)}
echo
echo "$n nodes, $reps rounds, key exchange: $kex; $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
awk -F'\t' -v n="$n" '
  function median(list,   a, k, i, j, t) {
    k = split(list, a, " ")
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  NR > 1 {
    key = $2 ":" $4
    if (!(key in seen)) { seen[key] = 1; order[++count] = key }
    wall[key] = wall[key] " " $6; cpu[key] = cpu[key] " " $10; rss[key] = rss[key] " " $14
    tree[key] = tree[key] " " $15; ok[key] = ok[key] " " $7
  }
  END {
    printf "%-14s %9s %15s %16s %15s %9s\n", "tool", "wall (s)", "CPU/host (ms)", "largest proc MB", "client tree MB", "ok"
    for (i = 1; i <= count; i++) {
      k = order[i]; w = median(wall[k]); c = median(cpu[k]) * 1000 / n
      name = k; sub(/^custom/, "fleetaudit", name)
      printf "%-14s %9.2f %15.2f %16.1f %15.1f %9s\n", name, w, c, median(rss[k]), median(tree[k]), median(ok[k])
      W[k] = w; C[k] = c
    }
    for (a in W) if (a ~ /^custom:/) for (b in W) if (b ~ /^openssh:/)
      printf "\nfleetaudit / OpenSSH (%s vs %s): wall %.2fx, CPU per host %.3fx\n", a, b, W[a] / W[b], C[a] / C[b]
  }' "$results"
echo "rows: $results"
