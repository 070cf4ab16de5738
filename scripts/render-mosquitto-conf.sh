#!/usr/bin/env bash
# Render deploy/mosquitto.conf for a broker that runs outside a container
# (make services, the tests' own brokers). Prints the config on stdout.
#
#   scripts/render-mosquitto-conf.sh --data DIR [--port N] [--bind ADDR] [--log FILE|stdout|none]
#                                    [--pid FILE] [--src deploy/mosquitto.conf]
#
# Everything but four things is kept verbatim from the source file:
#   listener 1883             -> listener N ADDR        (default 1883, 127.0.0.1)
#   persistence_location ...  -> persistence_location DIR/
#   log_dest stdout           -> log_dest file FILE     (default DIR/mosquitto.log; "stdout" keeps it,
#                                                       "none" disables logging)
#   + pid_file FILE (only with --pid) and "user <current user>" so that a broker started as
#     root keeps root's rights instead of dropping to user "mosquitto", which could not write
#     a root-owned DIR.
# Mosquitto 2.x ignores "-p PORT" when the config has a listener line, so a broker on another
# port needs a rendered copy: this script. DIR must exist; paths are made absolute.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/../deploy/mosquitto.conf"
port=1883
bind=127.0.0.1
data=""
log=""
pid=""

die() { echo "render-mosquitto-conf: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="${2:?}"; shift 2 ;;
        --bind) bind="${2:?}"; shift 2 ;;
        --data) data="${2:?}"; shift 2 ;;
        --log) log="${2:?}"; shift 2 ;;
        --pid) pid="${2:?}"; shift 2 ;;
        --src) src="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done

[ -n "$data" ] || die "--data DIR is required"
[ -d "$data" ] || die "data directory $data does not exist"
[ -r "$src" ] || die "cannot read $src"
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "bad port: $port"
data="$(cd "$data" && pwd)"
[ -n "$log" ] || log="$data/mosquitto.log"
if [ "$log" != stdout ] && [ "$log" != none ]; then
    mkdir -p "$(dirname "$log")"
    log="$(cd "$(dirname "$log")" && pwd)/$(basename "$log")"
fi
if [ -n "$pid" ]; then
    mkdir -p "$(dirname "$pid")"
    pid="$(cd "$(dirname "$pid")" && pwd)/$(basename "$pid")"
fi

awk -v port="$port" -v bind="$bind" -v data="$data" -v logf="$log" -v pid="$pid" -v user="$(id -un)" '
    /^listener 1883[ \t]*$/          { print "listener " port " " bind; n_listener++; next }
    /^persistence_location[ \t]/     { print "persistence_location " data "/"; n_persist++; next }
    /^log_dest stdout[ \t]*$/        {
        if (logf == "none") print "log_dest none"
        else if (logf == "stdout") print "log_dest stdout"
        else print "log_dest file " logf
        n_log++; next
    }
    { print }
    END {
        if (n_listener != 1 || n_persist != 1 || n_log != 1) {
            printf "render-mosquitto-conf: expected exactly one \"listener 1883\", \"persistence_location\" and \"log_dest stdout\" line in the source, found %d/%d/%d\n", n_listener, n_persist, n_log > "/dev/stderr"
            exit 3
        }
        print ""
        print "# --- added by scripts/render-mosquitto-conf.sh for a non-container broker ---"
        if (pid != "") print "pid_file " pid
        print "user " user
    }
' "$src"
