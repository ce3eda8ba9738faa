#!/usr/bin/env bash
# Starts or stops a Redis Cluster of three masters on 127.0.0.1 for the tests.
#
# Usage:
#   .ci/redis-cluster.sh start DIR [BASE_PORT]
#   .ci/redis-cluster.sh stop DIR
#
# start uses ports BASE_PORT to BASE_PORT+2. Without BASE_PORT it takes the
# first of 17001, 17011, ... 17091 whose three ports and three cluster bus
# ports (port + 10000) are all free. Each node keeps its data, log and PID
# under DIR. start creates the cluster with no replicas, waits until every
# node reports cluster_state:ok and writes the comma-separated node addresses
# to DIR/addrs. stop ends only the PIDs recorded in DIR.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_COUNT=3
# Redis Cluster nodes connect to each other on the cluster bus, whose port is
# the client port plus this offset.
BUS_PORT_OFFSET=10000

usage() {
	echo "usage: ${0##*/} start DIR [BASE_PORT] | stop DIR" >&2
	exit 2
}

# ports_are_free BASE
# Succeeds when every client port and cluster bus port of a cluster based at
# BASE is free.
ports_are_free() {
	local base=$1 i
	for ((i = 0; i < NODE_COUNT; i++)); do
		if port_is_listening $((base + i)) || port_is_listening $((base + i + BUS_PORT_OFFSET)); then
			return 1
		fi
	done
}

pick_base_port() {
	local base
	for ((base = 17001; base <= 17091; base += 10)); do
		if ports_are_free "$base"; then
			echo "$base"
			return 0
		fi
	done
	die "no free set of ports from 17001 to 17093. Pass a free BASE_PORT as the third argument."
}

# wait_for_cluster_ok BASE
# Polls every node until it reports cluster_state:ok and has learned about
# all the other nodes. Clients that connect to any node then see the whole
# slot map.
wait_for_cluster_ok() {
	local base=$1 try i port info ready
	for ((try = 1; try <= REDIS_WAIT_TRIES; try++)); do
		ready=1
		for ((i = 0; i < NODE_COUNT; i++)); do
			port=$((base + i))
			info=$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null || true)
			if ! grep -q '^cluster_state:ok' <<<"$info" ||
				! grep -q "^cluster_known_nodes:$NODE_COUNT" <<<"$info"; then
				ready=0
				break
			fi
		done
		if ((ready)); then
			return 0
		fi
		sleep "$REDIS_WAIT_PAUSE"
	done
	log "the cluster timed out: no cluster_state:ok after $REDIS_WAIT_TRIES tries. CLUSTER INFO of node $port:"
	printf '%s\n' "$info" >&2
	return 1
}

start() {
	local dir=$1 base=${2:-} i port node_dir hostports
	local addrs=()
	require_tools
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	fail_if_running "$dir"

	if [[ -z $base ]]; then
		base=$(pick_base_port)
	elif ! ports_are_free "$base"; then
		die "a client or cluster bus port of the cluster at base port $base is already in use. Pass another BASE_PORT, or omit it to pick a free one."
	fi
	rm -f "$dir/addrs" "$dir/create.log"

	for ((i = 0; i < NODE_COUNT; i++)); do
		port=$((base + i))
		node_dir="$dir/node-$port"
		mkdir -p "$node_dir"
		# A node config left over from an earlier run names node IDs that no
		# longer exist, and cluster creation rejects a node that has one.
		rm -f "$node_dir/nodes-$port.conf" "$node_dir/redis.log"
		start_redis "$dir/node-$port.pid" "$node_dir/redis.log" \
			--bind 127.0.0.1 --port "$port" \
			--dir "$node_dir" \
			--cluster-enabled yes \
			--cluster-config-file "nodes-$port.conf" \
			--cluster-node-timeout 5000 \
			--save "" --appendonly no --daemonize no
		addrs+=("127.0.0.1:$port")
	done

	for ((i = 0; i < NODE_COUNT; i++)); do
		port=$((base + i))
		if ! wait_for_ping "$port" "$dir/node-$port.pid" "$dir/node-$port/redis.log"; then
			stop_pidfiles "$dir"
			die "cluster node on port $port failed to start"
		fi
	done

	if ! timeout 120 redis-cli --cluster create "${addrs[@]}" \
		--cluster-replicas 0 --cluster-yes </dev/null >"$dir/create.log" 2>&1; then
		log "redis-cli --cluster create failed. Its output:"
		cat "$dir/create.log" >&2
		stop_pidfiles "$dir"
		die "cluster creation failed"
	fi

	if ! wait_for_cluster_ok "$base"; then
		stop_pidfiles "$dir"
		die "cluster did not become ready"
	fi

	hostports=$(
		IFS=,
		echo "${addrs[*]}"
	)
	echo "$hostports" >"$dir/addrs"
	log "cluster of $NODE_COUNT masters is ready on $hostports"
	echo "THROTTLE_REDIS_CLUSTER_ADDRS=$hostports"
}

stop() {
	local dir=$1
	[[ -d $dir ]] || return 0
	stop_pidfiles "$dir"
	rm -f "$dir/addrs"
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
