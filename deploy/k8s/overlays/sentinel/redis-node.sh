#!/bin/sh
# Starts one Redis of the sentinel topology. The master is whoever the
# sentinels say it is (after a failover that is no longer redis-node-0);
# only when no sentinel knows one yet (the very first start) is
# redis-node-0 the master. Every node announces its stable DNS name, so the
# sentinels follow it across pod restarts and new pod addresses.
set -eu
self="$(hostname).redis-node"
auth=""
if [ -n "${REDIS_SENTINEL_PASSWORD:-}" ]; then
	auth="-a ${REDIS_SENTINEL_PASSWORD} --no-auth-warning"
fi
master=""
for i in 0 1 2; do
	# shellcheck disable=SC2086 # $auth is two words or none
	out=$(redis-cli -h "redis-sentinel-$i.redis-sentinel" -p 26379 $auth --raw \
		sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1) || true
	if [ -n "$out" ]; then
		master=$out
		break
	fi
done
if [ -z "$master" ]; then
	master="redis-node-0.redis-node"
fi
set -- --port 6379 --dir /data --appendonly yes --replica-announce-ip "$self"
if [ "$master" != "$self" ]; then
	echo "redis-node: replica of $master"
	set -- "$@" --replicaof "$master" 6379
else
	echo "redis-node: master"
fi
exec redis-server "$@"
