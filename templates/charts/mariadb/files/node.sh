#!/bin/bash
# node.sh — one MariaDB node of paasgen's replicated MariaDB, run in the MariaDB
# container with nothing but MariaDB's own programs (mariadbd, mariadb,
# mariadb-install-db, mariadb-backup, mbstream) and bash: the same on the official image
# and on the one the lab builds from Debian's packages. No image entrypoint is used.
#
# The node does what it is told in $ROLE_DIR/desired, written by whoever elects the
# primary (the chart's elector):
#   primary                this node takes writes (read_only off, semi-sync master on)
#   replica HOST [PORT]    this node replicates from HOST by GTID (read_only on,
#                          semi-sync replica on)
#   fenced                 a primary that may no longer be one (its elector cannot
#                          renew its lease): read_only on, nothing else changed, so
#                          that two primaries never take writes at once
# and reports in $ROLE_DIR/status (KEY=VALUE lines, rewritten whole every second):
#   role, gtid (gtid_current_pos: applied), received (a replica's Gtid_IO_Pos: in its
#   relay log, what a semi-sync primary counted as acknowledged), io/sql (replication
#   threads), read_only, updated (epoch seconds). The elector promotes the replica that
#   received the most.
#
# Commands:
#   run            start mariadbd (initialising a new primary's datadir the first time)
#                  and follow $ROLE_DIR/desired until TERM, which shuts mariadbd down
#                  cleanly
#   backup-stream  (on the primary) a mariadb-backup stream of this node on stdout
#   seed           (on a new node) the stream on stdin becomes this node's datadir,
#                  prepared, with the GTID position it was taken at
#   needs-seed     exit 0 when this node's datadir must come from a primary's stream:
#                  it is empty and another node is primary, or it was retired
#   join           (the pod's seed init container) waits for the elector's word, and
#                  when `needs-seed`, seeds from the Lease holder through
#                  `$KUBECTL exec HOLDER -c mariadb -- node.sh backup-stream`
#   ready          (readiness probe) exit 0 when the status is fresh and the node is the
#                  primary taking writes, or a replica with both threads running
#
# Env: DATADIR (/var/lib/mariadb/data: a retired datadir is kept beside it, so its
#      parent is the volume), RUN_DIR (/run/mysqld), ROLE_DIR (/run/mariadb-role),
#      PORT (3306), SERVER_ID (default: the host name's ordinal + 1), LEASE and KUBECTL
#      (join, and run in a pod: it seeds a retired or empty datadir itself),
#      MARIADB_ROOT_PASSWORD, MARIADB_REPLICATION_PASSWORD, SEMI_SYNC_TIMEOUT_MS (how
#      long the primary waits for a connected replica's ack before it commits without
#      one; with none connected it does not wait; 0 = no semi-sync), MARIADB_ARGS
#      (more mariadbd options, one word each).
set -euo pipefail
# As a container's PID 1, bash ignores TERM unless trapped (`run` sets its own).
trap 'exit 143' TERM INT

DATADIR=${DATADIR:-/var/lib/mariadb/data}
RUN_DIR=${RUN_DIR:-/run/mysqld}
ROLE_DIR=${ROLE_DIR:-/run/mariadb-role}
PORT=${PORT:-3306}
SEMI_SYNC_TIMEOUT_MS=${SEMI_SYNC_TIMEOUT_MS:-30000}
if [ -z "${SERVER_ID:-}" ] && [[ $(hostname) =~ -([0-9]+)$ ]]; then
    SERVER_ID=$((BASH_REMATCH[1] + 1))
fi
SOCKET=$RUN_DIR/mysqld.sock
CLIENT_CNF=$RUN_DIR/client.cnf
# Set by `seed`, read once by `run`: where the seed's data stops in the GTID history.
SEED_GTID_FILE=$DATADIR/paasgen-seed-gtid
# Written when this node becomes primary: if it is later told to follow another node,
# its data may hold writes no replica acknowledged, so it is retired and re-seeded.
WAS_PRIMARY_FILE=$DATADIR/paasgen-was-primary
RETIRED_MARK=paasgen-retired

log() { printf '%s node.sh: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Passwords go into SQL and option files: paasgen generates them from this alphabet,
# and anything else is refused rather than quoted for three languages.
check_secret() {
    local name=$1 value=${!1:-}
    [ -n "$value" ] || die "$name is not set"
    [[ $value =~ ^[A-Za-z0-9._~-]{16,128}$ ]] || die "$name must be 16-128 characters of A-Za-z0-9._~-"
}
check_number() {
    [[ ${!1:-} =~ ^[0-9]+$ ]] || die "$1 must be a number, not '${!1:-}'"
}

check_secret MARIADB_ROOT_PASSWORD
check_secret MARIADB_REPLICATION_PASSWORD
check_number PORT
check_number SEMI_SYNC_TIMEOUT_MS

# Only paasgen's options count: an image's /etc/mysql/my.cnf (Debian's binds to
# 127.0.0.1, for one) is never read.
sql() { mariadb --defaults-file="$CLIENT_CNF" --socket="$SOCKET" -N -B -e "$1"; }

write_client_cnf() {
    mkdir -p "$RUN_DIR"
    (umask 077 && printf '[client]\nuser=root\npassword=%s\n' "$MARIADB_ROOT_PASSWORD" > "$CLIENT_CNF")
}

datadir_is_empty() { [ ! -d "$DATADIR/mysql" ]; }

cmd_needs_seed() {
    [ -e "$DATADIR/$RETIRED_MARK" ] && return 0
    datadir_is_empty || return 1
    read -r desired _ < "$ROLE_DIR/desired" 2>/dev/null || desired=""
    [ "$desired" = replica ]
}

cmd_backup_stream() {
    write_client_cnf
    # --target-dir only holds mariadb-backup's own temporary files here.
    local tmp; tmp=$(mktemp -d)
    mariadb-backup --defaults-file="$CLIENT_CNF" --socket="$SOCKET" --backup \
        --stream=mbstream --target-dir="$tmp" 2> >(sed 's/^/mariadb-backup: /' >&2)
    rm -rf "$tmp"
}

cmd_seed() {
    # A retired datadir is kept beside, never deleted: the old primary's writes that no
    # replica acknowledged are in it.
    if [ -e "$DATADIR/$RETIRED_MARK" ]; then
        local aside
        aside="$DATADIR.retired-$(date -u +%Y%m%dT%H%M%SZ)"
        mkdir -p "$aside"
        find "$DATADIR" -mindepth 1 -maxdepth 1 -exec mv -t "$aside" {} +
        log "retired data kept in $aside"
    fi
    datadir_is_empty || die "$DATADIR holds a database; refusing to seed over it"
    mkdir -p "$DATADIR"
    mbstream -x -C "$DATADIR"
    [ -f "$DATADIR/xtrabackup_checkpoints" ] || die "the stream held no mariadb-backup"
    mariadb-backup --no-defaults --prepare --target-dir="$DATADIR" 2> >(sed 's/^/mariadb-backup: /' >&2)
    local gtid
    # binlog file, offset, GTID position (xtrabackup_binlog_info up to 10.11, renamed in 11)
    gtid=$(cat "$DATADIR/mariadb_backup_binlog_info" "$DATADIR/xtrabackup_binlog_info" 2>/dev/null |
        awk -F'\t' 'NF >= 3 {print $3; exit}' || true)
    [ -n "$gtid" ] || die "the backup did not say its GTID position (xtrabackup_binlog_info)"
    printf '%s\n' "$gtid" > "$SEED_GTID_FILE"
    log "seeded from a backup at GTID $gtid"
}

# The first primary's datadir: system tables, root with its password (over TCP without
# READ_ONLY ADMIN, so that no client writes to a replica; node.sh uses the socket),
# the replication user, no other accounts (install-db also makes root@<host>, 127.0.0.1
# and ::1 without a password). Run with networking off, so no one sees it half made.
initialise() {
    log "initialising a new datadir"
    mariadb-install-db --no-defaults --datadir="$DATADIR" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve "${as_user[@]}" >/dev/null &
    local install=$!
    while kill -0 "$install" 2>/dev/null; do heartbeat initialising; sleep 1; done
    wait "$install" || die "mariadb-install-db failed"
    local init=$RUN_DIR/init.sql
    (umask 077 && cat > "$init" <<SQL
SET sql_log_bin = 1;
ALTER USER 'root'@'localhost' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';
CREATE USER 'root'@'%' IDENTIFIED BY '$MARIADB_ROOT_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'%';
CREATE USER 'replicator'@'%' IDENTIFIED BY '$MARIADB_REPLICATION_PASSWORD';
GRANT REPLICATION SLAVE, SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'replicator'@'%';
DELETE FROM mysql.global_priv WHERE Host NOT IN ('localhost', '%');
DELETE FROM mysql.proxies_priv WHERE Host NOT IN ('localhost', '%');
FLUSH PRIVILEGES;
SQL
    )
    mariadbd --no-defaults "${server_args[@]}" --skip-networking --init-file="$init" &
    local pid=$!
    wait_socket "$pid"
    kill -TERM "$pid"
    wait "$pid" || die "mariadbd failed while initialising"
    rm -f "$init"
}

wait_socket() {
    local pid=$1 i
    for i in $(seq 1 600); do
        kill -0 "$pid" 2>/dev/null || die "mariadbd exited while starting"
        sql 'SELECT 1' >/dev/null 2>&1 && return 0
        [ $((i % 10)) = 0 ] && heartbeat starting
        sleep 0.1
    done
    die "mariadbd did not answer on $SOCKET in 60 s"
}

become_primary() {
    # Everything already received from the old primary is applied first: a write it
    # acknowledged (semi-sync: received here) must not be lost by the promotion.
    if [ -n "$(sql 'SHOW SLAVE STATUS')" ]; then
        sql 'STOP SLAVE IO_THREAD'
        local received
        received=$(slave_field Gtid_IO_Pos)
        if [ -n "$received" ]; then
            local applied
            applied=$(sql "SELECT MASTER_GTID_WAIT('$received', 60)")
            [ "$applied" = 0 ] || die "could not apply the received GTIDs $received in 60 s"
        fi
        sql 'STOP SLAVE; RESET SLAVE ALL'
    fi
    local semi=OFF
    [ "$SEMI_SYNC_TIMEOUT_MS" -gt 0 ] && semi=ON
    # With no replica connected nothing can acknowledge: commit at once rather than
    # hold every client for the timeout (a promoted primary whose peer is the one lost
    # would otherwise add the whole timeout to the outage).
    sql "SET GLOBAL rpl_semi_sync_slave_enabled = OFF;
         SET GLOBAL rpl_semi_sync_master_wait_no_slave = OFF;
         SET GLOBAL rpl_semi_sync_master_timeout = $SEMI_SYNC_TIMEOUT_MS;
         SET GLOBAL rpl_semi_sync_master_enabled = $semi;
         SET GLOBAL read_only = OFF"
    touch "$WAS_PRIMARY_FILE"
    log "primary (semi-sync $semi, waits ${SEMI_SYNC_TIMEOUT_MS} ms for an ack)"
}

slave_field() {
    mariadb --defaults-file="$CLIENT_CNF" --socket="$SOCKET" -E -e 'SHOW SLAVE STATUS' |
        sed -n "s/^ *$1: //p"
}

become_replica() {
    local host=$1 port=$2
    if [ -e "$WAS_PRIMARY_FILE" ]; then
        # It may hold writes the new primary never received: retire it (kept, see
        # cmd_seed) and stop, so that it comes back as a copy of the new primary.
        log "was primary, now told to follow $host: retiring this datadir for a re-seed"
        touch "$DATADIR/$RETIRED_MARK"
        return 3
    fi
    local semi=OFF
    [ "$SEMI_SYNC_TIMEOUT_MS" -gt 0 ] && semi=ON
    sql "SET GLOBAL read_only = ON;
         SET GLOBAL rpl_semi_sync_master_enabled = OFF;
         SET GLOBAL rpl_semi_sync_slave_enabled = $semi;
         STOP SLAVE;
         CHANGE MASTER TO MASTER_HOST = '$host', MASTER_PORT = $port,
           MASTER_USER = 'replicator', MASTER_PASSWORD = '$MARIADB_REPLICATION_PASSWORD',
           MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1,
           MASTER_HEARTBEAT_PERIOD = 1;
         START SLAVE"
    log "replica of $host:$port (semi-sync $semi)"
}

write_status() {
    local role=$1 gtid ro io="" sqlt="" received=""
    gtid=$(sql 'SELECT @@gtid_current_pos') || return 0
    ro=$(sql 'SELECT @@read_only') || return 0
    if [ "$role" = replica ]; then
        io=$(slave_field Slave_IO_Running)
        sqlt=$(slave_field Slave_SQL_Running)
        received=$(slave_field Gtid_IO_Pos)
    fi
    publish_status "$(printf 'role=%s\ngtid=%s\nreceived=%s\nio=%s\nsql=%s\nread_only=%s' \
        "$role" "$gtid" "$received" "$io" "$sqlt" "$ro")"
}

# A status saying only that node.sh is alive and what it is doing before mariadbd
# answers (waiting, initialising, starting), so the elector does not take a slow start
# for a dead node.
heartbeat() { publish_status "role=$1"; }

# The status file, replaced whole (with the time it was written), never seen half made.
publish_status() {
    printf '%s\nupdated=%s\n' "$1" "$(date +%s)" > "$ROLE_DIR/status.tmp"
    mv "$ROLE_DIR/status.tmp" "$ROLE_DIR/status"
}

# Waits, alive to the elector, until it says primary or replica; sets $desired.
wait_for_role() {
    local waited=0
    until read -r desired _ 2>/dev/null < "$ROLE_DIR/desired" &&
        { [ "$desired" = primary ] || [ "$desired" = replica ]; }; do
        [ $((waited % 10)) = 0 ] && log "$1: waiting to be told this node's role"
        heartbeat waiting
        sleep 1
        waited=$((waited + 1))
    done
}

cmd_run() {
    check_number SERVER_ID
    mkdir -p "$RUN_DIR" "$ROLE_DIR" "$DATADIR"
    # A status is about this run only: none until mariadbd answers, none once it stopped.
    rm -f "$ROLE_DIR/status"
    write_client_cnf
    # Names of binlogs and relay logs do not depend on the pod's hostname; every
    # change is in the binlog (replicas too, so any of them can become primary); a
    # node starts read-only and without replicating until told its role.
    server_args=(--datadir="$DATADIR" --socket="$SOCKET" --pid-file="$RUN_DIR/mysqld.pid"
        --port="$PORT" --bind-address=0.0.0.0 --server-id="$SERVER_ID"
        --log-basename=mariadb --log-bin --log-slave-updates --binlog-format=ROW
        --gtid-strict-mode=ON --read-only=ON --skip-slave-start --skip-name-resolve
        --rpl-semi-sync-master-wait-point=AFTER_SYNC
        --innodb-flush-log-at-trx-commit=1 --sync-binlog=1)
    # mariadbd refuses root unless told; a pod runs it as mysql, a test may be root.
    as_user=()
    [ "$(id -u)" = 0 ] && as_user=(--user=root)
    server_args+=("${as_user[@]}")
    # shellcheck disable=SC2206 # one word per option, as documented
    server_args+=(${MARIADB_ARGS:-})
    # In a pod (a LEASE to find the primary by), a datadir retired by this container's
    # last run, or emptied, is seeded here: a restarted container does not run the
    # pod's seed init container again.
    if [ -n "${LEASE:-}" ] && { [ -e "$DATADIR/$RETIRED_MARK" ] || datadir_is_empty; }; then
        cmd_join
    fi
    [ -e "$DATADIR/$RETIRED_MARK" ] && die "this datadir was retired; it must be re-seeded first"
    if datadir_is_empty; then
        # Only a primary makes a new database; the elector says which this is.
        local desired=""
        wait_for_role "empty datadir"
        [ "$desired" = primary ] ||
            die "empty datadir and told '$desired': seed it from the primary first"
        initialise
    fi
    mariadbd --no-defaults "${server_args[@]}" &
    local pid=$!
    trap 'log "TERM: shutting mariadbd down"; rm -f "$ROLE_DIR/status"; kill -TERM "$pid"; wait "$pid"; exit 0' TERM INT
    wait_socket "$pid"
    if [ -f "$SEED_GTID_FILE" ]; then
        sql "SET GLOBAL gtid_slave_pos = '$(cat "$SEED_GTID_FILE")'"
        rm -f "$SEED_GTID_FILE"
    fi
    local applied="" desired host dport role=none
    while kill -0 "$pid" 2>/dev/null; do
        desired=$(cat "$ROLE_DIR/desired" 2>/dev/null || true)
        if [ "$desired" != "$applied" ]; then
            read -r role host dport <<<"$desired" || true
            case $role in
                primary) become_primary ;;
                replica)
                    [ -n "${host:-}" ] || die "desired '$desired' names no host"
                    dport=${dport:-3306}
                    check_number dport
                    [[ $host =~ ^[A-Za-z0-9.-]+$ ]] || die "desired host '$host' is not a host name"
                    if ! become_replica "$host" "$dport"; then
                        write_status retired || true
                        kill -TERM "$pid"; wait "$pid" || true
                        exit 3
                    fi ;;
                fenced)
                    sql 'SET GLOBAL read_only = ON'
                    log "fenced: read-only until told its role" ;;
                "") role=none ;;
                *) die "desired role '$desired' is not primary, replica or fenced" ;;
            esac
            applied=$desired
        fi
        write_status "$role" || true
        sleep 1 &
        wait $! || true
    done
    wait "$pid"
}

cmd_join() {
    # A datadir in use needs no seed, whatever the role; an empty one waits for it.
    if [ ! -e "$DATADIR/$RETIRED_MARK" ] && ! datadir_is_empty; then
        return 0
    fi
    mkdir -p "$ROLE_DIR"
    local desired=""
    wait_for_role join
    cmd_needs_seed || { log "no seed needed (told: $desired)"; return 0; }
    local kubectl holder
    read -r -a kubectl <<<"${KUBECTL:-kubectl}"
    # timeout(1), not --request-timeout: that makes kubectl skip the in-cluster config.
    holder=$(timeout 20 "${kubectl[@]}" get lease "${LEASE:?LEASE is not set}" \
        -o jsonpath='{.spec.holderIdentity}')
    [ -n "$holder" ] && [ "$holder" != "$(hostname)" ] || die "no primary to seed from (lease holder '$holder')"
    log "seeding from $holder"
    "${kubectl[@]}" exec "$holder" -c mariadb -- bash "$0" backup-stream | cmd_seed
}

cmd_ready() {
    local now updated role
    now=$(date +%s)
    updated=$(sed -n 's/^updated=//p' "$ROLE_DIR/status" 2>/dev/null || true)
    [[ $updated =~ ^[0-9]+$ ]] && [ $((now - updated)) -le 5 ] || return 1
    role=$(sed -n 's/^role=//p' "$ROLE_DIR/status")
    case $role in
        primary) grep -qx 'read_only=0' "$ROLE_DIR/status" ;;
        replica) grep -qx 'io=Yes' "$ROLE_DIR/status" && grep -qx 'sql=Yes' "$ROLE_DIR/status" ;;
        *) return 1 ;;
    esac
}

case ${1:-} in
    run) cmd_run ;;
    join) cmd_join ;;
    ready) cmd_ready ;;
    backup-stream) cmd_backup_stream ;;
    seed) cmd_seed ;;
    needs-seed) cmd_needs_seed ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
