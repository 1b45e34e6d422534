# shellcheck shell=bash disable=SC2034
# Writing the lab's files into a host's directories; shared by up (build) and reset (restore).
# Functions work on $LAB_DIR/hosts/<host>/..., the machine-side view of the bind mounts.

# nginx is set up on the new host before the move, as the guide has the admin do.
UNITS_ENABLED_OLD=(postgresql redis-server nginx mastodon-web mastodon-sidekiq mastodon-streaming misskey pleasanter)
UNITS_ENABLED_NEW=(postgresql redis-server nginx)
MASTODON_UNITS=(mastodon-web mastodon-sidekiq mastodon-streaming)
# The other two instances' services (enabled and running on old only).
APP_UNITS=(misskey pleasanter)

# install SRC DST OWNER MODE: copy only when the content differs (keeps mtimes stable).
install_file() {
  local src=$1 dst=$2 owner=$3 mode=$4
  if ! cmp -s "$src" "$dst" 2>/dev/null; then
    install -D -o "${owner%%:*}" -g "${owner##*:}" -m "$mode" "$src" "$dst"
  else
    chown "$owner" "$dst"
    chmod "$mode" "$dst"
  fi
}

# Empty a directory without following anything out of it.
empty_dir() {
  [[ -d $1 ]] && find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system -- {} +
  return 0
}

# Remove entries of DIR whose names are not in the remaining arguments.
prune_dir() {
  local dir=$1 entry name keep
  shift
  [[ -d $dir ]] || return 0
  for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
    [[ -e $entry || -L $entry ]] || continue
    name=${entry##*/}
    for keep in "$@"; do [[ $name == "$keep" ]] && continue 2; done
    rm -rf --one-file-system -- "$entry"
  done
}

make_host_dirs() {
  local h=$1 hd line name owner mode
  hd=$(host_dir "$h")
  for line in "${LAB_BINDS[@]}"; do
    read -r name _ owner mode <<<"$line"
    mkdir -p "$hd/$name"
    chown "$owner" "$hd/$name"
    chmod "$mode" "$hd/$name"
  done
  # Each host knows its own name, as a VPS would (sudo complains otherwise).
  printf '%s\n' "$h" >"$hd/etc-hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
    "$h" >"$hd/etc-hosts"
  chmod 0644 "$hd/etc-hostname" "$hd/etc-hosts"
  install -d -o root -g root -m 0755 "$hd/state/units" "$hd/state/run" "$hd/state/log"
  install -d -o postgres -g postgres -m 0755 "$hd/var-lib-postgresql/15"
  install -d -o root -g root -m 0755 "$hd/etc-ssh/authorized_keys" "$hd/etc-ssh/ssh_config.d" \
    "$hd/etc-ssh/sshd_config.d"
}

write_sshd_config() {
  cat <<'EOF'
# hikkoshi lab: sshd of one host (started inside the host's namespaces by tests/lab/up)
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /var/lib/hikkoshi-host/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys/%u .ssh/authorized_keys
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
StreamLocalBindUnlink yes
UsePAM yes
X11Forwarding no
PrintMotd no
PrintLastLog no
AcceptEnv LANG LC_*
# Multiplexed connections (ControlMaster) open many sessions at once.
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
}

# Files every host has; rewritten on up and reset (host keys are kept once made).
install_host_files() {
  local h=$1 hd f tmp changed=1
  hd=$(host_dir "$h")

  [[ -s $hd/etc-ssh/ssh_host_ed25519_key ]] ||
    ssh-keygen -q -t ed25519 -N '' -C "root@$h" -f "$hd/etc-ssh/ssh_host_ed25519_key"
  tmp=$(mktemp)
  write_sshd_config >"$tmp"
  cmp -s "$tmp" "$hd/etc-ssh/sshd_config" && changed=0
  install_file "$tmp" "$hd/etc-ssh/sshd_config" root:root 0644
  rm -f "$tmp"
  # The host's own ssh client (hikkoshi runs it on the old host) gets Debian's stock config.
  [[ -s $hd/etc-ssh/ssh_config ]] || install -m 0644 "$LAB_SRC/lib/ssh_config.debian" "$hd/etc-ssh/ssh_config"
  [[ -s $hd/etc-ssh/moduli ]] || { [[ -s /etc/ssh/moduli ]] && install -m 0644 /etc/ssh/moduli "$hd/etc-ssh/moduli"; } || true
  install_file "$LAB_OPERATOR/id_ed25519.pub" "$hd/etc-ssh/authorized_keys/root" root:root 0644
  prune_dir "$hd/etc-ssh" sshd_config ssh_config ssh_config.d sshd_config.d moduli authorized_keys \
    ssh_host_ed25519_key ssh_host_ed25519_key.pub
  prune_dir "$hd/etc-ssh/authorized_keys" root
  [[ $changed -eq 1 ]] && touch "$LAB_STATE/$h.sshd-config-changed"

  install_file "$LAB_SRC/lib/standin.py" "$hd/usr-local-bin/hikkoshi-standin" root:root 0755
  ln -sfn hikkoshi-standin "$hd/usr-local-bin/systemctl"
  ln -sfn hikkoshi-standin "$hd/usr-local-bin/bundle"
  ln -sfn hikkoshi-standin "$hd/usr-local-bin/dotnet"
  prune_dir "$hd/usr-local-bin" hikkoshi-standin systemctl bundle dotnet

  for f in "$LAB_SRC"/lib/units/*.service; do
    install_file "$f" "$hd/state/units/${f##*/}" root:root 0644
  done
  ln -sfn postgresql.service "$hd/state/units/postgresql@15-main.service"
  install_file "$LAB_SRC/lib/redis.conf" "$hd/state/redis.conf" root:root 0644
  install_nginx "$h"
  [[ -e $hd/state/calls.jsonl ]] || : >"$hd/state/calls.jsonl"
  chmod 0666 "$hd/state/calls.jsonl"

  for f in .bashrc .profile .bash_logout; do
    [[ -e $hd/root-home/$f ]] || install -m 0644 "/etc/skel/$f" "$hd/root-home/$f"
    for u in "${LAB_USERS[@]}"; do
      [[ -e $hd/home-$u/$f ]] || install -o "$u" -g "$u" -m 0644 "/etc/skel/$f" "$hd/home-$u/$f"
    done
  done
  sync_app "$h"
  sync_apps "$h"
}

# A certificate for the domain signed by the lab's own CA (operator/ca.pem), made once.
make_tls() {
  local tls=$LAB_STATE/tls
  [[ -s $tls/cert.pem && -s $LAB_OPERATOR/ca.pem ]] && return 0
  install -d -m 0700 "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=hikkoshi lab CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$LAB_DOMAIN" \
    -keyout "$tls/key.pem" -out "$tls/req.pem" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$LAB_DOMAIN" >"$tls/ext.cnf"
  openssl x509 -req -in "$tls/req.pem" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/ext.cnf" -out "$tls/cert.pem" 2>/dev/null
  install -m 0644 "$tls/ca.pem" "$LAB_OPERATOR/ca.pem"
}

# nginx: TLS for the domain in front of the web service on 127.0.0.1:3000, and Pleasanter's
# site on port 80.
install_nginx() {
  local h=$1 hd tmp
  hd=$(host_dir "$h")
  install -d -o root -g root -m 0755 "$hd/state/nginx" "$hd/state/nginx/tmp"
  install_file "$LAB_STATE/tls/cert.pem" "$hd/state/nginx/cert.pem" root:root 0644
  install_file "$LAB_STATE/tls/key.pem" "$hd/state/nginx/key.pem" root:root 0600
  tmp=$(mktemp)
  cat >"$tmp" <<EOF
# hikkoshi lab: nginx of host $h
user www-data;
worker_processes 1;
pid /var/lib/hikkoshi-host/nginx/nginx.pid;
error_log /var/lib/hikkoshi-host/log/nginx-error.log;
events { worker_connections 64; }
http {
  access_log /var/lib/hikkoshi-host/log/nginx-access.log;
  client_body_temp_path /var/lib/hikkoshi-host/nginx/tmp/body;
  proxy_temp_path /var/lib/hikkoshi-host/nginx/tmp/proxy;
  fastcgi_temp_path /var/lib/hikkoshi-host/nginx/tmp/fastcgi;
  uwsgi_temp_path /var/lib/hikkoshi-host/nginx/tmp/uwsgi;
  scgi_temp_path /var/lib/hikkoshi-host/nginx/tmp/scgi;
  server {
    listen 443 ssl;
    server_name $LAB_DOMAIN;
    ssl_certificate /var/lib/hikkoshi-host/nginx/cert.pem;
    ssl_certificate_key /var/lib/hikkoshi-host/nginx/key.pem;
    location / {
      proxy_pass http://127.0.0.1:3000;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-Proto https;
    }
  }
  # Pleasanter behind the same nginx, as its install guide sets it up: the only place on the
  # host that names its domain (hikkoshi init reads it from here).
  server {
    listen 80;
    server_name pleasanter.example.net;
    location / {
      proxy_pass http://127.0.0.1:5000;
      proxy_set_header Host \$host;
    }
  }
}
EOF
  install_file "$tmp" "$hd/state/nginx/nginx.conf" root:root 0644
  rm -f "$tmp"
}

# Unit enablement of a pristine host; no process is started or stopped here.
set_pristine_enablement() {
  local h=$1 hd u
  hd=$(host_dir "$h")
  rm -f "$hd"/state/units/*.enabled "$hd"/state/units/*.masked "$hd"/state/run/*.failed
  if [[ $h == old ]]; then
    for u in "${UNITS_ENABLED_OLD[@]}"; do : >"$hd/state/units/$u.enabled"; done
  else
    for u in "${UNITS_ENABLED_NEW[@]}"; do : >"$hd/state/units/$u.enabled"; done
  fi
}

# The Mastodon app code, on both hosts; on old also .env.production (from the master copy made
# at the first up, so the secrets stay the same across resets).
sync_app() {
  local h=$1 live src rel
  live=$(host_dir "$h")/home-mastodon/live
  install -d -o mastodon -g mastodon -m 0755 "$live" "$live/public" "$live/bin" "$live/config" \
    "$live/lib" "$live/lib/mastodon"
  while IFS= read -r -d '' src; do
    rel=${src#"$LAB_SRC/lib/app/"}
    install_file "$src" "$live/$rel" mastodon:mastodon "$([[ -x $src ]] && echo 0755 || echo 0644)"
  done < <(find "$LAB_SRC/lib/app" -type f -print0)
  if [[ $h == old ]]; then
    install_file "$LAB_STATE/env.production" "$live/.env.production" mastodon:mastodon 0600
    prune_dir "$live" .env.production .ruby-version Gemfile bin config lib public
    prune_dir "$live/public" 500.html system
  else
    prune_dir "$live" .ruby-version Gemfile bin config lib public
    prune_dir "$live/public" 500.html
  fi
  prune_dir "$live/bin" tootctl
  prune_dir "$live/config" database.yml puma.rb
  prune_dir "$live/lib" mastodon
  prune_dir "$live/lib/mastodon" version.rb
}

# The secrets of the Misskey and Pleasanter configs, made once (32 letters and digits each) and kept
# in $LAB_SECRETS/<name>, so configs and role passwords stay the same across up and reset.
LAB_SECRET_NAMES=(misskey-db-pass pleasanter-sa-pass pleasanter-owner-pass pleasanter-user-pass)
make_secrets() {
  local n
  for n in "${LAB_SECRET_NAMES[@]}"; do [[ -s $LAB_SECRETS/$n ]] || break; done
  [[ -s $LAB_SECRETS/$n ]] && return 0
  install -d -m 0700 "$LAB_SECRETS"
  python3 - "$LAB_SECRETS" "${LAB_SECRET_NAMES[@]}" <<'EOF'
import os, secrets, string, sys
alnum = string.ascii_letters + string.digits
for name in sys.argv[2:]:
    path = os.path.join(sys.argv[1], name)
    if os.path.exists(path) and os.path.getsize(path):
        continue
    value = secrets.choice(string.ascii_letters) + "".join(secrets.choice(alnum) for _ in range(31))
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(path + ".tmp", path)
EOF
}

# The Misskey and Pleasanter apps of a host, in one synctree.py call:
# Misskey in /home/misskey/misskey (lib/misskey/app); on old also .config/default.yml (from
# lib/misskey/default.yml.in with the database password) and files/ (the drive, written by up once;
# kept as it is).
# Pleasanter in /web/pleasanter (lib/pleasanter/app) with Implem.Pleasanter/App_Data/Parameters/
# Rds.json: the instance's own on old (from lib/pleasanter/Rds.json.in with its passwords), the
# installation's default on new (lib/pleasanter/Rds.default.json); on old also BinaryStorage/
# (attachments, written by up once; kept as it is).
sync_apps() {
  local h=$1 hd rds=Implem.Pleasanter/App_Data/Parameters/Rds.json
  hd=$(host_dir "$h")
  if [[ $h == old ]]; then
    python3 -S "$LAB_SRC/lib/synctree.py" \
      "$LAB_SRC/lib/misskey/app" "$hd/home-misskey/misskey" misskey --keep files \
      --put .config/default.yml 0640 "$LAB_SRC/lib/misskey/default.yml.in" \
      --sub DB_PASS "$LAB_SECRETS/misskey-db-pass" \
      --next "$LAB_SRC/lib/pleasanter/app" "$hd/web/pleasanter" pleasanter --keep BinaryStorage \
      --put "$rds" 0600 "$LAB_SRC/lib/pleasanter/Rds.json.in" --sub SA_PASS "$LAB_SECRETS/pleasanter-sa-pass" \
      --sub OWNER_PASS "$LAB_SECRETS/pleasanter-owner-pass" --sub USER_PASS "$LAB_SECRETS/pleasanter-user-pass"
  else
    python3 -S "$LAB_SRC/lib/synctree.py" \
      "$LAB_SRC/lib/misskey/app" "$hd/home-misskey/misskey" misskey \
      --next "$LAB_SRC/lib/pleasanter/app" "$hd/web/pleasanter" pleasanter \
      --put "$rds" 0600 "$LAB_SRC/lib/pleasanter/Rds.default.json"
  fi
}

# SQL for the app roles of a host, as up makes them (with psql variables mk and pl: the passwords
# of the configs; peer authentication ignores them). Kept by reset on new; a migration restores
# into them.
APP_ROLES_SQL="
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY['misskey', 'pleasanter', 'pleasanter_user']) r
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE misskey LOGIN CREATEDB NOSUPERUSER NOCREATEROLE PASSWORD :'mk';
ALTER ROLE pleasanter LOGIN CREATEDB NOSUPERUSER NOCREATEROLE PASSWORD :'pl';
ALTER ROLE pleasanter_user NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD NULL;
"
# app_role_vars: the psql -v arguments APP_ROLES_SQL needs (no fork: read, not cat).
app_role_vars() {
  local mk pl
  read -r mk <"$LAB_SECRETS/misskey-db-pass"
  read -r pl <"$LAB_SECRETS/pleasanter-owner-pass"
  APP_ROLE_VARS=(-v "mk=$mk" -v "pl=$pl")
}

# Fresh secrets in the shape of `rake mastodon:setup` output.
write_env_production() {
  local hex128a hex128b vpriv vpub smtp
  hex128a=$(od -An -vtx1 -N64 /dev/urandom | tr -d ' \n')
  hex128b=$(od -An -vtx1 -N64 /dev/urandom | tr -d ' \n')
  b64url() { head -c "$1" /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='; }
  vpriv=$(b64url 32)
  vpub=$(b64url 65)
  smtp="$(b64url 9)'$(b64url 6)\\\$$(b64url 6)\\\"x"
  cat <<EOF
# Generated with mastodon:setup on $(date -u +%Y-%m-%d) (hikkoshi lab)
LOCAL_DOMAIN=$LAB_DOMAIN
SINGLE_USER_MODE=false

REDIS_HOST=localhost
REDIS_PORT=6379
DB_HOST=/var/run/postgresql
DB_USER=mastodon
DB_NAME=$LAB_DB
DB_PASS=
DB_PORT=5432

ES_ENABLED=true
ES_HOST=localhost
ES_PORT=9200

SECRET_KEY_BASE=$hex128a
OTP_SECRET=$hex128b
VAPID_PRIVATE_KEY=$vpriv
VAPID_PUBLIC_KEY=$vpub
ACTIVE_RECORD_ENCRYPTION_DETERMINISTIC_KEY=$(b64url 24)
ACTIVE_RECORD_ENCRYPTION_KEY_DERIVATION_SALT=$(b64url 24)
ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY=$(b64url 24)

S3_ENABLED=false
SMTP_SERVER=smtp.mail.example
SMTP_PORT=587
SMTP_LOGIN=notifications@$LAB_DOMAIN
SMTP_PASSWORD="$smtp"
SMTP_FROM_ADDRESS='Mastodon <notifications@$LAB_DOMAIN>'
EOF
}
