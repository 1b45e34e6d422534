#!/bin/bash
# hikkoshi lab: runs inside a chroot of a debootstrap'ed Debian (minbase) to make one image's
# root file system: `rootfs-setup.sh NAME`, NAME one of pg15 pg17 redis app. Uses the machine's
# network (apt) once; the images themselves never reach out. Users get the official images' ids:
# postgres 999, redis 999, mastodon 991.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
name=$1
apt_install() { apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
apt-get update -q >/dev/null
case $name in
  pg15|pg17)
    major=${name#pg}
    groupadd -r -g 999 postgres
    useradd -r -g postgres -u 999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres
    install -d -o postgres -g postgres -m 0755 /var/lib/postgresql
    apt_install postgresql-common
    # As in the official image: no cluster from the package, the entrypoint makes PGDATA's.
    sed -ri 's/#(create_main_cluster) .*$/\1 = false/' /etc/postgresql-common/createcluster.conf
    apt_install "postgresql-$major"
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql
    install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data "/var/lib/postgresql/$major/docker"
    # No JIT (LLVM is 2/3 of the image): PostgreSQL runs without it when llvmjit.so is absent.
    rm -rf /usr/lib/postgresql/*/lib/llvmjit* /usr/lib/postgresql/*/lib/bitcode \
      /usr/lib/x86_64-linux-gnu/libLLVM* /usr/lib/x86_64-linux-gnu/libz3.so* /usr/share/i18n
    ;;
  redis)
    groupadd -r -g 999 redis
    useradd -r -g redis -u 999 --home-dir=/var/lib/redis --shell=/usr/sbin/nologin redis
    apt_install redis-server redis-tools
    install -d -o redis -g redis -m 0755 /data
    ;;
  app)
    groupadd -g 991 mastodon
    useradd -u 991 -g 991 --home-dir=/opt/mastodon --no-create-home --shell=/bin/bash mastodon
    install -d -o mastodon -g mastodon -m 0755 /opt/mastodon
    ln -s /opt/mastodon /mastodon
    apt_install python3 python3-psycopg2 postgresql-client-15 redis-tools curl procps tini
    ;;
  *) echo "rootfs-setup.sh: unknown image $name" >&2; exit 2 ;;
esac
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log \
  /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* /usr/share/lintian
find /var/log -type f -exec truncate -s 0 {} +
