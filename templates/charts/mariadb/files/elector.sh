#!/bin/bash
# elector.sh — decides which MariaDB node is primary, beside node.sh in every pod of
# paasgen's replicated MariaDB (see ../README.md). Needs bash, coreutils and kubectl (the
# kubectl image has them); reaches the API with the pod's service account.
#
# Every $INTERVAL seconds it
#   - publishes its node's status (node.sh's $ROLE_DIR/status) and address on its own
#     pod (annotation paasgen.io/mariadb), for the other electors;
#   - reads the Lease $LEASE: the holder is primary. The holder renews it while its node
#     is primary, and fences its node (read-only) when it could not renew for
#     $FENCE_SECONDS, before anyone may take it over ($LEASE_SECONDS). Any other pod
#     follows the holder. An expired lease goes to the pod whose node received the most
#     of the old primary's history (semi-sync: it has every acknowledged write), the
#     lowest ordinal on a tie; a missing lease to ordinal 0 (a new database). Every
#     write to the Lease carries the resourceVersion read, so only one pod wins.
#   - labels its pod paasgen.io/mariadb-role=primary|replica once the node reports that
#     role (the Services select on it), and removes the label otherwise; removes it from
#     any pod whose elector stopped publishing (a machine gone is out of the Services in
#     seconds, not when the node controller marks its pods unready).
#
# Env: POD_NAME, NAMESPACE, POD_IP, PORT (3306), ROLE_DIR (/run/mariadb-role), LEASE
#      (mariadb-primary), LEASE_SECONDS (15), FENCE_SECONDS (10), INTERVAL (2),
#      KUBECTL (kubectl; more words for its options, e.g. a kubeconfig).
set -euo pipefail
# As a container's PID 1, bash ignores TERM unless trapped: a pod being deleted
# would wait out its grace period.
trap 'exit 0' TERM INT

PORT=${PORT:-3306}
ROLE_DIR=${ROLE_DIR:-/run/mariadb-role}
LEASE=${LEASE:-mariadb-primary}
LEASE_SECONDS=${LEASE_SECONDS:-15}
FENCE_SECONDS=${FENCE_SECONDS:-10}
INTERVAL=${INTERVAL:-2}
read -r -a kubectl <<<"${KUBECTL:-kubectl}"
ANNOTATION=paasgen.io/mariadb
LABEL=paasgen.io/mariadb-role

log() { printf '%s elector: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
for v in POD_NAME NAMESPACE POD_IP; do [ -n "${!v:-}" ] || die "$v is not set"; done
for v in PORT LEASE_SECONDS FENCE_SECONDS INTERVAL; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number"
done
[ "$FENCE_SECONDS" -lt "$LEASE_SECONDS" ] || die "FENCE_SECONDS must be under LEASE_SECONDS"
[[ $POD_NAME =~ -([0-9]+)$ ]] || die "POD_NAME $POD_NAME does not end in an ordinal"
ORDINAL=${BASH_REMATCH[1]}

# Bounded by timeout(1): kubectl's own --request-timeout makes it skip the in-cluster
# config (the service account) and dial localhost:8080.
k() { timeout 10 "${kubectl[@]}" -n "$NAMESPACE" "$@"; }

# status KEY: from node.sh's status file ("" when absent)
status() { sed -n "s/^$1=//p" "$ROLE_DIR/status" 2>/dev/null | head -1 || true; }
# seq GTID-LIST: the sequence number of domain 0 ("0-2-41,1-5-3" -> 41; none -> 0)
seq_of() {
    local g
    for g in ${1//,/ }; do
        [[ $g =~ ^0-[0-9]+-([0-9]+)$ ]] && { echo "${BASH_REMATCH[1]}"; return; }
    done
    echo 0
}
desire() {
    [ "$(cat "$ROLE_DIR/desired" 2>/dev/null)" = "$1" ] && return 0
    printf '%s\n' "$1" > "$ROLE_DIR/desired.tmp"
    mv "$ROLE_DIR/desired.tmp" "$ROLE_DIR/desired"
    log "desired: $1"
}
micro_now() { date -u +%Y-%m-%dT%H:%M:%S.%6NZ; }

# write_lease VERB RESOURCE-VERSION ACQUIRE-TIME TRANSITIONS: this pod as holder
write_lease() {
    local rv_line=""
    [ -n "$2" ] && rv_line="  resourceVersion: \"$2\""
    k "$1" -f - >/dev/null 2>&1 <<YAML
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: $LEASE
  namespace: $NAMESPACE
$rv_line
spec:
  holderIdentity: $POD_NAME
  leaseDurationSeconds: $LEASE_SECONDS
  acquireTime: "$3"
  renewTime: "$(micro_now)"
  leaseTransitions: $4
YAML
}

# The database's pods, one line each: name|role label|annotation ("role received
# updated address" as each elector publishes it). Read once per round. ('|', not a tab:
# read collapses runs of a whitespace IFS, and an empty label would shift the fields.)
list_pods() {
    k get pods -l "$SELECTOR" -o jsonpath="{range .items[*]}{.metadata.name}|{.metadata.labels.paasgen\.io/mariadb-role}|{.metadata.annotations.paasgen\.io/mariadb}{\"\n\"}{end}"
}

# Whether this node received at least as much as every other pod that reports fresh
# (ties: the lowest ordinal).
most_advanced() {
    local mine=$1 name label value role received updated address ord theirs
    while IFS='|' read -r name label value; do
        [ -n "$name" ] && [ "$name" != "$POD_NAME" ] || continue
        read -r role received updated address <<<"$value" || true
        fresh_note "${updated:-}" || continue
        case $role in primary | replica | fenced) ;; *) continue ;; esac
        theirs=$(seq_of "$received")
        ord=${name##*-}
        if [ "$theirs" -gt "$mine" ] || { [ "$theirs" -eq "$mine" ] && [ "$ord" -lt "$ORDINAL" ]; }; then
            return 1
        fi
    done <<<"$pods"
    return 0
}

# Whether this node is up with its data (not waiting, initialising or starting).
has_data_role() { case $role in primary | replica | fenced) return 0 ;; esac; return 1; }

# Whether any other pod ever published a GTID position (fresh or not).
someone_has_data() {
    local name label value received
    while IFS='|' read -r name label value; do
        [ -n "$name" ] && [ "$name" != "$POD_NAME" ] || continue
        read -r _ received _ _ <<<"$value" || true
        [ "$(seq_of "${received:-}")" = 0 ] || return 0
    done <<<"$pods"
    return 1
}

# A published note is fresh when its node reported within three rounds (the clocks of a
# cluster's nodes are synchronised; a few seconds of skew are allowed for).
fresh_note() { [[ $1 =~ ^[0-9]+$ ]] && [ $((now - $1)) -le $((3 * INTERVAL + 5)) ]; }

# A pod whose elector stopped publishing (its machine is gone) leaves the Services at
# once, not after the node controller marks it unready a minute later.
unlabel_silent_pods() {
    local name label value updated
    while IFS='|' read -r name label value; do
        [ -n "$name" ] && [ "$name" != "$POD_NAME" ] && [ -n "$label" ] || continue
        read -r _ _ updated _ <<<"$value" || true
        fresh_note "${updated:-}" && continue
        k label pod "$name" "$LABEL-" >/dev/null 2>&1 &&
            log "$name stopped reporting: removed from the $label Service (last: $value)"
    done <<<"$pods"
}

[ -n "${SELECTOR:-}" ] || die "SELECTOR (the label selector of this database's pods) is not set"
last_renew=0
published=""
while true; do
    now=$(date +%s)
    role=$(status role)
    updated=$(status updated)
    [[ $updated =~ ^[0-9]+$ ]] || updated=0
    fresh=0
    [ $((now - updated)) -le 5 ] && fresh=1
    received=$(status received)
    [ "$role" = primary ] && received=$(status gtid)
    desired=$(cat "$ROLE_DIR/desired" 2>/dev/null || true)

    # what the others read about this node
    note="${role:-none} ${received:-none} $updated $POD_IP:$PORT"
    if [ "$note" != "$published" ] && k annotate pod "$POD_NAME" --overwrite "$ANNOTATION=$note" >/dev/null; then
        published=$note
    fi

    # holder, renewTime, resourceVersion, acquireTime, leaseTransitions; "" when there is
    # no lease; a failure (API unreachable) decides nothing except fencing
    if ! lease=$(k get lease "$LEASE" --ignore-not-found -o jsonpath='{.spec.holderIdentity}|{.spec.renewTime}|{.metadata.resourceVersion}|{.spec.acquireTime}|{.spec.leaseTransitions}'); then
        if [ "$desired" = primary ] && [ $((now - last_renew)) -ge "$FENCE_SECONDS" ]; then
            log "cannot read the lease for $((now - last_renew)) s"
            desire fenced
        fi
        sleep "$INTERVAL"
        continue
    fi
    IFS='|' read -r holder renew rv acquired transitions <<<"$lease" || true
    pods=$(list_pods) || { sleep "$INTERVAL"; continue; }
    unlabel_silent_pods
    renewed=$(date -d "${renew:-@0}" +%s 2>/dev/null || echo 0)
    [ $last_renew -gt 0 ] || last_renew=$renewed

    if [ -n "$holder" ] && [ "$holder" = "$POD_NAME" ]; then
        # Renewed while its node answers (whatever it is doing: starting, promoting).
        if [ $fresh = 1 ] && write_lease replace "$rv" "$acquired" "${transitions:-0}"; then
            last_renew=$now
            desire primary
        elif [ $((now - last_renew)) -ge "$FENCE_SECONDS" ]; then
            desire fenced
        fi
    elif [ -n "$holder" ] && [ $((now - renewed)) -lt "$LEASE_SECONDS" ]; then
        last_renew=0
        address=$(awk -F'|' -v h="$holder" '$1 == h {split($3, note, " "); print note[4]}' <<<"$pods")
        if [[ $address =~ ^([A-Za-z0-9.-]+):([0-9]+)$ ]]; then
            desire "replica ${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
        fi
    elif [ -z "$holder" ]; then
        # No lease: a new database (pod 0 makes it), unless some node has data (the
        # Lease was deleted): then it goes to the node that has the most, as below.
        last_renew=0
        if [ "$(seq_of "$received")" = 0 ] && ! someone_has_data; then
            if [ "$ORDINAL" = 0 ] && write_lease create "" "$(micro_now)" 0; then
                log "no lease: created it (a new database)"
                last_renew=$now
                desire primary
            fi
        elif [ $fresh = 1 ] && has_data_role && most_advanced "$(seq_of "$received")" &&
            write_lease create "" "$(micro_now)" 0; then
            log "no lease, and nodes with data: took it (received $received)"
            last_renew=$now
            desire primary
        fi
    else
        last_renew=0
        if [ $fresh = 1 ] && has_data_role && most_advanced "$(seq_of "$received")" &&
            write_lease replace "$rv" "$(micro_now)" $(( ${transitions:-0} + 1 )); then
            log "the lease of $holder expired $((now - renewed - LEASE_SECONDS)) s ago: took it (received $received)"
            last_renew=$now
            desire primary
        fi
    fi

    # the Services' selector: only a node that reports the role it was given
    want=""
    if [ $fresh = 1 ] && [ "$role" = primary ] && [ "$holder" = "$POD_NAME" ]; then
        want=primary
    elif [ $fresh = 1 ] && [ "$role" = replica ] && [ "$(status io)" = Yes ] && [ "$(status sql)" = Yes ]; then
        want=replica
    fi
    labelled=$(awk -F'|' -v me="$POD_NAME" '$1 == me {print $2}' <<<"$pods")
    if [ "$want" != "$labelled" ]; then
        if [ -n "$want" ]; then
            k label pod "$POD_NAME" --overwrite "$LABEL=$want" >/dev/null
        else
            k label pod "$POD_NAME" "$LABEL-" >/dev/null 2>&1
        fi || log "could not label $POD_NAME '$want'"
    fi
    sleep "$INTERVAL"
done
