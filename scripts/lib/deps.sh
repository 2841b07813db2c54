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
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Packages needed to build and test the library.
OFFLOAD_BUILD_PACKAGES=(g++ cmake ninja-build libconcurrentqueue-dev libgtest-dev libgmock-dev
                        relacy-dev nlohmann-json3-dev prometheus libcpp-httplib-dev pkg-config
                        libboost-context-dev libhwloc-dev hwloc)
# Additional packages for the benchmarks: Google Benchmark and the in-process peers.
OFFLOAD_BENCH_PACKAGES=(libbenchmark-dev libtbb-dev libboost-dev python3)
# The broker transports, the worker and their tests against real servers (label "broker").
OFFLOAD_BROKER_PACKAGES=(pkg-config libhiredis-dev librabbitmq-dev redis-server rabbitmq-server)
# The brokered benchmarks and the report: the C++ driver's JSON, Celery, RQ and the charts.
OFFLOAD_BROKER_BENCH_PACKAGES=(nlohmann-json3-dev python3-celery python3-rq python3-redis
                               python3-matplotlib)
