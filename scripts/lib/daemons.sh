# scripts/lib/daemons.sh — what scripts/openstack-lab and scripts/swift-lab share: their
# daemons' pid files, start, readiness waits and messages. Sourced, not run. The script
# sets, before sourcing:
#   LOG_TAG   its name in messages ("openstack-lab")
#   D         its state dir; every daemon's command line names a path under it
#   LOG_EXT   the daemon's output file: $D/log/NAME.$LOG_EXT
#   PORT      an associative array: daemon name -> TCP port (0: none)
# and defines fail_service NAME MESSAGE (the logs worth showing differ, then die).

log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

pidfile() { echo "$D/run/$1.pid"; }

# A daemon is ours when its pid file names a live process whose command line mentions
# the state dir, or (a daemon that re-executes itself) whose environment carries
# OWNER_ENV=$D when the script names such a variable.
svc_pid() {
  local f pid; f=$(pidfile "$1")
  [[ -f $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/cmdline ]] || return 1
  if tr '\0' '\n' </proc/"$pid"/cmdline | grep -qF -- "$D/" ||
     { [[ -n ${OWNER_ENV:-} ]] &&
       tr '\0' '\n' 2>/dev/null </proc/"$pid"/environ | grep -qxF -- "$OWNER_ENV=$D"; }; then
    echo "$pid"; return 0
  fi
  return 1
}
svc_running() { svc_pid "$1" >/dev/null; }

port_listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

check_port_free() { # NAME PORT: dies when PORT is taken by a process that is not ours
  [[ $2 != 0 ]] || return 0
  if port_listening "$2"; then
    log "port 127.0.0.1:$2 needed by $1 is taken by a process that is not ours:"
    ss -Hltnp "sport = :$2" >&2 || true
    die "free port $2 (or stop that process) and re-run"
  fi
}

tail_log() { # FILE [LINES]: its last lines to stderr, if it exists
  if [[ -f $1 ]]; then
    log "---- last lines of $1 ----"
    tail -n "${2:-40}" "$1" >&2
    log "---- end of $1 ----"
  fi
}

# start_daemon NAME CMD...: CMD in its own session (setsid: its pid is also its process
# group's, so a stop ends its workers too), output to $D/log/NAME.$LOG_EXT.
start_daemon() {
  local name=$1; shift
  if svc_running "$name"; then
    log "$name already running (pid $(svc_pid "$name"))"
    return 0
  fi
  check_port_free "$name" "${PORT[$name]:-0}"
  log "starting $name"
  setsid "$@" >>"$D/log/$name.$LOG_EXT" 2>&1 </dev/null 9>&- &
  echo $! >"$(pidfile "$name")"
  exec_done $!
}

# exec_done PID: returns once the child PID runs its own program (or has exited). Until
# its exec, /proc shows this script's command line, and svc_pid would call the daemon
# dead: under load that window lasted long enough to fail a start.
exec_done() {
  local self; self=$(tr '\0' ' ' </proc/$$/cmdline)
  while [[ $(tr '\0' ' ' 2>/dev/null </proc/"$1"/cmdline) == "$self" ]]; do sleep 0.02; done
}

# wait_for NAME WHAT SECONDS CMD...: until CMD succeeds; fail_service NAME if the daemon
# exits meanwhile or SECONDS pass.
wait_for() {
  local name=$1 what=$2 timeout=$3 t0=$SECONDS; shift 3
  until "$@" >/dev/null 2>&1; do
    svc_running "$name" || fail_service "$name" "process exited while waiting for: $what"
    (( SECONDS - t0 <= timeout )) ||
      fail_service "$name" "timed out after ${timeout}s waiting for: $what"
    sleep 0.2
  done
}
