#!/usr/bin/env bash
# redis-cluster.sh — the two highly available Redis set-ups pingate supports,
# on loopback, as real redis-server processes: for the failover tests
# (integration/redisfailover) and for trying them by hand.
#
#   a Redis Cluster of three masters, each with one replica (six nodes c1–c6,
#   cluster-enabled yes, created with redis-cli --cluster create
#   --cluster-replicas 1 --cluster-yes), cluster-node-timeout 1000 ms and
#   cluster-require-full-coverage no (a master down stops only its own slots);
#
#   a Sentinel set: one master (m), one replica (r) and three sentinels
#   (s1–s3, redis-server --sentinel) monitoring group "pingate" with quorum 2,
#   down-after-milliseconds 1000 and failover-timeout 5000.
#
#   ./scripts/redis-cluster.sh start         start every node, create the
#                                            cluster, wait until it is ok and
#                                            the sentinels see each other and
#                                            the replica; write DIR/ha.env
#   ./scripts/redis-cluster.sh stop          stop every node (TERM, then KILL)
#   ./scripts/redis-cluster.sh kill NAME     SIGKILL node NAME (c1–c6, m, r,
#                                            s1–s3): a crash
#   ./scripts/redis-cluster.sh start-node NAME  start NAME again on its port
#                                            and configuration; wait for PONG
#   ./scripts/redis-cluster.sh status        one line per node; non-zero if
#                                            one is down
#   ./scripts/redis-cluster.sh env           print DIR/ha.env
#
# DIR is $REDIS_HA_DIR, default .services/redis-ha. ha.env holds
# REDIS_CLUSTER_ADDRS (the six nodes, host:port comma-separated: the seed list
# of limits.mode cluster), REDIS_SENTINEL_ADDRS (the three sentinels: limits.addrs
# of limits.mode sentinel), REDIS_SENTINEL_MASTER (limits.master_name) and
# REDIS_NODE_<NAME>=host:port for every node.
#
# Nodes keep no data on disk (save '', appendonly no): a killed node restarted
# comes back empty and, in the cluster (its nodes.conf keeps its identity) or
# under the sentinels (start-node starts a data node as the replica of the other one),
# as a replica of whichever node took over, from which it resynchronises. Needs redis-server and redis-cli (./scripts/services.sh start
# installs them).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${REDIS_HA_DIR:-$ROOT/.services/redis-ha}"
CLUSTER=(c1 c2 c3 c4 c5 c6)
SENTINELS=(s1 s2 s3)
ALL=("${CLUSTER[@]}" m r "${SENTINELS[@]}")
MASTER_NAME=pingate

log() { printf 'redis-cluster: %s\n' "$*" >&2; }
die() { printf 'redis-cluster: error: %s\n' "$*" >&2; exit 1; }

port_in_use() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port: a port on 127.0.0.1 that nothing listens on and no node of ours
# has taken (DIR/*.port, DIR/*.busport), below Linux's ephemeral range
# (32768–60999), where a port nothing listens on may still be bound by an
# outgoing connection.
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$(((RANDOM << 15 | RANDOM) % 12000 + 20000))
    port_in_use "$p" || cat "$DIR"/*port 2>/dev/null | grep -qx "$p" || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

port_of() { cat "$DIR/$1.port"; }

pid_alive() {
  local pidf="$DIR/$1/redis.pid" pid
  [ -f "$pidf" ] || return 1
  pid="$(cat "$pidf")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q redis-server
}

cli() { local name="$1"; shift; timeout 5 redis-cli -h 127.0.0.1 -p "$(port_of "$name")" "$@"; }

ping_ok() { [ "$(cli "$1" PING 2>/dev/null)" = PONG ]; }

# wait_for SECONDS WHAT CHECK...: poll CHECK every 0.1 s.
wait_for() {
  local secs="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not within ${secs}s (logs in $DIR/*/redis.log)"
    sleep 0.1
  done
}

# write_conf NAME: the node's configuration file, DIR/NAME.conf.
write_conf() {
  local name="$1" port
  port="$(port_of "$name")"
  mkdir -p "$DIR/$name"
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo "daemonize yes"
    echo "pidfile $DIR/$name/redis.pid"
    echo "logfile $DIR/$name/redis.log"
    echo "dir $DIR/$name"
    echo "loglevel warning"
    case "$name" in
    c*)
      echo "save ''"
      echo "appendonly no"
      echo "cluster-enabled yes"
      echo "cluster-config-file nodes.conf"
      echo "cluster-port $(cat "$DIR/$name.busport")"
      echo "cluster-node-timeout 1000"
      echo "cluster-require-full-coverage no"
      ;;
    m)
      echo "save ''"
      echo "appendonly no"
      ;;
    r)
      echo "save ''"
      echo "appendonly no"
      echo "replicaof 127.0.0.1 $(port_of m)"
      ;;
    s*)
      echo "sentinel monitor $MASTER_NAME 127.0.0.1 $(port_of m) 2"
      echo "sentinel down-after-milliseconds $MASTER_NAME 1000"
      echo "sentinel failover-timeout $MASTER_NAME 5000"
      echo "sentinel parallel-syncs $MASTER_NAME 1"
      ;;
    esac
  } >"$DIR/$name.conf"
}

start_node() {
  local name="$1" other
  pid_alive "$name" && { log "$name already running"; return 0; }
  case "$name" in
  s*) redis-server "$DIR/$name.conf" --sentinel >/dev/null ;;
  m | r)
    # A data node without persistence must never come back as a master while
    # the other one holds the data: an empty master that the sentinels adopt
    # again (a failover that timed out or was not complete everywhere) would
    # have its replica resynchronise from it and wipe every count (Redis
    # replication docs, "Safety of replication when master has persistence
    # turned off"). Its supervisor restarts it as a replica of the other data
    # node, as this does; the sentinels then see it for what it is.
    other=r; [ "$name" = r ] && other=m
    if pid_alive "$other"; then
      redis-server "$DIR/$name.conf" --replicaof 127.0.0.1 "$(port_of "$other")" >/dev/null
    else
      redis-server "$DIR/$name.conf" >/dev/null
    fi
    ;;
  *) redis-server "$DIR/$name.conf" >/dev/null ;;
  esac
  wait_for 20 "$name answering PING" ping_ok "$name"
}

cluster_ok() {
  local n
  for n in "${CLUSTER[@]}"; do
    cli "$n" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    [ "$(cli "$n" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" = 6 ] || return 1
  done
}

replica_synced() { cli r INFO replication 2>/dev/null | grep -q '^master_link_status:up'; }

sentinels_ready() {
  local s out
  for s in "${SENTINELS[@]}"; do
    out="$(cli "$s" SENTINEL MASTER "$MASTER_NAME" 2>/dev/null | tr -d '\r')" || return 1
    grep -A1 -x num-other-sentinels <<<"$out" | tail -1 | grep -qx 2 || return 1
    grep -A1 -x num-slaves <<<"$out" | tail -1 | grep -qx 1 || return 1
  done
}

write_env() {
  local n addrs=() sent=() tmp="$DIR/ha.env.tmp.$$"
  for n in "${CLUSTER[@]}"; do addrs+=("127.0.0.1:$(port_of "$n")"); done
  for n in "${SENTINELS[@]}"; do sent+=("127.0.0.1:$(port_of "$n")"); done
  {
    echo "REDIS_CLUSTER_ADDRS=$(IFS=,; echo "${addrs[*]}")"
    echo "REDIS_SENTINEL_ADDRS=$(IFS=,; echo "${sent[*]}")"
    echo "REDIS_SENTINEL_MASTER=$MASTER_NAME"
    for n in "${ALL[@]}"; do echo "REDIS_NODE_$n=127.0.0.1:$(port_of "$n")"; done
  } >"$tmp"
  mv "$tmp" "$DIR/ha.env"
}

cmd_start() {
  command -v redis-server >/dev/null || die "redis-server not found (./scripts/services.sh start installs it)"
  command -v redis-cli >/dev/null || die "redis-cli not found (./scripts/services.sh start installs it)"
  mkdir -p "$DIR"
  local n
  if [ -f "$DIR/ha.env" ] && cmd_status >/dev/null 2>&1; then
    log "already running"
    return 0
  fi
  cmd_stop 2>/dev/null || true
  rm -rf "${DIR:?}"/*
  for n in "${ALL[@]}"; do free_port >"$DIR/$n.port"; done
  for n in "${CLUSTER[@]}"; do free_port >"$DIR/$n.busport"; done
  for n in "${ALL[@]}"; do write_conf "$n"; done
  for n in "${CLUSTER[@]}" m r; do start_node "$n"; done
  local nodes=()
  for n in "${CLUSTER[@]}"; do nodes+=("127.0.0.1:$(port_of "$n")"); done
  timeout 60 redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
    { cat "$DIR/cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  wait_for 30 "cluster state ok on all six nodes" cluster_ok
  wait_for 30 "replica r in sync with m" replica_synced
  for n in "${SENTINELS[@]}"; do start_node "$n"; done
  wait_for 30 "sentinels seeing each other and the replica" sentinels_ready
  write_env
  log "cluster $(sed -n 's/^REDIS_CLUSTER_ADDRS=//p' "$DIR/ha.env"); sentinels $(sed -n 's/^REDIS_SENTINEL_ADDRS=//p' "$DIR/ha.env")"
}

cmd_stop() {
  local n pid i
  for n in "${ALL[@]}"; do
    pid_alive "$n" || continue
    pid="$(cat "$DIR/$n/redis.pid" 2>/dev/null)" || continue
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do pid_alive "$n" || break; sleep 0.1; done
    pid_alive "$n" && kill -KILL "$pid" 2>/dev/null || true
  done
  return 0
}

cmd_kill() {
  local name="$1"
  [ -f "$DIR/$name.conf" ] || die "no node $name"
  pid_alive "$name" || die "$name is not running"
  kill -KILL "$(cat "$DIR/$name/redis.pid")"
  for ((i = 0; i < 50; i++)); do pid_alive "$name" || return 0; sleep 0.1; done
  die "$name still running after SIGKILL"
}

cmd_status() {
  local n rc=0
  for n in "${ALL[@]}"; do
    if [ -f "$DIR/$n.port" ] && pid_alive "$n" && ping_ok "$n"; then
      echo "$n 127.0.0.1:$(port_of "$n") up"
    else
      echo "$n down"
      rc=1
    fi
  done
  return $rc
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
kill) [ -n "${2:-}" ] || die "kill NAME"; cmd_kill "$2" ;;
start-node) [ -n "${2:-}" ] || die "start-node NAME"; [ -f "$DIR/$2.conf" ] || die "no node $2"; start_node "$2" ;;
status) cmd_status ;;
env) cat "$DIR/ha.env" ;;
*) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
