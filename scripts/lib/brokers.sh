#!/usr/bin/env bash
# Starts and stops real brokers as plain processes on loopback, each in a directory of its own.
#
#   scripts/lib/brokers.sh start redis|rabbitmq DIR [PORT]   prints the port; exits non-zero,
#                                                            naming the broker and showing the
#                                                            tail of its log, if it is not ready
#                                                            within the bound (redis 10 s,
#                                                            rabbitmq 60 s)
#   scripts/lib/brokers.sh stop DIR                          stops what DIR's *.pid files name
#
# Or source it and call broker_start / broker_stop. A started broker leaves in DIR: port, one
# <name>.pid per process it started (stopped by PID, never by name) and its log.
set -euo pipefail

# A TCP port on 127.0.0.1 that nothing listens on now (tries random ports).
broker_free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "brokers.sh: no free port found" >&2
  return 1
}

broker_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# _broker_fail NAME DIR LOG MESSAGE: prints the error and the tail of the log, stops what started.
_broker_fail() {
  echo "brokers.sh: $1 failed to start: $4" >&2
  if [ -f "$3" ]; then
    echo "--- last lines of $3:" >&2
    tail -n 25 "$3" >&2
  fi
  broker_stop "$2" >/dev/null 2>&1 || true
  return 1
}

# _broker_wait NAME DIR LOG PORT PID SECONDS: waits until PORT accepts connections.
_broker_wait() {
  local deadline=$((SECONDS + $6))
  while ! broker_port_open "$4"; do
    if ! kill -0 "$5" 2>/dev/null; then
      _broker_fail "$1" "$2" "$3" "process $5 exited before listening on 127.0.0.1:$4"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      _broker_fail "$1" "$2" "$3" "not listening on 127.0.0.1:$4 after $6 s"
      return 1
    fi
    sleep 0.1
  done
}

_broker_start_redis() {
  local dir=$1 port=$2
  command -v redis-server >/dev/null || {
    echo "brokers.sh: redis failed to start: redis-server not installed (apt-get install redis-server)" >&2
    return 1
  }
  # OFFLOAD_REDIS_PERSIST=1: every write fsynced to an append-only file in DIR, so a Redis
  # started again in the same DIR has what the last one had (broker-restart tests).
  local aof=no
  [ "${OFFLOAD_REDIS_PERSIST:-0}" = 1 ] && aof=yes
  setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly "$aof" \
    --appendfsync always --daemonize no --logfile "$dir/redis.log" --protected-mode yes \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/redis.pid"
  _broker_wait redis "$dir" "$dir/redis.log" "$port" "$(cat "$dir/redis.pid")" 10
}

# _broker_make_tls DIR: a CA (ca.pem) and a server certificate for localhost/127.0.0.1
# (server.pem, server.key) signed by it, valid two days; kept if already there.
_broker_make_tls() {
  local d=$1
  [ -f "$d/server.pem" ] && return 0
  mkdir -p "$d"
  (
    cd "$d" &&
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
        -subj "/CN=offload test CA" &&
      openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" &&
      printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >san.ext &&
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 2 -extfile san.ext
  ) >"$d/openssl.log" 2>&1
}

_broker_start_rabbitmq() {
  local dir=$1 port=$2
  local server=/usr/lib/rabbitmq/bin/rabbitmq-server  # not the /usr/sbin wrapper: it su's as root
  [ -x "$server" ] || {
    echo "brokers.sh: rabbitmq failed to start: rabbitmq-server not installed (apt-get install rabbitmq-server)" >&2
    return 1
  }
  local epmd_port dist_port
  epmd_port=$(broker_free_port)
  dist_port=$(broker_free_port)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  # The Erlang cookie must be private to its owner, in a HOME of our own.
  head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/home/.erlang.cookie"
  chmod 600 "$dir/home/.erlang.cookie"
  : >"$dir/enabled_plugins"
  # OFFLOAD_RABBITMQ_TLS=1: a TLS listener too, on a port of its own (in DIR/tls_port, kept
  # across restarts), with a certificate for localhost and 127.0.0.1 signed by a CA made here
  # (DIR/tls/ca.pem: what a client verifies it with).
  if [ "${OFFLOAD_RABBITMQ_TLS:-0}" = 1 ]; then
    local tls_port
    tls_port=$(cat "$dir/tls_port" 2>/dev/null || broker_free_port)
    _broker_make_tls "$dir/tls" || {
      echo "brokers.sh: rabbitmq failed to start: could not make TLS certificates (openssl)" >&2
      return 1
    }
    printf '%s\n' "listeners.ssl.default = $tls_port" \
      "ssl_options.cacertfile = $dir/tls/ca.pem" \
      "ssl_options.certfile = $dir/tls/server.pem" \
      "ssl_options.keyfile = $dir/tls/server.key" \
      "ssl_options.verify = verify_none" \
      "ssl_options.fail_if_no_peer_cert = false" >"$dir/rabbitmq.conf"
    echo "$tls_port" >"$dir/tls_port"
  fi
  # A private epmd, so that nodes of parallel runs never collide; stopped by its PID.
  setsid epmd -port "$epmd_port" -address 127.0.0.1 </dev/null >"$dir/log/epmd.log" 2>&1 &
  echo $! >"$dir/epmd.pid"
  local i
  for i in $(seq 1 50); do
    broker_port_open "$epmd_port" && break
    sleep 0.1
  done
  (
    export HOME="$dir/home" ERL_EPMD_PORT="$epmd_port" RABBITMQ_NODENAME=rabbit@localhost
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$port"
    export RABBITMQ_DIST_PORT="$dist_port" RABBITMQ_MNESIA_BASE="$dir/mnesia"
    export RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    export RABBITMQ_PID_FILE="$dir/rabbitmq.erlpid" RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    export RABBITMQ_SERVER_ERL_ARGS="+P 1048576 -kernel inet_dist_use_interface {127,0,0,1}"
    exec setsid "$server" </dev/null >"$dir/log/stdout.log" 2>&1
  ) &
  echo $! >"$dir/rabbitmq.pid"
  _broker_wait rabbitmq "$dir" "$dir/log/rabbit@localhost.log" "$port" \
    "$(cat "$dir/rabbitmq.pid")" 60
}

# broker_start NAME DIR [PORT]: starts redis or rabbitmq in DIR (created) and prints its port.
broker_start() {
  local name=$1 dir=$2 port=${3:-}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -n "$port" ] || port=$(broker_free_port)
  if broker_port_open "$port"; then
    echo "brokers.sh: $name failed to start: 127.0.0.1:$port is already in use" >&2
    return 1
  fi
  case "$name" in
    redis) _broker_start_redis "$dir" "$port" ;;
    rabbitmq) _broker_start_rabbitmq "$dir" "$port" ;;
    *)
      echo "brokers.sh: unknown broker '$name' (redis or rabbitmq)" >&2
      return 2
      ;;
  esac
  echo "$port" >"$dir/port"
  echo "$port"
}

# broker_stop DIR: TERM each PID recorded in DIR, waits up to 15 s, then KILLs its process group.
broker_stop() {
  local dir=$1 f pid i
  for f in "$dir"/rabbitmq.pid "$dir"/redis.pid "$dir"/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
    # Each process was started as a session leader: its group holds its children (erl_child_setup).
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    start) broker_start "${2:?broker name}" "${3:?directory}" "${4:-}" ;;
    stop) broker_stop "${2:?directory}" ;;
    *)
      echo "usage: $0 start redis|rabbitmq DIR [PORT] | stop DIR" >&2
      exit 2
      ;;
  esac
fi
