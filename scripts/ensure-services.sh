#!/usr/bin/env bash
# Make sure the two services Qorgau's tests, demo and bench talk to are up on this machine:
#   * an MQTT broker on 127.0.0.1:${QORGAU_MQTT_PORT:-1883}
#   * PostgreSQL on 127.0.0.1:${QORGAU_PG_PORT:-5432}, user postgres reachable without a password
# Whatever already listens on a port is left alone. Otherwise this installs Debian's package if
# needed and starts the service. It prints one line per thing it checked or did.
#
# Environment:
#   QORGAU_MQTT_PORT  (1883)       port of the broker
#   QORGAU_MQTT_BIND  (127.0.0.1)  address a broker started here listens on
#   QORGAU_PG_PORT    (5432)       port of PostgreSQL
# A broker started here uses deploy/mosquitto.conf (rendered by scripts/render-mosquitto-conf.sh)
# with data in var/mosquitto/data and its log in var/mosquitto/log/mosquitto.log; stop it with
# `make stop-services`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

MQTT_PORT="${QORGAU_MQTT_PORT:-1883}"
MQTT_BIND="${QORGAU_MQTT_BIND:-127.0.0.1}"
PG_PORT="${QORGAU_PG_PORT:-5432}"
CHECK_HOST=127.0.0.1
MQTT_VAR="$ROOT/var/mosquitto"
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "[services] $*"; }
die() {
    echo "[services] ERROR: $*" >&2
    exit 1
}

# True if something accepts TCP connections on host:port (bash's /dev/tcp, 2 s at most).
listening() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

wait_listening() { # host port seconds
    local i
    for ((i = 0; i < $3 * 5; i++)); do
        listening "$1" "$2" && return 0
        sleep 0.2
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        die "need root (or password-less sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "no apt-get on this machine: install $* yourself, then rerun"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        as_root apt-get update -qq || say "WARNING: apt-get update failed; trying the install with the package lists at hand"
        APT_UPDATED=1
    fi
    say "apt-get install -y $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null ||
        die "apt-get install $* failed"
}

# ---------------------------------------------------------------------------------------------
# MQTT broker
# ---------------------------------------------------------------------------------------------
ensure_mqtt() {
    if listening "$CHECK_HOST" "$MQTT_PORT"; then
        if [ -f "$MQTT_VAR/mosquitto.pid" ] && kill -0 "$(cat "$MQTT_VAR/mosquitto.pid")" 2>/dev/null; then
            say "mqtt: $CHECK_HOST:$MQTT_PORT up (our broker, pid $(cat "$MQTT_VAR/mosquitto.pid"), deploy/mosquitto.conf)"
        else
            say "mqtt: $CHECK_HOST:$MQTT_PORT already listening, left as is (not started by us; its config may differ from deploy/mosquitto.conf)"
        fi
        return 0
    fi

    if ! command -v mosquitto >/dev/null 2>&1; then
        apt_install mosquitto
        command -v mosquitto >/dev/null 2>&1 || die "mosquitto still not found after apt-get install"
        # Debian's package may start its own broker (default config) on 1883. We want ours.
        if listening "$CHECK_HOST" "$MQTT_PORT"; then
            say "mqtt: stopping the broker the mosquitto package just started (default config)"
            if [ -d /run/systemd/system ]; then
                as_root systemctl stop mosquitto || true
            elif [ -x /etc/init.d/mosquitto ]; then
                as_root /etc/init.d/mosquitto stop >/dev/null || true
            fi
            for _ in 1 2 3 4 5 6 7 8 9 10; do listening "$CHECK_HOST" "$MQTT_PORT" || break; sleep 0.5; done
            if listening "$CHECK_HOST" "$MQTT_PORT"; then
                say "mqtt: could not stop it; using the package's broker on $CHECK_HOST:$MQTT_PORT"
                return 0
            fi
        fi
    fi

    mkdir -p "$MQTT_VAR/data" "$MQTT_VAR/log"
    scripts/render-mosquitto-conf.sh --port "$MQTT_PORT" --bind "$MQTT_BIND" \
        --data "$MQTT_VAR/data" --log "$MQTT_VAR/log/mosquitto.log" \
        --pid "$MQTT_VAR/mosquitto.pid" >"$MQTT_VAR/mosquitto.conf"
    say "mqtt: starting mosquitto on $MQTT_BIND:$MQTT_PORT (config var/mosquitto/mosquitto.conf from deploy/mosquitto.conf)"
    # stderr only has the start-up chatter ("should not be run as root"), or a config error.
    mosquitto -d -c "$MQTT_VAR/mosquitto.conf" 2>"$MQTT_VAR/log/start.err" || true
    if ! wait_listening "$CHECK_HOST" "$MQTT_PORT" 10; then
        cat "$MQTT_VAR/log/start.err" >&2 || true
        tail -n 20 "$MQTT_VAR/log/mosquitto.log" >&2 2>/dev/null || true
        die "mosquitto did not come up on $CHECK_HOST:$MQTT_PORT (log: var/mosquitto/log/mosquitto.log)"
    fi
    say "mqtt: up, pid $(cat "$MQTT_VAR/mosquitto.pid" 2>/dev/null || echo '?'), log var/mosquitto/log/mosquitto.log"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------
PG_CREATED_HERE=0

# "version cluster" of the Debian clusters configured on $PG_PORT.
clusters_on_port() {
    command -v pg_lsclusters >/dev/null 2>&1 || return 0
    pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p { print $1, $2 }'
}

start_clusters() {
    local ver name started=1
    while read -r ver name; do
        [ -n "$ver" ] || continue
        say "postgres: pg_ctlcluster $ver $name start"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
        started=0
    done < <(clusters_on_port)
    return $started
}

newest_server_version() {
    ls -1 /usr/lib/postgresql 2>/dev/null | while read -r v; do
        [ -x "/usr/lib/postgresql/$v/bin/postgres" ] && echo "$v"
    done | sort -n | tail -n 1
}

pg_error=""
pg_access_ok() {
    local out
    if command -v psql >/dev/null 2>&1; then
        if out="$(PGCONNECT_TIMEOUT=5 psql -w -h "$CHECK_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' 2>&1)"; then
            return 0
        fi
    elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import psycopg' 2>/dev/null; then
        if out="$(.venv/bin/python -c "import psycopg; psycopg.connect(host='$CHECK_HOST', port=$PG_PORT, user='postgres', dbname='postgres', connect_timeout=5).close()" 2>&1)"; then
            return 0
        fi
    else
        pg_error="neither psql nor the venv's psycopg is available to check"
        return 2
    fi
    pg_error="$(echo "$out" | tail -n 3)"
    return 1
}

# Trust on loopback, for a cluster this script created (never for one it found).
trust_loopback() {
    local ver name hba
    while read -r ver name; do
        [ -n "$ver" ] || continue
        hba="/etc/postgresql/$ver/$name/pg_hba.conf"
        [ -f "$hba" ] || continue
        if ! grep -q 'qorgau ensure-services' "$hba"; then
            say "postgres: allowing trust auth on 127.0.0.1 and ::1 in $hba (cluster created here, dev/CI only)"
            as_root sh -c "{ printf '%s\n' '# added by qorgau ensure-services: dev/CI only, passwordless on loopback' \
                'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'; cat '$hba'; } > '$hba.new' &&
                chown --reference='$hba' '$hba.new' && chmod --reference='$hba' '$hba.new' && mv '$hba.new' '$hba'"
        fi
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload || true
    done < <(clusters_on_port)
    sleep 1
}

ensure_postgres() {
    if listening "$CHECK_HOST" "$PG_PORT"; then
        say "postgres: $CHECK_HOST:$PG_PORT already listening, left as is"
    else
        if ! start_clusters; then
            if [ -z "$(newest_server_version)" ]; then
                apt_install postgresql
                PG_CREATED_HERE=1
            fi
            if [ -z "$(clusters_on_port)" ]; then
                local ver other
                ver="$(newest_server_version)"
                [ -n "$ver" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql after install"
                other="$(pg_lsclusters -h 2>/dev/null | awk '{ print $1 "/" $2 " on port " $3 }' | paste -sd, -)"
                if [ -n "$other" ] && [ "$PG_CREATED_HERE" -eq 0 ]; then
                    die "no PostgreSQL cluster on port $PG_PORT (found: $other). Start one on $PG_PORT, or set QORGAU_PG_PORT."
                fi
                local name=main
                [ ! -e "/etc/postgresql/$ver/main" ] || name=qorgau
                say "postgres: pg_createcluster $ver $name -p $PG_PORT"
                as_root pg_createcluster "$ver" "$name" -p "$PG_PORT" >/dev/null
                PG_CREATED_HERE=1
            fi
            start_clusters || die "no PostgreSQL cluster on port $PG_PORT to start"
        fi
        wait_listening "$CHECK_HOST" "$PG_PORT" 30 ||
            die "PostgreSQL did not come up on $CHECK_HOST:$PG_PORT (logs: /var/log/postgresql/)"
        say "postgres: up on $CHECK_HOST:$PG_PORT"
    fi

    local rc=0
    pg_access_ok || rc=$?
    if [ "$rc" -eq 1 ] && [ "$PG_CREATED_HERE" -eq 1 ]; then
        trust_loopback
        rc=0
        pg_access_ok || rc=$?
    fi
    case "$rc" in
    0) say "postgres: user postgres connects to $CHECK_HOST:$PG_PORT without a password: ok" ;;
    2) say "postgres: WARNING: could not check access ($pg_error); run 'make install' first" ;;
    *)
        cat >&2 <<EOF
[services] ERROR: PostgreSQL on $CHECK_HOST:$PG_PORT refuses user postgres without a password:
[services]   $pg_error
[services] The tests expect passwordless access for user postgres over TCP on 127.0.0.1.
[services] On a dev/CI machine, put these two lines at the TOP of the cluster's pg_hba.conf
[services] (pg_lsclusters shows it: /etc/postgresql/<version>/main/pg_hba.conf):
[services]     host all all 127.0.0.1/32 trust
[services]     host all all ::1/128 trust
[services] then reload:  pg_ctlcluster --skip-systemctl-redirect <version> main reload
[services] Or, if the server must keep passwords, export PGPASSWORD (or write ~/.pgpass)
[services] for user postgres before running make.
EOF
        exit 1
        ;;
    esac
}

ensure_mqtt
ensure_postgres
