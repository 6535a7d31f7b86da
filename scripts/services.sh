#!/usr/bin/env bash
# services.sh — a real Redis, a real single-node Kafka broker and a real
# PostgreSQL for tests and local runs, on free loopback ports, with all state
# under .services/.
#
#   ./scripts/services.sh start   install what is missing, start both, wait until
#                                 they answer, write .services.env
#   ./scripts/services.sh stop    stop both (pid files) and wait for them to exit
#   ./scripts/services.sh env     print .services.env as export lines:
#                                 eval "$(./scripts/services.sh env)"
#   ./scripts/services.sh status  say what is running; non-zero if not both
#
# .services.env holds REDIS_ADDR=host:port, KAFKA_BROKERS=host:port,
# KAFKA_LIBS=<absolute path of the broker jars> and
# PG_URL=postgres://pingate@127.0.0.1:port/records (trust auth, loopback only:
# a test instance, never a production setting). start is idempotent: when both
# services already run and answer it only rewrites the env file.
#
# Installs (only when absent): Debian's redis-server, a JDK and Maven
# (apt-get; as root, or through sudo), and the Apache Kafka 3.9.1 broker jars
# from Maven Central (scripts/kafka/pom.xml) into .services/kafka-libs.
# Debian's postgresql (server tools from its versioned directory). PostgreSQL
# refuses to run as root: its data lives in .services/pg, owned by the
# postgres user, and initdb/pg_ctl run through runuser when we are root.
# Logs: .services/redis.log, .services/kafka.log, .services/kafka-format.log,
# .services/pg/log.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SVC="$ROOT/.services"
LIBS="$SVC/kafka-libs"
ENVFILE="$ROOT/.services.env"
KAFKA_TMPL="$ROOT/scripts/kafka"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# fail_with_log MESSAGE LOGFILE: print the tail of a log and exit non-zero.
fail_with_log() {
  printf 'services: error: %s\n' "$1" >&2
  if [ -s "$2" ]; then
    printf -- '--- last lines of %s ---\n' "$2" >&2
    tail -n 30 "$2" >&2
  fi
  exit 1
}

# ---------------------------------------------------------------- installing

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and apt-get not available: install it by hand"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "$* missing: run as root or install sudo"
    sudo=(sudo)
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2 ||
    die "apt-get install $* failed"
}

install_missing() {
  local pkgs=()
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  # A JDK rather than a runtime: the jPOS client (scripts/jpos) is compiled by
  # mvn in go test; the Kafka jars need only its java.
  command -v javac >/dev/null || pkgs+=(default-jdk-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  pg_bin >/dev/null 2>&1 || pkgs+=(postgresql)
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi
  # Debian's package may start its own redis on 6379 through invoke-rc.d; ours
  # runs on a free port of its own and does not depend on that one.

  if [ ! -f "$LIBS/.complete" ]; then
    log "fetching Kafka 3.9.1 broker jars from Maven Central into $LIBS"
    rm -rf "$LIBS"
    mkdir -p "$SVC"
    mvn -q -B -f "$KAFKA_TMPL/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >"$SVC/maven.log" 2>&1 ||
      fail_with_log "maven could not fetch the Kafka jars" "$SVC/maven.log"
    ls "$LIBS"/kafka_2.13-3.9.1.jar >/dev/null 2>&1 || fail_with_log "kafka_2.13-3.9.1.jar not fetched" "$SVC/maven.log"
    touch "$LIBS/.complete"
  fi
}

# ---------------------------------------------------------------- helpers

# port_in_use PORT: true when something accepts connections on 127.0.0.1:PORT.
port_in_use() { (exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port [EXCLUDE...]: print a port on 127.0.0.1 that nothing listens on.
free_port() {
  local p ex i
  for ((i = 0; i < 100; i++)); do
    p=$(((RANDOM << 15 | RANDOM) % 25000 + 20000))
    for ex in "$@"; do [ "$p" = "$ex" ] && continue 2; done
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free loopback port found"
}

# alive NAME MATCH: true when .services/NAME.pid names a live process whose
# command line contains MATCH (guards against a recycled pid).
alive() {
  local pidf="$SVC/$1.pid" pid
  [ -f "$pidf" ] || return 1
  pid="$(cat "$pidf")"
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# redis_ping PORT: true when Redis answers PING with PONG.
redis_ping() {
  local reply
  reply="$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "PING\r\n" >&3 && head -c 7 <&3' _ "$1" 2>/dev/null)" || return 1
  [[ "$reply" == +PONG* ]]
}

# kafka_ready PORT: true when the broker answers a Metadata (v0, all topics)
# request and lists at least one live broker — i.e. it has registered with its
# KRaft controller and will accept produce requests, not merely bound the port.
kafka_ready() {
  local out
  # size=16 | api_key=3 (Metadata) | api_version=0 | correlation_id=1 |
  # client_id="sh" | topics=[] (0 entries)
  out="$(timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf "\x00\x00\x00\x10\x00\x03\x00\x00\x00\x00\x00\x01\x00\x02sh\x00\x00\x00\x00" >&3
    head -c 12 <&3 | od -An -tu1' _ "$1" 2>/dev/null)" || return 1
  # bytes: size(4) correlation_id(4) broker_count(4)
  local -a b
  read -r -a b <<<"$out"
  [ "${#b[@]}" -eq 12 ] || return 1
  [ $(((b[8] << 24) | (b[9] << 16) | (b[10] << 8) | b[11])) -ge 1 ]
}

# starting NAME: true while the process .services/NAME.pid names has not
# exited. Unlike alive it does not read the command line: just after `cmd &`
# the child may still be the forked shell, not yet the server it execs (CI
# once failed on that race), and a pid we started this second is not recycled.
starting() {
  local pid st
  pid="$(cat "$SVC/$1.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] || return 1
  st="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)" || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# wait_until SECONDS PIDNAME MATCH LOG CHECK...: poll CHECK every 0.1 s until it
# succeeds; fail with the log tail when the process dies or time runs out, or
# when, once CHECK succeeds, the pid is not the server MATCH names.
wait_until() {
  local secs="$1" name="$2" match="$3" logf="$4"
  shift 4
  local deadline=$((SECONDS + secs))
  until "$@"; do
    starting "$name" || fail_with_log "$name exited during start-up" "$logf"
    [ "$SECONDS" -lt "$deadline" ] || fail_with_log "$name did not answer within ${secs}s" "$logf"
    sleep 0.1
  done
  alive "$name" "$match" || fail_with_log "$name answered, but its pid is not a $match" "$logf"
}

# stop_one NAME MATCH: TERM the process, wait up to 30 s, then KILL.
stop_one() {
  local name="$1" match="$2" pid i
  if alive "$name" "$match"; then
    pid="$(cat "$SVC/$name.pid")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
      alive "$name" "$match" || break
      sleep 0.1
    done
    if alive "$name" "$match"; then
      log "$name still running after 30s: killing"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do alive "$name" "$match" || break; sleep 0.1; done
    fi
  fi
  rm -f "$SVC/$name.pid" "$SVC/$name.port"
}

write_env() {
  local tmp="$ENVFILE.tmp.$$"
  {
    echo "REDIS_ADDR=127.0.0.1:$(cat "$SVC/redis.port")"
    echo "KAFKA_BROKERS=127.0.0.1:$(cat "$SVC/kafka.port")"
    echo "KAFKA_LIBS=$LIBS"
    echo "PG_URL=postgres://pingate@127.0.0.1:$(cat "$SVC/pg.port")/records?sslmode=disable"
  } >"$tmp"
  mv "$tmp" "$ENVFILE"
}

# ---------------------------------------------------------------- starting

start_redis() {
  if alive redis redis-server && [ -f "$SVC/redis.port" ] && redis_ping "$(cat "$SVC/redis.port")"; then
    log "redis already running on 127.0.0.1:$(cat "$SVC/redis.port")"
    return
  fi
  stop_one redis redis-server
  local port
  port="$(free_port)"
  mkdir -p "$SVC/redis"
  nohup redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$SVC/redis" --loglevel warning \
    >"$SVC/redis.log" 2>&1 </dev/null 8>&- &
  echo $! >"$SVC/redis.pid"
  echo "$port" >"$SVC/redis.port"
  wait_until 15 redis redis-server "$SVC/redis.log" redis_ping "$port"
  log "redis ready on 127.0.0.1:$port"
}

# start_kafka_spawn: begin the broker start-up and return at once; the caller
# waits with wait_kafka, so Redis and Kafka come up in parallel.
start_kafka_spawn() {
  KAFKA_STARTED=0
  if alive kafka kafka.Kafka && [ -f "$SVC/kafka.port" ] && kafka_ready "$(cat "$SVC/kafka.port")"; then
    log "kafka already running on 127.0.0.1:$(cat "$SVC/kafka.port")"
    return
  fi
  stop_one kafka kafka.Kafka
  local port cport dir="$SVC/kafka"
  port="$(free_port)"
  cport="$(free_port "$port")"
  rm -rf "$dir"
  mkdir -p "$dir/data"
  sed -e "s|@PORT@|$port|g" -e "s|@CPORT@|$cport|g" -e "s|@LOGDIR@|$dir/data|g" \
    "$KAFKA_TMPL/server.properties.tmpl" >"$dir/server.properties"
  cp "$KAFKA_TMPL/log4j.properties" "$dir/log4j.properties"

  local jopts=(-Xshare:auto -XX:TieredStopAtLevel=1 -Xmx256m
    "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$LIBS/*")
  local id
  id="$(java "${jopts[@]}" kafka.tools.StorageTool random-uuid 2>"$SVC/kafka-format.log")" ||
    fail_with_log "kafka StorageTool random-uuid failed" "$SVC/kafka-format.log"
  java "${jopts[@]}" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
    >>"$SVC/kafka-format.log" 2>&1 || fail_with_log "kafka StorageTool format failed" "$SVC/kafka-format.log"

  # C1 only and the serial collector: half the start-up time on 2 cores; a
  # test broker needs no peak throughput.
  nohup java -Xmx512m -Xms128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" >"$SVC/kafka.log" 2>&1 </dev/null 8>&- &
  echo $! >"$SVC/kafka.pid"
  echo "$port" >"$SVC/kafka.port"
  KAFKA_STARTED=1
}

wait_kafka() {
  local port
  port="$(cat "$SVC/kafka.port")"
  wait_until 60 kafka kafka.Kafka "$SVC/kafka.log" kafka_ready "$port"
  [ "$KAFKA_STARTED" -eq 1 ] && log "kafka ready on 127.0.0.1:$port"
  return 0
}

# ---------------------------------------------------------------- postgres

# pg_bin: print the directory holding Debian's initdb and pg_ctl.
pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

# as_pg CMD...: run CMD as the postgres user when we are root (the server
# refuses root), as ourselves otherwise.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$1" -t 2 >/dev/null 2>&1; }

# pg_dir: the PostgreSQL run directory (data, socket, log). It is
# .services/pg, unless the postgres user cannot reach .services (as root the
# server runs as postgres, and a checkout below a 0700 directory such as
# /root or a mktemp directory is out of its reach): then it is a directory of
# its own under /tmp, named in .services/pg.dir and removed on stop.
pg_dir() {
  if [ -f "$SVC/pg.dir" ]; then cat "$SVC/pg.dir"; else echo "$SVC/pg"; fi
}

start_pg() {
  local bin dir port
  bin="$(pg_bin)" || die "postgresql server tools not found under /usr/lib/postgresql"
  dir="$(pg_dir)"
  if [ -f "$SVC/pg.port" ] && [ -f "$dir/data/postmaster.pid" ] && pg_ready "$(cat "$SVC/pg.port")"; then
    log "postgres already running on 127.0.0.1:$(cat "$SVC/pg.port")"
    return
  fi
  stop_pg
  dir="$SVC/pg"
  rm -rf "$dir"
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$SVC"; then
    dir="$(mktemp -d "/tmp/pingate-pg.XXXXXX")"
    echo "$dir" >"$SVC/pg.dir"
    log "postgres cannot reach $SVC: its data lives in $dir"
  fi
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  chmod 0700 "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -A trust -U pingate -E UTF8 --no-instructions \
    >"$SVC/pg-initdb.log" 2>&1 || fail_with_log "initdb failed" "$SVC/pg-initdb.log"
  port="$(free_port)"
  echo "$port" >"$SVC/pg.port"
  # fd 8 (the lock) closed: the server must not inherit it.
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >"$SVC/pg-ctl.log" 2>&1 8>&- ||
    fail_with_log "postgres did not start" "$dir/log"
  psql -q -h 127.0.0.1 -p "$port" -U pingate -d postgres -c 'create database records' \
    >>"$SVC/pg-ctl.log" 2>&1 || fail_with_log "create database records failed" "$SVC/pg-ctl.log"
  log "postgres ready on 127.0.0.1:$port"
}

stop_pg() {
  local bin dir
  dir="$(pg_dir)"
  if [ -f "$dir/data/postmaster.pid" ] && bin="$(pg_bin)"; then
    log "stopping postgres"
    as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  if [ -f "$SVC/pg.dir" ]; then
    rm -rf "$dir" "$SVC/pg.dir"
  fi
  rm -f "$SVC/pg.port"
}

cmd_start() {
  local t0=$SECONDS
  mkdir -p "$SVC"
  install_missing
  # A failed start stops whatever it started, so nothing is left running for
  # a caller whose cleanup only runs after a successful start.
  trap 'rc=$?; if [ "$rc" -ne 0 ]; then log "start failed: stopping what was started"; cmd_stop >/dev/null 2>&1 || true; fi' EXIT
  start_kafka_spawn
  start_redis
  start_pg
  wait_kafka
  write_env
  trap - EXIT
  log "started in $((SECONDS - t0))s; environment in $ENVFILE"
}

cmd_stop() {
  stop_one kafka kafka.Kafka
  stop_one redis redis-server
  stop_pg
  rm -f "$ENVFILE"
  log "stopped"
}

cmd_env() {
  [ -f "$ENVFILE" ] || die "not started: run $0 start"
  sed -e 's/^/export /' "$ENVFILE"
}

cmd_status() {
  local ok=0
  if alive redis redis-server && redis_ping "$(cat "$SVC/redis.port" 2>/dev/null || echo 0)"; then
    echo "redis: running on 127.0.0.1:$(cat "$SVC/redis.port")"
  else
    echo "redis: not running"; ok=1
  fi
  if alive kafka kafka.Kafka && kafka_ready "$(cat "$SVC/kafka.port" 2>/dev/null || echo 0)"; then
    echo "kafka: running on 127.0.0.1:$(cat "$SVC/kafka.port")"
  else
    echo "kafka: not running"; ok=1
  fi
  if [ -f "$SVC/pg.port" ] && pg_ready "$(cat "$SVC/pg.port")"; then
    echo "postgres: running on 127.0.0.1:$(cat "$SVC/pg.port")"
  else
    echo "postgres: not running"; ok=1
  fi
  return "$ok"
}

# lock: one start or stop at a time per work tree (two test runs may call
# start together; the second then finds the services running). The servers
# are started with fd 8 closed so they do not inherit the lock.
lock() {
  mkdir -p "$SVC"
  if command -v flock >/dev/null; then
    exec 8>"$SVC/.lock"
    flock -w 300 8 || die "another services.sh start/stop still holds $SVC/.lock after 300s"
  fi
}

case "${1:-}" in
start) lock; cmd_start ;;
stop) lock; cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
*)
  echo "usage: $0 start|stop|env|status" >&2
  exit 2
  ;;
esac
