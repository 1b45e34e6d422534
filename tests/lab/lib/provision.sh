# shellcheck shell=bash disable=SC2034
# Writing the lab's files into a host's directories; shared by up (build) and reset (restore).
# Functions work on $LAB_DIR/hosts/<host>/..., the machine-side view of the bind mounts.

# nginx is set up on the new host before the move, as the guide has the admin do.
UNITS_ENABLED_OLD=(postgresql redis-server nginx mastodon-web mastodon-sidekiq mastodon-streaming)
UNITS_ENABLED_NEW=(postgresql redis-server nginx)
MASTODON_UNITS=(mastodon-web mastodon-sidekiq mastodon-streaming)

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
  prune_dir "$hd/usr-local-bin" hikkoshi-standin systemctl bundle

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
    [[ -e $hd/home-mastodon/$f ]] || install -o mastodon -g mastodon -m 0644 "/etc/skel/$f" "$hd/home-mastodon/$f"
  done
  sync_app "$h"
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

# nginx: TLS for the domain in front of the web service on 127.0.0.1:3000.
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
