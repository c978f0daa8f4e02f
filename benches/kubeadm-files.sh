#!/usr/bin/env bash
# benches/kubeadm-files.sh plant|remove DIR — give the machine the files a kubeadm control plane has, so a fleet
# bench's scans read files as on a real node; then take exactly those away again.
#
# The fleet bench (../shared/bench) runs kubeadm-style processes whose flags name /var/lib/kubelet/config.yaml,
# /etc/kubernetes/*.conf, the manifests and the PKI, none of which exist on a bench machine: a scan there finds
# every file missing (dozens of `error` verdicts a host) and reads nothing. `plant` takes the files an
# unprivileged login sees on the simulator's kubeadm-default node (`fleetaudit snapshot` of it: contents where
# that login may read them, the stat alone for kubeconfigs, keys and root-only files; modes and owners as kubeadm
# sets them) and creates each at its path on this machine where nothing is there yet, never replacing a file
# (so /etc/passwd and /etc/group stay the machine's). The paths it created are listed in DIR/planted;
# `remove` deletes exactly those, deepest first. Needs root. SNAPSHOT_FA, else FA: the fleetaudit binary that
# simulates and snapshots the node (default: the release build in this checkout).
set -euo pipefail
what=${1:?usage: benches/kubeadm-files.sh plant|remove DIR}; dir=${2:?usage: benches/kubeadm-files.sh plant|remove DIR}
me=$(basename "$0")
(( EUID == 0 )) || { echo "$me: run as root (it creates files under /etc and /var/lib)" >&2; exit 2; }
mkdir -p "$dir"; planted=$dir/planted

case $what in
remove)
  [ -f "$planted" ] || exit 0
  tac "$planted" | while IFS= read -r p; do
    if [ -d "$p" ] && [ ! -L "$p" ]; then rmdir -- "$p"; else rm -f -- "$p"; fi
  done
  rm -f "$planted"
  ;;
plant)
  [ -s "$planted" ] && { echo "$me: $planted lists files planted earlier: run '$me remove $dir' first" >&2; exit 2; }
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  fa=${SNAPSHOT_FA:-${FA:-$repo/target/release/fleetaudit}}
  [ -x "$fa" ] || { echo "$me: no fleetaudit binary at $fa (cargo build --release, or set FA)" >&2; exit 2; }
  "$fa" snapshot --help >/dev/null 2>&1 ||
    { echo "$me: $fa has no \`snapshot\` command (a build from before files were read?): set SNAPSHOT_FA to one that has" >&2; exit 2; }
  # shellcheck source=benches/simulator.sh
  . "$repo/benches/simulator.sh"
  start_simulator "$fa" 1 0ms "$dir/sim" --profile kubeadm-default
  "$fa" snapshot -i "$dir/sim/inventory.toml" node-1 -o "$dir/kubeadm.tar" >&2
  stage=$dir/root; rm -rf "$stage"; mkdir -p "$stage"
  # The node's own account files and processes' environments are not files to plant; what a containerised
  # component saw in its container (/proc/PID/root/...) is where the bench's plain processes look, at /.
  tar -xpf "$dir/kubeadm.tar" -C "$stage" --numeric-owner --exclude=ps-ef.txt --exclude=fleetaudit-snapshot.json \
    --exclude='proc/*/environ' --exclude=etc/passwd --exclude=etc/group
  for view in "$stage"/proc/*/root; do [ -d "$view" ] && cp -an -- "$view/." "$stage/"; done
  rm -rf "$stage/proc"
  : >"$planted"
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort) | while IFS= read -r rel; do
    p=${rel#.}
    [ -e "$p" ] || [ -L "$p" ] && continue
    if [ -d "$stage$p" ]; then
      install -d -m "$(stat -c %a "$stage$p")" -o "$(stat -c %u "$stage$p")" -g "$(stat -c %g "$stage$p")" "$p"
    else
      cp -a -- "$stage$p" "$p"
    fi
    printf '%s\n' "$p" >>"$planted"
  done
  echo "$me: planted $(wc -l <"$planted") paths of a kubeadm node (listed in $planted)" >&2
  ;;
*) echo "$me: plant or remove, not '$what'" >&2; exit 2 ;;
esac
