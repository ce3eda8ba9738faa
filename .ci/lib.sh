# shellcheck shell=bash
# Shared helpers for the Redis start and stop scripts in this directory.
# Source this file from bash. It defines functions only and runs nothing.

# How many times to poll a starting server, and the pause between polls in
# seconds. Together they give a server about 30 seconds to come up.
REDIS_WAIT_TRIES=${REDIS_WAIT_TRIES:-150}
REDIS_WAIT_PAUSE=0.2

log() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

require_tools() {
	local tool
	for tool in redis-server redis-cli; do
		command -v "$tool" >/dev/null 2>&1 ||
			die "$tool not found on PATH. Install the Debian packages redis-server and redis-tools."
	done
}

# port_is_listening PORT
# Succeeds when any socket on this machine listens on TCP PORT. It reads the
# kernel's socket tables instead of connecting, so it sends no traffic at all.
port_is_listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v port="$hex" '
		NR > 1 && $4 == "0A" {
			split($2, local_address, ":")
			if (local_address[2] == port) { found = 1 }
		}
		END { exit found ? 0 : 1 }
	' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# redis_pid_alive PID
# Succeeds when PID is a running redis-server. Checking the command name
# keeps a stop from signalling an unrelated process that reused the PID.
redis_pid_alive() {
	local pid=$1 comm
	kill -0 "$pid" 2>/dev/null || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	[[ $comm == redis-server* ]]
}

# start_redis PIDFILE LOGFILE ARGS...
# Starts redis-server in the background with ARGS and writes its PID to
# PIDFILE at once, so that a stop finds it even if a later step fails.
start_redis() {
	local pidfile=$1 logfile=$2
	shift 2
	redis-server "$@" </dev/null >>"$logfile" 2>&1 &
	echo "$!" >"$pidfile"
}

# wait_for_ping PORT PIDFILE LOGFILE
# Polls the server on 127.0.0.1:PORT until it returns PONG. It fails early
# when the process has exited, and prints the end of the server log then.
wait_for_ping() {
	local port=$1 pidfile=$2 logfile=$3 pid try reply
	pid=$(cat "$pidfile")
	for ((try = 1; try <= REDIS_WAIT_TRIES; try++)); do
		reply=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null || true)
		if [[ $reply == PONG ]]; then
			return 0
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "redis-server on port $port (pid $pid) exited during startup. End of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			return 1
		fi
		sleep "$REDIS_WAIT_PAUSE"
	done
	log "redis-server on port $port (pid $pid) timed out: no PONG after $REDIS_WAIT_TRIES tries. End of $logfile:"
	tail -n 20 "$logfile" >&2 || true
	return 1
}

# stop_pidfiles DIR
# Stops every redis-server whose PID is recorded in DIR/*.pid and removes
# the files. It sends SIGTERM, waits up to 10 seconds, then sends SIGKILL.
stop_pidfiles() {
	local dir=$1 pidfile pid try
	shopt -s nullglob
	for pidfile in "$dir"/*.pid; do
		pid=$(cat "$pidfile" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]] && redis_pid_alive "$pid"; then
			kill -TERM "$pid" 2>/dev/null || true
			for ((try = 1; try <= 100; try++)); do
				redis_pid_alive "$pid" || break
				sleep 0.1
			done
			if redis_pid_alive "$pid"; then
				log "redis-server pid $pid did not exit within 10 seconds of SIGTERM, so sending SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
			fi
			log "stopped redis-server pid $pid"
		fi
		rm -f "$pidfile"
	done
	shopt -u nullglob
}

# fail_if_running DIR
# Fails when DIR still records a live server, because starting a second set
# into the same directory would leave the first one without a stop.
fail_if_running() {
	local dir=$1 pidfile pid
	shopt -s nullglob
	for pidfile in "$dir"/*.pid; do
		pid=$(cat "$pidfile" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]] && redis_pid_alive "$pid"; then
			shopt -u nullglob
			die "redis-server pid $pid from $pidfile is still running. Run '${0##*/} stop $dir' first."
		fi
	done
	shopt -u nullglob
}
