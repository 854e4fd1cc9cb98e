#!/usr/bin/env bash
# install-deps.sh — installs the real servers the integration tests run:
# redis-server, nginx and the PostgreSQL 15 server binaries, on Debian 12,
# and Debian's chromium for the browser test of Swagger UI (e2e/browser_test.go).
#
# Run it as root, or as a user with sudo. It is idempotent: it installs only
# what is missing, and runs `apt-get update` only when something is.
#
# The test kit (testkit/) starts its own server processes on free
# loopback ports, so the distribution's services must NOT be left running on
# the default ports (6379, 5432, 80): a test talking to a system server by
# mistake would pass or fail for the wrong reasons. Debian's packages start
# their services on install, so packages are installed under a policy-rc.d
# that forbids that, and afterwards the services are stopped and disabled in
# case an earlier install started them.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin

log() { printf 'install-deps: %s\n' "$*"; }
die() {
	printf 'install-deps: ERROR: %s\n' "$*" >&2
	exit 1
}

# as_root runs a command as root, through sudo when we are not root.
if [ "$(id -u)" -eq 0 ]; then
	as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
	as_root() { sudo "$@"; }
else
	die "must run as root, or as a user with sudo"
fi

have_redis() { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }
have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }
have_postgres() { [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ]; }
# go test -race needs cgo, so a C compiler and the C library headers.
have_cc() { command -v gcc >/dev/null 2>&1 && [ -e /usr/include/stdlib.h ]; }
have_chromium() { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }
# The Sentinel failover tests run redis-sentinel; the partition tests run ip
# (netns, veth) and tc from iproute2.
have_sentinel() { command -v redis-sentinel >/dev/null 2>&1 || [ -x /usr/bin/redis-sentinel ]; }
have_iproute() {
	{ command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || [ -x /usr/bin/ip ]; } &&
		{ command -v tc >/dev/null 2>&1 || [ -x /usr/sbin/tc ] || [ -x /sbin/tc ]; }
}

missing=()
have_redis || missing+=(redis-server)
have_nginx || missing+=(nginx)
have_postgres || missing+=(postgresql-15)
have_cc || missing+=(gcc libc6-dev)
have_chromium || missing+=(chromium)
# make bench-load drives the closed-loop scenarios with wrk.
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
have_sentinel || missing+=(redis-sentinel)
have_iproute || missing+=(iproute2)

if [ "${#missing[@]}" -eq 0 ]; then
	log "redis-server, redis-sentinel, nginx, PostgreSQL 15, gcc, iproute2, chromium and wrk are already installed"
else
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script supports Debian 12 only; install ${missing[*]} by hand"

	# A policy-rc.d exiting 101 makes invoke-rc.d and deb-systemd-invoke
	# skip starting services, so the packages never bind their default
	# ports, not even briefly. An existing policy is left alone (Docker
	# images ship exactly this one); the stop-and-disable pass below covers
	# a policy that does allow starting.
	policy=/usr/sbin/policy-rc.d
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# Temporary, from install-deps.sh: do not start services during install.\nexit 101\n' |
			as_root tee "$policy" >/dev/null
		as_root chmod 755 "$policy"
		trap 'as_root rm -f "$policy"' EXIT
		log "installed a temporary $policy so packages do not start their services"
	fi

	log "installing: ${missing[*]}"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
		die "apt-get install ${missing[*]} failed"

	have_redis || die "redis-server still missing after installing redis-server"
	have_nginx || die "nginx still missing after installing nginx"
	have_postgres || die "$PG_BIN/postgres still missing after installing postgresql-15"
	have_cc || die "gcc still missing after installing gcc libc6-dev"
	have_chromium || die "chromium still missing after installing chromium"
	command -v wrk >/dev/null 2>&1 || die "wrk still missing after installing wrk"
	have_sentinel || die "redis-sentinel still missing after installing redis-sentinel"
	have_iproute || die "ip or tc still missing after installing iproute2"
	log "installed: ${missing[*]}"
fi

# Stop and disable the system services, whether this run installed them or
# an earlier one did. systemctl can disable without systemd running (it only
# edits symlinks), but stopping needs the init system that started them.
systemd_running=false
[ -d /run/systemd/system ] && systemd_running=true
for svc in redis-server redis-sentinel nginx postgresql; do
	[ -e "/etc/init.d/$svc" ] || [ -e "/lib/systemd/system/$svc.service" ] || continue
	if $systemd_running; then
		if systemctl is-active --quiet "$svc"; then
			as_root systemctl stop "$svc" || die "could not stop $svc"
			log "stopped the $svc service"
		fi
	elif [ -x "/etc/init.d/$svc" ] && as_root "/etc/init.d/$svc" status >/dev/null 2>&1; then
		as_root "/etc/init.d/$svc" stop >/dev/null || die "could not stop $svc"
		log "stopped the $svc service"
	fi
	if command -v systemctl >/dev/null 2>&1; then
		if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
			as_root systemctl disable --quiet "$svc" 2>/dev/null || die "could not disable $svc"
			log "disabled the $svc service (it would start at boot)"
		fi
	elif command -v update-rc.d >/dev/null 2>&1; then
		as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
	fi
done

# Anything still on a default port is not ours to kill, but it would confuse
# tests and people alike, so say so.
if command -v ss >/dev/null 2>&1; then
	busy=$(ss -Hltn '( sport = :6379 or sport = :5432 or sport = :80 )' 2>/dev/null || true)
	if [ -n "$busy" ]; then
		log "WARNING: something still listens on a default port (6379, 5432 or 80):"
		printf '%s\n' "$busy" >&2
	fi
fi

log "done: $(redis-server --version | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), $("$PG_BIN/postgres" --version)"
