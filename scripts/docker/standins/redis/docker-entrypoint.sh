#!/bin/sh
# The official redis image's entrypoint, as far as our files use it:
# "redis-server <args>" (or just options, or a .conf) runs the server as the
# redis user in /data, with protected mode off unless the arguments say
# otherwise. Anything else (sh -c ..., redis-cli) runs as given.
set -eu

case "$1" in
-*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
	case " $* " in
	*protected-mode*) ;;
	*) set -- "$@" --protected-mode no ;;
	esac
	if [ "$(id -u)" = 0 ]; then
		find . \! -user redis -exec chown redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi
exec "$@"
