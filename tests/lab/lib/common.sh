# shellcheck shell=bash disable=SC2034
# Shared definitions for the hikkoshi lab scripts. Sourced, never run.

LAB_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_DIR=${HIKKOSHI_LAB_DIR:-/var/lib/hikkoshi-lab}
LAB_STATE=$LAB_DIR/state
LAB_OPERATOR=$LAB_DIR/operator
LAB_NSDIR=$LAB_DIR/ns
LAB_MARKER=$LAB_DIR/.hikkoshi-lab
# Scripts that run inside a host are copied here: the checkout may live under a path a host
# cannot see (its /tmp, /root and /home/mastodon are its own), the lab directory never does.
LAB_LIBEXEC=$LAB_DIR/libexec

LAB_HOSTS=(old new)
LAB_BRIDGE=hikkoshi-br0
# The lab's /24: operator .1, old .10, new .20. 192.0.2.0/24 unless the machine already uses it
# (then the next free TEST-NET range); up records the choice in $LAB_STATE/subnet.
read -ra LAB_SUBNET_CANDIDATES <<<"${HIKKOSHI_LAB_SUBNET:-192.0.2 198.51.100 203.0.113}"
declare -A LAB_ADDR
lab_set_subnet() {
  LAB_SUBNET=$1
  LAB_OPERATOR_ADDR=$1.1
  LAB_ADDR=([old]=$1.10 [new]=$1.20)
}
lab_set_subnet "$(cat "$LAB_STATE/subnet" 2>/dev/null || echo "${LAB_SUBNET_CANDIDATES[0]}")"

# True if an address or route of the machine (outside the lab's bridge) overlaps PREFIX.0/24.
subnet_in_use() {
  { ip -j -4 route show table all; ip -j -4 addr show; } | python3 -c '
import ipaddress, json, sys
want = ipaddress.ip_network(sys.argv[1] + ".0/24")
dec = json.JSONDecoder()
text = sys.stdin.read()
docs, i = [], 0
while i < len(text):
    if text[i].isspace():
        i += 1
        continue
    doc, i = dec.raw_decode(text, i)
    docs.append(doc)
routes, links = docs
nets = [r["dst"] for r in routes if r.get("dst") != "default" and r.get("dev") != sys.argv[2]]
nets += [a["local"] + "/" + str(a["prefixlen"]) for l in links if l["ifname"] != sys.argv[2]
         for a in l.get("addr_info", [])]
sys.exit(0 if any(ipaddress.ip_network(n, strict=False).overlaps(want) for n in nets) else 1)
' "$1" "$LAB_BRIDGE"
}

LAB_DOMAIN=social.example.net
LAB_APP=/home/mastodon/live
LAB_DB=mastodon_production
# The two other instances on the same hosts (see README.md): Misskey, and Pleasanter as the
# "generic" PostgreSQL app. The database name has a dot: quote it in SQL.
LAB_MISSKEY_APP=/home/misskey/misskey
LAB_MISSKEY_DB=misskey_db
LAB_MISSKEY_DOMAIN=misskey.example.net
LAB_GENERIC_APP=/web/pleasanter
LAB_GENERIC_DB=Implem.Pleasanter
# Unix users up creates (if missing) with home /home/<user>; down removes the ones it created.
LAB_USERS=(mastodon misskey pleasanter)
# Secrets of the Misskey and Pleasanter configs, made once by up (make_secrets in provision.sh).
LAB_SECRETS=$LAB_STATE/secrets
LAB_PGBIN=/usr/lib/postgresql/15/bin
LAB_PGDATA=/var/lib/postgresql/15/main
# What a root login on a Debian host gets as PATH; used for every command we run inside a host.
LAB_HOST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# Per-host directories (under $LAB_DIR/hosts/<host>/) and where they are bind-mounted inside the
# host's mount namespace, with owner and mode. Everything not listed is shared with the machine.
LAB_BINDS=(
  # name               target                   owner              mode
  "home-mastodon       /home/mastodon           mastodon:mastodon  0755"
  "home-misskey        /home/misskey            misskey:misskey    0755"
  "home-pleasanter     /home/pleasanter         pleasanter:pleasanter 0755"
  "web                 /web                     root:root          0755"
  "root-home           /root                    root:root          0700"
  "run-postgresql      /run/postgresql          postgres:postgres  2775"
  "var-lib-postgresql  /var/lib/postgresql      postgres:postgres  0755"
  "var-log-postgresql  /var/log/postgresql      root:postgres      1775"
  "var-lib-redis       /var/lib/redis           redis:redis        0750"
  "usr-local-bin       /usr/local/bin           root:root          0755"
  "etc-ssh             /etc/ssh                 root:root          0755"
  "tmp                 /tmp                     root:root          1777"
  "state               /var/lib/hikkoshi-host   root:root          0755"
)
# Per-host files bind-mounted the same way (their content is written by up).
LAB_FILE_BINDS=(
  "etc-hosts           /etc/hosts"
  "etc-hostname        /etc/hostname"
)

lab_step_host=""
log() { printf '[lab%s] %s\n' "${lab_step_host:+ $lab_step_host}" "$*" >&2; }
die() { printf '[lab%s] ERROR: %s\n' "${lab_step_host:+ $lab_step_host}" "$*" >&2; exit 1; }

require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

host_dir() { printf '%s/hosts/%s' "$LAB_DIR" "$1"; }
netns_name() { printf 'hikkoshi-%s' "$1"; }
mntns_file() { printf '%s/%s.mnt' "$LAB_NSDIR" "$1"; }
init_pidfile() { printf '%s/%s.init.pid' "$LAB_STATE" "$1"; }

check_host_name() {
  case "${1:-}" in old|new) ;; *) die "unknown host '${1:-}' (expected old or new)";; esac
}

mntns_alive() { [[ "$(stat -f -c %T "$(mntns_file "$1")" 2>/dev/null)" == nsfs ]]; }
netns_alive() { [[ -e /run/netns/$(netns_name "$1") ]]; }

# PID (in the machine's pid namespace) of the host's init, if it is alive and really is the
# init of that host (the pid file may be stale after a reboot).
host_init_pid() {
  local h=$1 f pid
  f=$(init_pidfile "$h")
  [[ -r $f ]] || return 1
  pid=$(<"$f")
  [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
  [[ /proc/$pid/ns/mnt -ef $(mntns_file "$h") ]] || return 1
  grep -qz 'hostinit.py' "/proc/$pid/cmdline" 2>/dev/null || return 1
  printf '%s' "$pid"
}

lab_is_up() {
  local h
  [[ -e $LAB_MARKER ]] || return 1
  for h in "${LAB_HOSTS[@]}"; do
    netns_alive "$h" && mntns_alive "$h" && host_init_pid "$h" >/dev/null || return 1
  done
}

# Run a command inside a host: its network, mount, pid and UTS namespaces, with the clean
# environment of a root login. Arguments are passed through untouched.
lab_exec() {
  local h=$1 pid
  shift
  pid=$(host_init_pid "$h") || die "host $h is not running (no init); run tests/lab/up"
  nsenter --net="/run/netns/$(netns_name "$h")" --mount="$(mntns_file "$h")" \
    --pid="/proc/$pid/ns/pid" --uts="/proc/$pid/ns/uts" --ipc="/proc/$pid/ns/ipc" -- \
    env -i PATH="$LAB_HOST_PATH" HOME=/root USER=root LOGNAME=root SHELL=/bin/bash \
    LANG=C.UTF-8 ${TERM:+TERM="$TERM"} "$@" 9>&-
}

# Lab-internal calls of the stand-ins are not recorded in calls.jsonl.
lab_systemctl() { local h=$1; shift; lab_exec "$h" env HIKKOSHI_LAB_INTERNAL=1 systemctl "$@"; }
lab_psql_postgres() { local h=$1; shift; lab_exec "$h" runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
lab_psql_mastodon() { local h=$1; shift; lab_exec "$h" runuser -u mastodon -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
# lab_psql_as HOST USER ARGS...: psql as a unix user (peer authentication: the role of that name).
lab_psql_as() { local h=$1 u=$2; shift 2; lab_exec "$h" runuser -u "$u" -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }

# Serialize up/down/reset: they all rewrite the same state. (fd 9 holds the lock; commands run
# inside the hosts get it closed, so a daemon started there cannot keep the lock alive.)
lab_lock() {
  mkdir -p "$LAB_DIR"
  exec 9>"$LAB_DIR/.lock"
  flock -w 600 9 || die "another lab command holds $LAB_DIR/.lock"
}

install_libexec() {
  install -d -m 0755 "$LAB_LIBEXEC"
  install -m 0644 "$LAB_SRC/lib/hostinit.py" "$LAB_SRC/lib/labhelper.py" "$LAB_LIBEXEC/"
}
