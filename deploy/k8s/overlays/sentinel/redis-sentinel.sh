#!/bin/sh
# Starts one sentinel. It monitors the master its peers already know (after
# a failover, the promoted replica), or redis-node-0 when none does yet.
# sentinel.conf is written anew into an emptyDir on every start, since
# Sentinel rewrites it while running.
set -eu
conf=/sentinel/sentinel.conf
self="$(hostname).redis-sentinel"
auth=""
if [ -n "${REDIS_SENTINEL_PASSWORD:-}" ]; then
	auth="-a ${REDIS_SENTINEL_PASSWORD} --no-auth-warning"
fi
master=""
for i in 0 1 2; do
	peer="redis-sentinel-$i.redis-sentinel"
	[ "$peer" = "$self" ] && continue
	# shellcheck disable=SC2086 # $auth is two words or none
	out=$(redis-cli -h "$peer" -p 26379 $auth --raw \
		sentinel get-master-addr-by-name "$REDIS_MASTER_NAME" 2>/dev/null | head -n 1) || true
	if [ -n "$out" ]; then
		master=$out
		break
	fi
done
if [ -z "$master" ]; then
	master="redis-node-0.redis-node"
	# "sentinel monitor" needs the name to resolve; on a first start the
	# master's pod may not exist yet. Give it a minute, then let the kubelet
	# restart us.
	n=0
	until redis-cli -h "$master" -p 6379 ping >/dev/null 2>&1; do
		n=$((n + 1))
		[ "$n" -ge 60 ] && break
		sleep 1
	done
fi
cat >"$conf" <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
sentinel monitor $REDIS_MASTER_NAME $master 6379 2
sentinel down-after-milliseconds $REDIS_MASTER_NAME 5000
sentinel failover-timeout $REDIS_MASTER_NAME 60000
sentinel parallel-syncs $REDIS_MASTER_NAME 1
CONF
if [ -n "${REDIS_SENTINEL_PASSWORD:-}" ]; then
	printf 'requirepass %s\nsentinel sentinel-pass %s\n' "$REDIS_SENTINEL_PASSWORD" "$REDIS_SENTINEL_PASSWORD" >>"$conf"
fi
echo "redis-sentinel: monitoring $master"
exec redis-server "$conf" --sentinel
