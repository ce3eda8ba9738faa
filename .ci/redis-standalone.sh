#!/usr/bin/env bash
# Starts or stops one standalone redis-server on 127.0.0.1 for the tests.
#
# Usage:
#   .ci/redis-standalone.sh start DIR [PORT]
#   .ci/redis-standalone.sh stop DIR
#
# start picks PORT, or else the first free port from 16379 to 16398, keeps
# the server's data, log and PID in DIR, waits until it returns PONG and
# writes its address to DIR/addr. stop ends only the PID recorded in DIR.
# The server saves nothing to disk, so a stop loses all its data.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIRST_PORT=16379
LAST_PORT=16398

usage() {
	echo "usage: ${0##*/} start DIR [PORT] | stop DIR" >&2
	exit 2
}

pick_port() {
	local port
	for ((port = FIRST_PORT; port <= LAST_PORT; port++)); do
		if ! port_is_listening "$port"; then
			echo "$port"
			return 0
		fi
	done
	die "no free port from $FIRST_PORT to $LAST_PORT. Pass a free PORT as the third argument."
}

start() {
	local dir=$1 port=${2:-}
	require_tools
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	fail_if_running "$dir"

	if [[ -z $port ]]; then
		port=$(pick_port)
	elif port_is_listening "$port"; then
		die "port $port is already in use. Pass another PORT, or omit it to pick a free one."
	fi

	mkdir -p "$dir/data"
	rm -f "$dir/addr" "$dir/redis.log"
	start_redis "$dir/redis.pid" "$dir/redis.log" \
		--bind 127.0.0.1 --port "$port" \
		--dir "$dir/data" \
		--save "" --appendonly no --daemonize no

	if ! wait_for_ping "$port" "$dir/redis.pid" "$dir/redis.log"; then
		stop_pidfiles "$dir"
		die "standalone redis-server failed to start"
	fi

	echo "127.0.0.1:$port" >"$dir/addr"
	log "redis-server pid $(cat "$dir/redis.pid") is ready on 127.0.0.1:$port"
	echo "THROTTLE_REDIS_ADDR=127.0.0.1:$port"
}

stop() {
	local dir=$1
	[[ -d $dir ]] || return 0
	stop_pidfiles "$dir"
	rm -f "$dir/addr"
}

case "${1:-}" in
start)
	[[ $# -ge 2 && $# -le 3 ]] || usage
	start "$2" "${3:-}"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	stop "$2"
	;;
*)
	usage
	;;
esac
