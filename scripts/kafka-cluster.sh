#!/usr/bin/env bash
# kafka-cluster.sh — a three-node Apache Kafka 3.9 cluster in KRaft mode on
# loopback, for the failover tests and for trying a replicated deployment by
# hand. Each node is a combined broker and controller (the lightest real
# cluster on two cores: three JVMs, not six); the three controllers form the
# metadata quorum, so the cluster survives one node down and loses its quorum
# with two down.
#
#   ./scripts/kafka-cluster.sh start        format the three nodes with one
#                                           cluster id, start them, wait until
#                                           each lists all three brokers, write
#                                           DIR/cluster.env
#   ./scripts/kafka-cluster.sh stop         stop every node (TERM, then KILL)
#   ./scripts/kafka-cluster.sh kill N       SIGKILL node N (1-3): a crash
#   ./scripts/kafka-cluster.sh start-node N start node N again on its data and
#                                           ports; wait until it serves
#   ./scripts/kafka-cluster.sh status       one line per node; non-zero if one
#                                           is down
#   ./scripts/kafka-cluster.sh env          print DIR/cluster.env
#
# DIR is $KAFKA_CLUSTER_DIR, default .services/kafka-cluster. cluster.env
# holds KAFKA_CLUSTER_BROKERS=host:port,host:port,host:port (the bootstrap
# list), KAFKA_CLUSTER_ID and KAFKA_NODE<N>=host:port.
#
# The brokers run with default.replication.factor=3 and
# min.insync.replicas=2 (a topic created without its own settings gets
# both), auto.create.topics.enable=false (create topics before the first
# write), and a 3 s broker session (a killed node is fenced and its
# partitions led elsewhere within about 3 s instead of the default 9 s).
# Heaps are capped at 256 MiB, with the serial collector and the C1 compiler
# only: test brokers, not production figures.
#
# Needs java and the broker jars in $KAFKA_LIBS or .services/kafka-libs,
# which ./scripts/services.sh start installs and fetches.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${KAFKA_CLUSTER_DIR:-$ROOT/.services/kafka-cluster}"
LIBS="${KAFKA_LIBS:-$ROOT/.services/kafka-libs}"
NODES=(1 2 3)

log() { printf 'kafka-cluster: %s\n' "$*" >&2; }
die() { printf 'kafka-cluster: error: %s\n' "$*" >&2; exit 1; }

fail_with_log() {
  printf 'kafka-cluster: error: %s\n' "$1" >&2
  if [ -s "$2" ]; then
    printf -- '--- last lines of %s ---\n' "$2" >&2
    tail -n 30 "$2" >&2
  fi
  exit 1
}

check_tools() {
  command -v java >/dev/null || die "java not found: ./scripts/services.sh start installs it"
  ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 ||
    die "Kafka jars not found in $LIBS: ./scripts/services.sh start fetches them"
}

port_in_use() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_ports N: print N distinct loopback ports nothing listens on.
free_ports() {
  local n="$1" p i got=()
  for ((i = 0; i < 200 && ${#got[@]} < n; i++)); do
    p=$(((RANDOM << 15 | RANDOM) % 25000 + 20000))
    [[ " ${got[*]} " == *" $p "* ]] && continue
    port_in_use "$p" || got+=("$p")
  done
  [ "${#got[@]}" -eq "$n" ] || die "no free loopback ports found"
  echo "${got[@]}"
}

node_dir() { echo "$DIR/node$1"; }

# alive N: true when node N's pid file names a live Kafka JVM of this cluster.
alive() {
  local pidf pid
  pidf="$(node_dir "$1")/pid"
  [ -f "$pidf" ] || return 1
  pid="$(cat "$pidf")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(node_dir "$1")/server.properties"
}

# starting N: true while node N's pid has not exited, whatever its command
# line says: just after spawn_node the child may still be the forked shell
# that has not yet exec'd java (the race scripts/services.sh's starting names).
starting() {
  local st
  st="$(sed 's/.*) //' "/proc/$(cat "$(node_dir "$1")/pid" 2>/dev/null)/stat" 2>/dev/null | cut -d' ' -f1)"
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# brokers_listed PORT: the number of brokers a Metadata v0 request to
# 127.0.0.1:PORT lists (the same raw request scripts/services.sh sends).
brokers_listed() {
  local out
  out="$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x10\x00\x03\x00\x00\x00\x00\x00\x01\x00\x02kc\x00\x00\x00\x00" >&3
    head -c 12 <&3 | od -An -tu1' _ "$1" 2>/dev/null)" || { echo 0; return; }
  local -a b
  read -r -a b <<<"$out"
  [ "${#b[@]}" -eq 12 ] || { echo 0; return; }
  echo $(((b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11]))
}

# serving N WANT: node N answers metadata listing at least WANT brokers.
serving() { [ "$(brokers_listed "$(cat "$(node_dir "$1")/port")")" -ge "$2" ]; }

# wait_serving SECONDS WANT N...: wait until every node N serves.
wait_serving() {
  local secs="$1" want="$2" n
  shift 2
  local deadline=$((SECONDS + secs))
  for n in "$@"; do
    until serving "$n" "$want"; do
      starting "$n" || fail_with_log "node $n exited during start-up" "$(node_dir "$n")/kafka.log"
      [ "$SECONDS" -lt "$deadline" ] ||
        fail_with_log "node $n did not list $want brokers within ${secs}s" "$(node_dir "$n")/kafka.log"
      sleep 0.2
    done
  done
}

# write_props N PORT CPORT VOTERS
write_props() {
  local d
  d="$(node_dir "$1")"
  mkdir -p "$d/data"
  cat >"$d/server.properties" <<EOF
# Node $1 of the three-node test cluster written by scripts/kafka-cluster.sh.
process.roles=broker,controller
node.id=$1
controller.quorum.voters=$4
listeners=PLAINTEXT://127.0.0.1:$2,CONTROLLER://127.0.0.1:$3
advertised.listeners=PLAINTEXT://127.0.0.1:$2
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=3
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
EOF
  echo "$2" >"$d/port"
  echo "$3" >"$d/cport"
}

spawn_node() {
  local d
  d="$(node_dir "$1")"
  nohup java -Xmx256m -Xms64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$DIR/log4j.properties" -cp "$LIBS/*" \
    kafka.Kafka "$d/server.properties" >>"$d/kafka.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
}

# stop_nodes N...: TERM every node at once (one by one, the last waits for
# a controller quorum that has already gone), then KILL what is left after
# 15 s.
stop_nodes() {
  local n i
  for n in "$@"; do
    if alive "$n"; then kill -TERM "$(cat "$(node_dir "$n")/pid")" 2>/dev/null || true; fi
  done
  for n in "$@"; do
    for ((i = 0; i < 150; i++)); do alive "$n" || break; sleep 0.1; done
    if alive "$n"; then
      log "node $n still running 15s after TERM: killing"
      kill -KILL "$(cat "$(node_dir "$n")/pid")" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$n" || break; sleep 0.1; done
    fi
    rm -f "$(node_dir "$n")/pid"
  done
}

# cluster_id: a random cluster id in the form StorageTool random-uuid prints
# (16 random bytes, URL-safe base64 without padding, not starting with '-'),
# without a JVM start.
cluster_id() {
  local id
  while :; do
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    [ "${id:0:1}" != "-" ] && { echo "$id"; return; }
  done
}

write_env() {
  local n list=() tmp="$DIR/cluster.env.tmp.$$"
  for n in "${NODES[@]}"; do list+=("127.0.0.1:$(cat "$(node_dir "$n")/port")"); done
  {
    echo "KAFKA_CLUSTER_BROKERS=$(IFS=,; echo "${list[*]}")"
    echo "KAFKA_CLUSTER_ID=$(cat "$DIR/cluster.id")"
    for n in "${NODES[@]}"; do echo "KAFKA_NODE$n=${list[$((n - 1))]}"; done
  } >"$tmp"
  mv "$tmp" "$DIR/cluster.env"
}

cmd_start() {
  check_tools
  local t0=$SECONDS n
  stop_nodes "${NODES[@]}"
  rm -rf "$DIR"
  mkdir -p "$DIR"
  cp "$ROOT/scripts/kafka/log4j.properties" "$DIR/log4j.properties"
  # A failed start stops what it started.
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then stop_nodes "${NODES[@]}"; fi' EXIT
  local -a ports
  read -r -a ports <<<"$(free_ports 6)"
  local voters="1@127.0.0.1:${ports[3]},2@127.0.0.1:${ports[4]},3@127.0.0.1:${ports[5]}"
  for n in "${NODES[@]}"; do write_props "$n" "${ports[$((n - 1))]}" "${ports[$((n + 2))]}" "$voters"; done

  local jopts=(-Xshare:auto -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx128m
    "-Dlog4j.configuration=file:$DIR/log4j.properties" -cp "$LIBS/*")
  cluster_id >"$DIR/cluster.id"
  # One cluster id for all three; the formats run side by side.
  local pids=()
  for n in "${NODES[@]}"; do
    java "${jopts[@]}" kafka.tools.StorageTool format -t "$(cat "$DIR/cluster.id")" \
      -c "$(node_dir "$n")/server.properties" >"$(node_dir "$n")/format.log" 2>&1 &
    pids+=($!)
  done
  for n in "${NODES[@]}"; do
    wait "${pids[$((n - 1))]}" || fail_with_log "StorageTool format of node $n failed" "$(node_dir "$n")/format.log"
  done
  for n in "${NODES[@]}"; do spawn_node "$n"; done
  wait_serving 120 3 "${NODES[@]}"
  write_env
  trap - EXIT
  log "three nodes serving in $((SECONDS - t0))s: $(grep BROKERS "$DIR/cluster.env" | cut -d= -f2)"
}

node_arg() {
  [[ "${1:-}" =~ ^[123]$ ]] || die "want a node number 1, 2 or 3, got '${1:-}'"
  [ -f "$(node_dir "$1")/server.properties" ] || die "no cluster in $DIR: run $0 start"
}

cmd_kill() {
  node_arg "$1"
  alive "$1" || die "node $1 is not running"
  local pid
  pid="$(cat "$(node_dir "$1")/pid")"
  kill -KILL "$pid"
  while alive "$1"; do sleep 0.05; done
  rm -f "$(node_dir "$1")/pid"
  log "node $1 killed (pid $pid)"
}

cmd_start_node() {
  node_arg "$1"
  check_tools
  if alive "$1"; then log "node $1 already running"; return; fi
  spawn_node "$1"
  # It serves once it has caught up with the metadata log and registered;
  # how many others it lists depends on who else is up.
  wait_serving 120 1 "$1"
  log "node $1 serving again"
}

cmd_stop() {
  [ -d "$DIR" ] && stop_nodes "${NODES[@]}"
  log "stopped"
}

cmd_status() {
  local n rc=0
  for n in "${NODES[@]}"; do
    if alive "$n" && serving "$n" 1; then
      echo "node $n: serving on 127.0.0.1:$(cat "$(node_dir "$n")/port"), lists $(brokers_listed "$(cat "$(node_dir "$n")/port")") brokers"
    else
      echo "node $n: down"; rc=1
    fi
  done
  return "$rc"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
kill) cmd_kill "${2:-}" ;;
start-node) cmd_start_node "${2:-}" ;;
status) cmd_status ;;
env) [ -f "$DIR/cluster.env" ] || die "not started: run $0 start"; cat "$DIR/cluster.env" ;;
*)
  echo "usage: $0 start|stop|kill N|start-node N|status|env" >&2
  exit 2
  ;;
esac
