#!/usr/bin/env bash
# Brings up, on 127.0.0.1, the topology Tidings runs on in production: a
# 3-node NATS cluster with JetStream (R3 streams, sync_interval: always), a
# Redis Cluster of 3 primaries and 3 replicas, N workers and M API processes.
# Everything it starts keeps its data, log and pid file under one directory,
# and `down` stops exactly the processes whose pids it recorded.
#
#   cluster.sh up               start what is not running, wait until healthy, print where
#   cluster.sh down             stop every process it started (SIGTERM, then SIGKILL)
#   cluster.sh status           what runs where, and whether it is healthy
#   cluster.sh start NAME       start one process (nats-2, redis-5, worker-1, api-2, ...)
#   cluster.sh stop NAME        stop one process gracefully
#   cluster.sh names            list the process names
#
# Settings (environment):
#   CLUSTER_DIR        data, logs and pids             (default .data/cluster)
#   CLUSTER_BASE_PORT  first port of a block of 100    (default 7700)
#   CLUSTER_WORKERS    worker processes, 1..9          (default 2)
#   CLUSTER_APIS       API processes, 1..9             (default 2)
#   CLUSTER_ACK_WAIT   the workers' --ack-wait         (default 10s)
#   CLUSTER_STRICT_START=1  fail, rather than start again, a Tidings
#                      process that exits while all start together
#   TIDINGS_BIN        the tidings binary              (default bin/tidings)
#   NATS_BIN           nats-server, built from go.mod  (default bin/nats-server)
#
# Ports, from the base B: NATS clients B+1..3, routes B+11..13, monitoring
# B+21..23; Redis B+31..36 with cluster bus B+41..46; API gRPC B+51.., API
# HTTP (JSON API, /healthz, /livez) B+61..; worker HTTP (/healthz, /livez)
# B+71..; API debug (/metrics, /debug/pprof, /healthz, /livez) B+81..;
# worker debug B+91... Every Tidings process gets its own address for each
# listener it opens: the binary's defaults (gRPC 7400, HTTP 7401, debug
# 7402) would collide from the second process on.
set -euo pipefail

cd "$(dirname "$0")/../.."

DIR=${CLUSTER_DIR:-.data/cluster}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
BASE=${CLUSTER_BASE_PORT:-7700}
WORKERS=${CLUSTER_WORKERS:-2}
APIS=${CLUSTER_APIS:-2}
ACK_WAIT=${CLUSTER_ACK_WAIT:-10s}
TIDINGS_BIN=$(realpath -m "${TIDINGS_BIN:-bin/tidings}")
NATS_BIN=$(realpath -m "${NATS_BIN:-bin/nats-server}")
HOST=127.0.0.1

die() { echo "cluster: $*" >&2; exit 1; }
log() { echo "cluster: $*" >&2; }

if ! [[ $BASE =~ ^[0-9]+$ ]] || ((BASE < 1024 || BASE > 65435)); then die "CLUSTER_BASE_PORT must be 1024..65435"; fi
[[ $WORKERS =~ ^[1-9]$ ]] || die "CLUSTER_WORKERS must be 1..9"
[[ $APIS =~ ^[1-9]$ ]] || die "CLUSTER_APIS must be 1..9"

nats_port() { echo $((BASE + $1)); }
route_port() { echo $((BASE + 10 + $1)); }
mon_port() { echo $((BASE + 20 + $1)); }
redis_port() { echo $((BASE + 30 + $1)); }
bus_port() { echo $((BASE + 40 + $1)); }
api_grpc_port() { echo $((BASE + 50 + $1)); }
api_http_port() { echo $((BASE + 60 + $1)); }
worker_http_port() { echo $((BASE + 70 + $1)); }
api_debug_port() { echo $((BASE + 80 + $1)); }
worker_debug_port() { echo $((BASE + 90 + $1)); }

join() { local IFS=,; echo "$*"; }
nats_urls() { local u=(); for i in 1 2 3; do u+=("nats://$HOST:$(nats_port "$i")"); done; join "${u[@]}"; }
redis_addrs() { local a=(); for i in 1 2 3 4 5 6; do a+=("$HOST:$(redis_port "$i")"); done; join "${a[@]}"; }

names() {
  local n=()
  for i in 1 2 3; do n+=("nats-$i"); done
  for i in 1 2 3 4 5 6; do n+=("redis-$i"); done
  for ((i = 1; i <= WORKERS; i++)); do n+=("worker-$i"); done
  for ((i = 1; i <= APIS; i++)); do n+=("api-$i"); done
  echo "${n[@]}"
}

pidfile() { echo "$DIR/run/$1.pid"; }
logfile() { echo "$DIR/logs/$1.log"; }

# binary_of prints the program a named process runs, to tell our process
# from another that reuses its pid.
binary_of() {
  case $1 in
    nats-*) echo "$NATS_BIN" ;;
    redis-*) echo redis-server ;;
    *) echo "$TIDINGS_BIN" ;;
  esac
}

# pid_of prints the pid of a named process if it is running and is ours.
pid_of() {
  local f pid exe
  f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  exe=$(binary_of "$1")
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(basename "$exe")" || return 1
  echo "$pid"
}

write_env() {
  local api_grpc=() api_http=() api_debug=() worker_http=() worker_debug=() mon=()
  for ((i = 1; i <= APIS; i++)); do
    api_grpc+=("$HOST:$(api_grpc_port "$i")")
    api_http+=("$HOST:$(api_http_port "$i")")
    api_debug+=("$HOST:$(api_debug_port "$i")")
  done
  for ((i = 1; i <= WORKERS; i++)); do
    worker_http+=("$HOST:$(worker_http_port "$i")")
    worker_debug+=("$HOST:$(worker_debug_port "$i")")
  done
  for i in 1 2 3; do mon+=("http://$HOST:$(mon_port "$i")"); done
  cat >"$DIR/cluster.env" <<EOF
# Written by deploy/local-cluster/cluster.sh: what runs where.
CLUSTER_DIR=$DIR
CLUSTER_BASE_PORT=$BASE
CLUSTER_WORKERS=$WORKERS
CLUSTER_APIS=$APIS
CLUSTER_ACK_WAIT=$ACK_WAIT
NATS_URLS=$(nats_urls)
NATS_MONITOR=$(join "${mon[@]}")
REDIS_ADDRS=$(redis_addrs)
API_GRPC=$(join "${api_grpc[@]}")
API_HTTP=$(join "${api_http[@]}")
WORKER_HTTP=$(join "${worker_http[@]}")
API_DEBUG=$(join "${api_debug[@]}")
WORKER_DEBUG=$(join "${worker_debug[@]}")
AUTH_SECRET_FILE=$DIR/auth.secret
EOF
}

ensure_secret() {
  local f=$DIR/auth.secret
  if [[ ! -s $f ]]; then
    (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$f" && echo >>"$f")
  fi
}

nats_conf() {
  local i=$1 routes=()
  for j in 1 2 3; do routes+=("nats-route://$HOST:$(route_port "$j")"); done
  mkdir -p "$DIR/nats/nats-$i"
  cat >"$DIR/nats/nats-$i.conf" <<EOF
server_name: n$i
listen: $HOST:$(nats_port "$i")
http: $HOST:$(mon_port "$i")
jetstream {
  store_dir: "$DIR/nats/nats-$i"
  # fsync every write before acknowledging it: the lazy default can lose
  # acknowledged writes when several nodes crash together.
  sync_interval: always
  max_memory_store: 256MB
  max_file_store: 8GB
}
cluster {
  name: tidings-local
  listen: $HOST:$(route_port "$i")
  routes: [$(join "${routes[@]}")]
}
EOF
}

redis_conf() {
  local i=$1
  mkdir -p "$DIR/redis/redis-$i"
  cat >"$DIR/redis/redis-$i.conf" <<EOF
bind $HOST
port $(redis_port "$i")
cluster-enabled yes
cluster-port $(bus_port "$i")
cluster-config-file nodes.conf
cluster-node-timeout 5000
dir $DIR/redis/redis-$i
# RDB snapshots only (saved at shutdown and every 5 minutes with a change):
# Redis holds projections that the log rebuilds, and the fault suite swaps an
# older dump.rdb in to play a restore from backup.
appendonly no
save 300 1
dbfilename dump.rdb
daemonize no
EOF
}

# tidings_env sets TENV to the configuration every Tidings process shares,
# as the TIDINGS_* environment a container would get.
tidings_env() {
  TENV=(
    TIDINGS_NATS_URL="$(nats_urls)"
    TIDINGS_REDIS_ADDR="$(redis_addrs)"
    TIDINGS_STREAM_REPLICAS=3
    TIDINGS_AUTH_SECRET_FILE="$DIR/auth.secret"
    TIDINGS_ACK_WAIT="$ACK_WAIT"
    TIDINGS_LOG_FORMAT=json
  )
}

# start_one starts a named process in its own session, so that it outlives
# this script and a Ctrl-C in the terminal, and records its pid.
start_one() {
  local name=$1 i=${1##*-} cmd
  if pid_of "$name" >/dev/null; then
    return 0
  fi
  mkdir -p "$DIR/run" "$DIR/logs"
  case $name in
    nats-[1-3])
      [[ -x $NATS_BIN ]] || die "no $NATS_BIN: run make cluster-up (it builds nats-server from go.mod)"
      nats_conf "$i"
      cmd=("$NATS_BIN" -c "$DIR/nats/nats-$i.conf") ;;
    redis-[1-6])
      command -v redis-server >/dev/null || die "no redis-server: run deploy/scripts/ensure-redis.sh"
      redis_conf "$i"
      cmd=(redis-server "$DIR/redis/redis-$i.conf") ;;
    worker-*)
      ((i >= 1 && i <= WORKERS)) || die "no $name: CLUSTER_WORKERS=$WORKERS"
      [[ -x $TIDINGS_BIN ]] || die "no $TIDINGS_BIN: run make build"
      tidings_env
      cmd=(env "${TENV[@]}" "$TIDINGS_BIN" worker --http-addr "$HOST:$(worker_http_port "$i")" --debug-addr "$HOST:$(worker_debug_port "$i")") ;;
    api-*)
      ((i >= 1 && i <= APIS)) || die "no $name: CLUSTER_APIS=$APIS"
      [[ -x $TIDINGS_BIN ]] || die "no $TIDINGS_BIN: run make build"
      tidings_env
      cmd=(env "${TENV[@]}" "$TIDINGS_BIN" serve api --grpc-addr "$HOST:$(api_grpc_port "$i")" --http-addr "$HOST:$(api_http_port "$i")" --debug-addr "$HOST:$(api_debug_port "$i")") ;;
    *) die "unknown process $name (see: cluster.sh names)" ;;
  esac
  echo "--- $(date -u +%FT%TZ) start: ${cmd[*]}" >>"$(logfile "$name")"
  setsid "${cmd[@]}" >>"$(logfile "$name")" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# stop_one stops a named process: SIGTERM, then SIGKILL after 20 s.
stop_one() {
  local name=$1 pid
  pid=$(pid_of "$name") || { rm -f "$(pidfile "$name")"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 200); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name ($pid) did not stop in 20s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$(pidfile "$name")"
}

# wait_for polls a check until it passes or the time runs out.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { log "$what: not ready after ${secs}s"; return 1; }
    sleep 0.5
  done
}

nats_healthy() { curl -fsS "http://$HOST:$(mon_port "$1")/healthz" 2>/dev/null | grep -q ok; }
redis_up() { redis-cli -p "$(redis_port "$1")" ping | grep -q PONG; }
redis_cluster_ok() { redis-cli -p "$(redis_port "$1")" cluster info | grep -q 'cluster_state:ok'; }
redis_cluster_formed() { redis-cli -p "$(redis_port "$1")" cluster info | grep -q 'cluster_known_nodes:6'; }
http_port_of() {
  case $1 in
    api-*) api_http_port "${1##*-}" ;;
    worker-*) worker_http_port "${1##*-}" ;;
  esac
}
debug_port_of() {
  case $1 in
    api-*) api_debug_port "${1##*-}" ;;
    worker-*) worker_debug_port "${1##*-}" ;;
  esac
}
http_healthy() { curl -fsS "http://$HOST:$1/healthz" 2>/dev/null | grep -q ok; }
# debug_ok: the debug listener answers /livez and serves Prometheus metrics.
# grep reads all of /metrics (no -q): with pipefail, a grep that quits at the
# first match fails the pipeline through curl's SIGPIPE.
debug_ok() {
  curl -fsS "http://$HOST:$1/livez" 2>/dev/null | grep -q ok &&
    curl -fsS "http://$HOST:$1/metrics" 2>/dev/null | grep '^go_goroutines ' >/dev/null
}
# tidings_healthy: ready on the HTTP listener, metrics on the debug one.
tidings_healthy() { http_healthy "$(http_port_of "$1")" && debug_ok "$(debug_port_of "$1")"; }

check_alive() {
  local name=$1
  pid_of "$name" >/dev/null || { log "$name exited; the end of $(logfile "$name"):"; tail -n 20 "$(logfile "$name")" >&2; return 1; }
}

up() {
  ensure_secret
  write_env
  for i in 1 2 3; do start_one "nats-$i"; done
  for i in 1 2 3 4 5 6; do start_one "redis-$i"; done
  for i in 1 2 3; do
    check_alive "nats-$i"
    wait_for "nats-$i" 60 nats_healthy "$i"
  done
  for i in 1 2 3 4 5 6; do
    check_alive "redis-$i"
    wait_for "redis-$i" 30 redis_up "$i"
  done
  if ! redis_cluster_formed 1; then
    log "creating the Redis Cluster (3 primaries, 3 replicas)"
    local addrs=()
    for i in 1 2 3 4 5 6; do addrs+=("$HOST:$(redis_port "$i")"); done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/logs/redis-cluster-create.log" 2>&1 ||
      { cat "$DIR/logs/redis-cluster-create.log" >&2; die "redis-cli --cluster create failed"; }
  fi
  for i in 1 2 3 4 5 6; do wait_for "redis-$i cluster state" 60 redis_cluster_ok "$i"; done

  # Every Tidings process starts at once, as a deployment's replicas do;
  # each ensures the streams and consumers. One that exits while starting
  # is started again, as a supervisor (Kubernetes, systemd) would, and said.
  local tidings=() restarts=0 deadline=$((SECONDS + 180)) pending
  for ((i = 1; i <= APIS; i++)); do tidings+=("api-$i"); done
  for ((i = 1; i <= WORKERS; i++)); do tidings+=("worker-$i"); done
  for name in "${tidings[@]}"; do start_one "$name"; done
  while :; do
    pending=0
    for name in "${tidings[@]}"; do
      if ! pid_of "$name" >/dev/null; then
        if [[ ${CLUSTER_STRICT_START:-} == 1 ]]; then
          die "$name exited while starting: $(grep -v '^---' "$(logfile "$name")" | tail -n 1) (CLUSTER_STRICT_START=1)"
        fi
        log "$name exited while starting: $(grep -v '^---' "$(logfile "$name")" | tail -n 1); starting it again"
        restarts=$((restarts + 1))
        start_one "$name"
        pending=1
      elif ! tidings_healthy "$name"; then
        pending=1
      fi
    done
    ((pending)) || break
    ((SECONDS < deadline)) || die "Tidings processes not healthy after 180s (logs in $DIR/logs)"
    sleep 0.5
  done
  echo "$restarts" >"$DIR/run/startup-restarts"
  mint_cli_token
  status
}

# mint_cli_token writes an admin token where the CLI looks for one
# (--data-dir), so the README tour runs against the cluster as it is.
mint_cli_token() {
  (umask 077 && "$TIDINGS_BIN" token cluster-admin --kind admin --ttl 720h --auth-secret-file "$DIR/auth.secret" >"$DIR/cli.token")
}

down() {
  local n
  n=$(names)
  # Stop in the reverse order of start: clients first, then the servers.
  for name in $(echo "$n" | tr ' ' '\n' | tac); do
    if pid_of "$name" >/dev/null; then
      log "stopping $name"
      stop_one "$name"
    else
      rm -f "$(pidfile "$name")"
    fi
  done
  # Pid files of processes beyond today's counts (CLUSTER_WORKERS lowered).
  shopt -s nullglob
  for f in "$DIR"/run/*.pid; do
    local extra
    extra=$(basename "$f" .pid)
    if pid_of "$extra" >/dev/null; then log "stopping $extra"; fi
    stop_one "$extra"
  done
  log "stopped; data kept in $DIR (rm -rf it for a fresh cluster)"
}

status() {
  local bad=0 state
  printf '\nTidings local cluster (data, logs, pids under %s)\n\n' "$DIR"
  printf '  %-10s %-8s %-34s %s\n' PROCESS PID ADDRESS STATE
  row() { printf '  %-10s %-8s %-34s %s\n' "$@"; }
  for i in 1 2 3; do
    state=down; pid_of "nats-$i" >/dev/null && { nats_healthy "$i" && state=healthy || state=unhealthy; }
    [[ $state == healthy ]] || bad=1
    row "nats-$i" "$(pid_of "nats-$i" || echo -)" "nats://$HOST:$(nats_port "$i")" "$state (monitor :$(mon_port "$i"))"
  done
  for i in 1 2 3 4 5 6; do
    state=down
    if pid_of "redis-$i" >/dev/null && redis_up "$i"; then
      state=$(redis-cli -p "$(redis_port "$i")" role | head -1)
      if redis_cluster_ok "$i"; then state="$state, cluster ok"; else state="$state, cluster not ok"; bad=1; fi
    else
      bad=1
    fi
    row "redis-$i" "$(pid_of "redis-$i" || echo -)" "$HOST:$(redis_port "$i")" "$state"
  done
  for ((i = 1; i <= APIS; i++)); do
    state=down; pid_of "api-$i" >/dev/null && { tidings_healthy "api-$i" && state=healthy || state=unhealthy; }
    [[ $state == healthy ]] || bad=1
    row "api-$i" "$(pid_of "api-$i" || echo -)" "grpc $HOST:$(api_grpc_port "$i")" "$state (http :$(api_http_port "$i"), debug :$(api_debug_port "$i"))"
  done
  for ((i = 1; i <= WORKERS; i++)); do
    state=down; pid_of "worker-$i" >/dev/null && { tidings_healthy "worker-$i" && state=healthy || state=unhealthy; }
    [[ $state == healthy ]] || bad=1
    row "worker-$i" "$(pid_of "worker-$i" || echo -)" "http $HOST:$(worker_http_port "$i")" "$state (debug :$(worker_debug_port "$i"))"
  done
  local replicas
  replicas=$(curl -fsS "http://$HOST:$(mon_port 1)/jsz?streams=true&config=true" 2>/dev/null | grep -o '"num_replicas": *[0-9]*' | grep -o '[0-9]*$' | sort | uniq -c | awk '{printf "%s%d stream(s) R%d", sep, $1, $2; sep=", "}')
  printf '\n  JetStream: %s; sync_interval: always\n' "${replicas:-unknown}"
  local restarts
  restarts=$(cat "$DIR/run/startup-restarts" 2>/dev/null || echo 0)
  if ((restarts > 0)); then
    printf '  Start-up: %d Tidings process(es) exited while starting together and were started again\n' "$restarts"
  fi
  cat <<EOF

  Try the README tour against it (the CLI takes the admin token in the data dir):
    export TIDINGS_ADDR=$HOST:$(api_grpc_port 1) TIDINGS_DATA_DIR=$DIR
    $TIDINGS_BIN profile upsert ana --name "Ana Lima"
  Logs: $DIR/logs/   Settings: $DIR/cluster.env   Stop: make cluster-down

EOF
  return $bad
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  start) [[ $# -eq 2 ]] || die "usage: cluster.sh start NAME"; ensure_secret; write_env; start_one "$2" ;;
  stop) [[ $# -eq 2 ]] || die "usage: cluster.sh stop NAME"; stop_one "$2" ;;
  names) names ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac
