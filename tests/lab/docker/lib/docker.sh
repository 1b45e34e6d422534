# shellcheck shell=bash disable=SC2034
# Shared definitions of the Docker part of the lab (tests/lab/docker/*). Sourced, never run.
# Builds on the main lab's lib/common.sh (LAB_DIR, host_dir, host_init_pid, lab_exec, ...).

DLAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../../lib/common.sh
source "$DLAB_SRC/../lib/common.sh"

# Images are built once per machine and kept here (not in the lab directory: `down` keeps them).
DLAB_CACHE=${HIKKOSHI_LAB_DOCKER_CACHE:-/var/cache/hikkoshi-lab/docker}
# Where install-deps put compose v1 (diverted off the PATH) and the compose v2 CLI plugin.
DLAB_LIBEXEC=/usr/local/lib/hikkoshi-lab/docker
DLAB_COMPOSE_V1=$DLAB_LIBEXEC/compose-v1/docker-compose
DLAB_COMPOSE_V2=$DLAB_LIBEXEC/cli-plugins/docker-compose
# Debian's client (20.10, the daemon's own version); the machine may have a newer static one.
DLAB_DOCKER=/usr/bin/docker

# Addresses: all Docker networks live in 198.18.0.0/15 (RFC 2544, set aside for benchmarks),
# never in a private or public range. Per host: the default bridge and a pool for compose
# networks; the build daemon has no bridge at all.
declare -A DLAB_BIP=([old]=198.18.0.1/24 [new]=198.18.64.1/24)
declare -A DLAB_POOL=([old]=198.18.16.0/20 [new]=198.18.80.0/20)
DLAB_BUILD_POOL=198.19.252.0/23

# The image tags the lab builds (images) and which ones each host gets (hostd start).
DLAB_IMG_PG15=hikkoshi-lab/postgres:15
DLAB_IMG_PG17=hikkoshi-lab/postgres:17
DLAB_IMG_PG18STYLE=hikkoshi-lab/postgres:17-18style
DLAB_IMG_REDIS=hikkoshi-lab/redis:7
DLAB_IMG_APP=hikkoshi-lab/mastodon:v4.3.2
DLAB_IMG_APP_NEWER=hikkoshi-lab/mastodon:v4.4.0
# "Pulled from a registry": every host has them. The app images are built locally on the old
# host (stack-old loads them there only), as in a stack whose compose file says `build: .`.
DLAB_PUBLIC_IMAGES=("$DLAB_IMG_PG15" "$DLAB_IMG_PG17" "$DLAB_IMG_PG18STYLE" "$DLAB_IMG_REDIS")
DLAB_APP_IMAGES=("$DLAB_IMG_APP" "$DLAB_IMG_APP_NEWER")

# The old host's compose stack (stack-old).
DLAB_PROJECT_DIR=/srv/mastodon
DLAB_PROJECT=mastodon
DLAB_WEB_PORT=3100
DLAB_STREAMING_PORT=4100

dlog() { printf '[docker-lab%s] %s\n' "${lab_step_host:+ $lab_step_host}" "$*" >&2; }
ddie() { printf '[docker-lab%s] ERROR: %s\n' "${lab_step_host:+ $lab_step_host}" "$*" >&2; exit 1; }

# Per-host Docker files, machine-side: $LAB_DIR/hosts/<h>/docker/...
dhost_dir() { printf '%s/docker' "$(host_dir "$1")"; }
# The socket the machine drives a host's daemon through (docker -H unix://...).
dhost_sock() { printf '%s/run/docker.sock' "$(dhost_dir "$1")"; }
dhost_docker() { local h=$1; shift; "$DLAB_DOCKER" -H "unix://$(dhost_sock "$h")" "$@"; }

# Hash of the image inputs: a change to any of them builds the images again.
dlab_inputs_hash() {
  (cd "$DLAB_SRC" && find images image lib/docker.sh ../lib/standin.py ../lib/app -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum) | sha256sum | cut -c1-16
}
# The built images: a directory with public.tar (DLAB_PUBLIC_IMAGES) and app.tar
# (DLAB_APP_IMAGES), both `docker save` output, and `done` once complete.
dlab_images_dir() { printf '%s/images-%s' "$DLAB_CACHE" "$(dlab_inputs_hash)"; }
