# Shared by ./scripts/test and ./scripts/bench: installs missing Debian packages.
# ensure_packages PKG...: as root, apt-get installs what is missing; otherwise prints the exact
# command and exits non-zero.

ensure_packages() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "offload: missing packages. Install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "offload: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # No package may start a system service while we install (redis-server, rabbitmq-server and
  # prometheus would otherwise come up on their default ports): the usual policy-rc.d hook, put
  # in place only if none is, and removed afterwards.
  local hook=/usr/sbin/policy-rc.d added=0 rc=0
  if [ ! -e "$hook" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$hook"
    chmod 755 "$hook"
    added=1
  fi
  local before
  before=$(_enabled_services)
  apt-get update -qq || rc=$?
  if [ $rc -eq 0 ]; then
    apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  fi
  if [ $added -eq 1 ]; then rm -f "$hook"; fi
  _disable_services_enabled_since "$before"
  return $rc
}

# The services enabled at boot, one per line: systemd units wanted by a target, and SysV start
# links (/etc/rc2.d/S01name → name).
_enabled_services() {
  {
    find /etc/systemd/system -path '*.wants/*' -printf '%f\n' 2>/dev/null || true
    find /etc/rc2.d /etc/rc3.d /etc/rc4.d /etc/rc5.d -name 'S*' -printf 'sysv:%f\n' 2>/dev/null |
      sed -E 's/^sysv:S[0-9]+/sysv:/' || true
  } | sort -u
}

# _disable_services_enabled_since LIST: disables every service enabled since LIST was taken by
# _enabled_services (the packages just installed and their dependencies, e.g. redis-server,
# rabbitmq-server, epmd, prometheus), so that none starts at the next boot either. Services that
# were enabled before are never touched.
_disable_services_enabled_since() {
  local unit
  while read -r unit; do
    [ -n "$unit" ] || continue
    if [ "${unit#sysv:}" != "$unit" ]; then
      unit=${unit#sysv:}
      if command -v systemctl >/dev/null; then
        systemctl disable --quiet "$unit" >/dev/null 2>&1 || true
      fi
      if command -v update-rc.d >/dev/null; then
        update-rc.d "$unit" disable >/dev/null 2>&1 || true
      fi
    elif command -v systemctl >/dev/null; then
      systemctl disable --quiet "$unit" >/dev/null 2>&1 || true
    fi
    echo "offload: disabled the boot service $unit (installed just now; the tests run their own)"
  done < <(comm -13 <(printf '%s\n' "$1") <(_enabled_services))
}

# Packages needed to build and test the library.
OFFLOAD_BUILD_PACKAGES=(g++ cmake ninja-build libconcurrentqueue-dev libgtest-dev libgmock-dev
                        relacy-dev nlohmann-json3-dev prometheus libcpp-httplib-dev pkg-config
                        libboost-context-dev libhwloc-dev hwloc clang libclang-rt-14-dev
                        libfuzzer-14-dev)
# Additional packages for the benchmarks: Google Benchmark and the in-process peers.
OFFLOAD_BENCH_PACKAGES=(libbenchmark-dev libtbb-dev libboost-dev python3)
# The broker transports, the worker and their tests against real servers (label "broker").
OFFLOAD_BROKER_PACKAGES=(pkg-config libhiredis-dev librabbitmq-dev redis-server rabbitmq-server
                         openssl)
# The brokered benchmarks and the report: the C++ driver's JSON, Celery, RQ and the charts.
OFFLOAD_BROKER_BENCH_PACKAGES=(nlohmann-json3-dev python3-celery python3-amqp python3-rq python3-redis
                               python3-matplotlib)
