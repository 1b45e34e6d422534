#!/bin/sh
# hikkoshi lab: the official redis image's docker-entrypoint.sh. As root it hands the working
# directory (/data) to the redis user and runs itself again as that user. The official image's
# redis-server is built with protected mode off; Debian's is not, so it is switched off here
# (other containers reach it without a password, as with the official image).
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = 'redis-server' ]; then
  case " $* " in
    *protected-mode*) ;;
    *) set -- "$@" --protected-mode no ;;
  esac
fi

umask 0077
exec "$@"
