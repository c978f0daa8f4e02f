#!/usr/bin/env bash
# The Debian package end to end, as root on a Debian machine (CI runs it from .ci/run): build it with cargo-deb,
# install it with apt, check the user, directories, modes and conffile it sets up, run `fleetaudit demo` as the
# `fleetaudit` user, verify the systemd units offline, then purge it and check what is left (README "Install").
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "package test: $*" >&2; exit 1; }
mode() { stat -c '%a %U:%G' "$1"; }

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
# dpkg-shlibdeps computes the package's library dependencies ($auto); systemd-analyze checks the units.
need=()
command -v dpkg-shlibdeps >/dev/null || need+=(dpkg-dev)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v adduser >/dev/null || need+=(adduser)
if (( ${#need[@]} )); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A release build (cargo-deb refuses the dev profile): the one step here that takes minutes.
cargo deb --locked
deb=$(ls -t target/debian/fleetaudit_*.deb | head -1)
echo "package test: built $deb ($(du -h "$deb" | cut -f1))"
# (Read whole, not piped into grep -q: with pipefail, grep quitting early would fail the writer with SIGPIPE.)
info=$(dpkg-deb --info "$deb"); contents=$(dpkg-deb --contents "$deb")
grep -q 'Depends:.*adduser' <<<"$info" || fail "Depends lacks adduser: $info"
grep -q './lib/systemd/system/fleetaudit.timer' <<<"$contents" || fail "no timer unit in $deb"

DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "./$deb" >/dev/null
[ "$(dpkg-query -W -f '${Status}' fleetaudit)" = "install ok installed" ] || fail "not installed"
grep -q ':/var/lib/fleetaudit:/usr/sbin/nologin$' <<<"$(getent passwd fleetaudit)" || fail "no system user: $(getent passwd fleetaudit)"
[ "$(mode /var/lib/fleetaudit)" = "700 fleetaudit:fleetaudit" ] || fail "/var/lib/fleetaudit is $(mode /var/lib/fleetaudit)"
[ "$(mode /etc/fleetaudit/inventory.toml)" = "640 root:fleetaudit" ] || fail "inventory is $(mode /etc/fleetaudit/inventory.toml)"
grep -q '/etc/fleetaudit/inventory.toml' <<<"$(dpkg-query -W -f '${Conffiles}' fleetaudit)" || fail "the inventory is no conffile"
/usr/bin/fleetaudit --version

# The installed inventory is the example with the package's paths: it loads once the key it names exists.
set +e
out=$(/usr/bin/fleetaudit inventory check -i /etc/fleetaudit/inventory.toml 2>&1); code=$?
set -e
[ "$code" = 3 ] && grep -q 'missing key file /etc/fleetaudit/id_ed25519' <<<"$out" || fail "inventory check: $code $out"

# The demo as the service's user, in a directory it owns.
runuser -u fleetaudit -- env HOME=/var/lib/fleetaudit /usr/bin/fleetaudit demo --dir /var/lib/fleetaudit/demo \
  > /tmp/fleetaudit-package-demo.txt || fail "demo as fleetaudit failed: $(cat /tmp/fleetaudit-package-demo.txt)"
grep -q 'not audited' /tmp/fleetaudit-package-demo.txt || fail "demo printed no summary"
[ "$(stat -c %U /var/lib/fleetaudit/demo/fleetaudit.db)" = fleetaudit ] || fail "demo database not the user's"
[ -f /var/lib/fleetaudit/demo/report/latest/index.html ] || fail "demo report missing"

# The units, offline: this container's PID 1 is not systemd, and `systemd-analyze verify` needs none (it
# loads the files itself); --man=no skips looking up Documentation= man pages, which a slim image lacks.
systemd-analyze verify --man=no /lib/systemd/system/fleetaudit.service /lib/systemd/system/fleetaudit.timer \
  /lib/systemd/system/fleetaudit-daemon.service

DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq fleetaudit >/dev/null
[ -z "$(dpkg-query -W -f '${Status}' fleetaudit 2>/dev/null | grep installed)" ] || fail "still installed"
for gone in /usr/bin/fleetaudit /etc/fleetaudit /var/lib/fleetaudit /lib/systemd/system/fleetaudit.timer; do
  [ ! -e "$gone" ] || fail "$gone is left after purge"
done
# The system user stays (packaging/debian/postrm says why).
getent passwd fleetaudit >/dev/null || fail "the system user was removed"
echo "package test: built, installed, demo run as fleetaudit, units verified, purged"
