# shellcheck shell=bash disable=SC2034
# The lab's DNS server: one named in the machine's own network namespace, authoritative for
# example.net on 127.0.53.1:53, with its config, zone, key, pid file and log in $LAB_DIR/dns.
# Sourced by up, reset, down and dns-set (after common.sh).

LAB_DNS_ADDR=127.0.53.1
LAB_DNS_PORT=53
LAB_DNS_RNDC_PORT=953
LAB_DNS_DIR=$LAB_DIR/dns
LAB_DNS_ZONE=example.net
LAB_DNS_DEFAULT_TTL=300
# What social.example.net says: one line "ADDRESS[,ADDRESS...] TTL" (dns-set changes it).
LAB_DNS_SOCIAL=$LAB_DNS_DIR/social
LAB_DNS_SERIAL=$LAB_DNS_DIR/serial

dns_rndc() {
  rndc -k "$LAB_DNS_DIR/rndc.key" -s "$LAB_DNS_ADDR" -p "$LAB_DNS_RNDC_PORT" "$@"
}

# PID of the lab's named, if it runs (the one started with our config, not a system named).
dns_named_pid() {
  local pid
  [[ -r $LAB_DNS_DIR/named.pid ]] || return 1
  pid=$(<"$LAB_DNS_DIR/named.pid")
  [[ $pid =~ ^[0-9]+$ && -d /proc/$pid ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$LAB_DNS_DIR/named.conf" || return 1
  printf '%s' "$pid"
}

# Check ADDRESS[,ADDRESS...] (IPv4/IPv6) and TTL; prints "A addr" / "AAAA addr" lines.
dns_records_for() {
  python3 - "$1" "$2" <<'PY'
import ipaddress, sys
addrs, ttl = sys.argv[1], sys.argv[2]
if not ttl.isdigit() or not 0 <= int(ttl) <= 2147483647:
    sys.exit(f"bad TTL '{ttl}' (expected seconds, 0..2147483647)")
out = []
for a in addrs.split(","):
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        sys.exit(f"bad address '{a}' (expected an IPv4 or IPv6 address, or a comma-separated list)")
    out.append(("A" if ip.version == 4 else "AAAA") + " " + str(ip))
print("\n".join(dict.fromkeys(out)))
PY
}

# Render the zone from the template and $LAB_DNS_SOCIAL; write it (with a bumped serial) only if
# its content changed. Returns 0 if the file was rewritten, 1 if it already said that.
dns_write_zone() {
  local addrs ttl records serial today new tmp
  read -r addrs ttl <"$LAB_DNS_SOCIAL"
  records=$(dns_records_for "$addrs" "$ttl" | awk -v ttl="$ttl" '{ printf "social\t%s\tIN\t%s\t%s\n", ttl, $1, $2 }')
  tmp=$(mktemp "$LAB_DNS_DIR/.zone.XXXXXX")
  python3 - "$LAB_SRC/lib/example.net.zone.in" "$LAB_DNS_ADDR" "$records" >"$tmp" <<'PY'
import sys
t = open(sys.argv[1]).read()
print(t.replace("@DNS_ADDR@", sys.argv[2]).replace("@SOCIAL_RECORDS@", sys.argv[3]), end="")
PY
  # The serial is the only thing that differs between two renderings of the same content.
  if [[ -s $LAB_DNS_DIR/example.net.zone ]] &&
     cmp -s <(sed "s/@SERIAL@/$(cat "$LAB_DNS_SERIAL" 2>/dev/null)/" "$tmp") "$LAB_DNS_DIR/example.net.zone"; then
    rm -f "$tmp"
    return 1
  fi
  # YYYYMMDDnn, always increasing (past nn = 99 it runs into the next day's numbers, as usual).
  serial=$(cat "$LAB_DNS_SERIAL" 2>/dev/null || echo 0)
  today=$(date -u +%Y%m%d00)
  new=$((serial + 1))
  ((new > today)) || new=$today
  sed -i "s/@SERIAL@/$new/" "$tmp"
  named-checkzone -q "$LAB_DNS_ZONE" "$tmp" || { named-checkzone "$LAB_DNS_ZONE" "$tmp" >&2; rm -f "$tmp"; die "the rendered zone does not load"; }
  chmod 0644 "$tmp"
  mv "$tmp" "$LAB_DNS_DIR/example.net.zone"
  echo "$new" >"$LAB_DNS_SERIAL"
  return 0
}

# Wait (up to ~3 s) until named answers the SOA with the serial in $LAB_DNS_SERIAL.
dns_wait_serial() {
  local want got i
  want=$(<"$LAB_DNS_SERIAL")
  for i in $(seq 60); do
    got=$(dig +short +norec +time=1 +tries=1 -p "$LAB_DNS_PORT" "@$LAB_DNS_ADDR" "$LAB_DNS_ZONE" SOA 2>/dev/null |
      awk '$3 ~ /^[0-9]+$/ { print $3 }') || true
    [[ $got == "$want" ]] && return 0
    sleep 0.05
  done
  die "named on $LAB_DNS_ADDR:$LAB_DNS_PORT does not serve serial $want (answers '${got:-nothing}'); see $LAB_DNS_DIR/named.log"
}

# Load a rewritten zone into the running named, and wait until it is served.
dns_reload() {
  local out
  out=$(dns_rndc reload "$LAB_DNS_ZONE" 2>&1) || die "rndc reload $LAB_DNS_ZONE failed: $out"
  dns_wait_serial
}

# Set social.example.net to ADDRESSES with TTL; named must run.
dns_set_social() {
  local addrs=$1 ttl=$2 out
  out=$(dns_records_for "$addrs" "$ttl" 2>&1) || die "$out"
  printf '%s %s\n' "$addrs" "$ttl" >"$LAB_DNS_SOCIAL"
  if dns_write_zone; then dns_reload; fi
}

# Make the directory, config and zone, and start named unless it runs already.
# With "default", social.example.net goes back to the new host's address and TTL 300.
dns_up() {
  local mode=${1:-keep} tmp pid other out
  install -d -o root -g bind -m 0770 "$LAB_DNS_DIR"
  if [[ ! -s $LAB_DNS_DIR/rndc.key ]]; then
    out=$(rndc-confgen -a -k hikkoshi-lab-rndc -A hmac-sha256 -c "$LAB_DNS_DIR/rndc.key" 2>&1) ||
      die "rndc-confgen failed: $out"
  fi
  chown root:bind "$LAB_DNS_DIR/rndc.key"
  chmod 0640 "$LAB_DNS_DIR/rndc.key"
  tmp=$(mktemp "$LAB_DNS_DIR/.conf.XXXXXX")
  sed -e "s|@DNS_DIR@|$LAB_DNS_DIR|g" -e "s|@DNS_ADDR@|$LAB_DNS_ADDR|g" \
    -e "s|@RNDC_PORT@|$LAB_DNS_RNDC_PORT|g" "$LAB_SRC/lib/named.conf.in" >"$tmp"
  chmod 0644 "$tmp"
  local conf_changed=0
  if cmp -s "$tmp" "$LAB_DNS_DIR/named.conf"; then rm -f "$tmp"; else mv "$tmp" "$LAB_DNS_DIR/named.conf"; conf_changed=1; fi
  if [[ $mode == default || ! -s $LAB_DNS_SOCIAL ]]; then
    printf '%s %s\n' "${LAB_ADDR[new]}" "$LAB_DNS_DEFAULT_TTL" >"$LAB_DNS_SOCIAL"
  fi
  local zone_changed=0
  dns_write_zone && zone_changed=1
  named-checkconf "$LAB_DNS_DIR/named.conf" || die "named-checkconf $LAB_DNS_DIR/named.conf failed"

  # named listens only on addresses an interface has; 127.0.53.1 goes on lo (down removes it).
  local addr_added=0
  if ! ip -4 -o addr show dev lo | grep -qF " $LAB_DNS_ADDR/32 "; then
    ip addr add "$LAB_DNS_ADDR/32" dev lo
    addr_added=1
  fi

  # A named that ran while the address was gone listens nowhere (nor does its control channel).
  if [[ $addr_added -eq 1 ]] && dns_named_pid >/dev/null; then dns_stop_named; fi

  if pid=$(dns_named_pid); then
    if [[ $conf_changed -eq 1 ]]; then
      out=$(dns_rndc reconfig 2>&1) || die "rndc reconfig failed: $out"
    fi
    if [[ $zone_changed -eq 1 ]]; then dns_reload; else dns_wait_serial; fi
    return 0
  fi
  # Someone else on 127.0.53.1:53 (a system named listening on every address, a leftover)?
  other=$(ss -Hlnup "sport = :$LAB_DNS_PORT" 2>/dev/null; ss -Hlntp "sport = :$LAB_DNS_PORT" 2>/dev/null)
  other=$(grep -E "(\\*|0\\.0\\.0\\.0|$LAB_DNS_ADDR):$LAB_DNS_PORT " <<<"$other" || true)
  [[ -z $other ]] || die "port $LAB_DNS_PORT on $LAB_DNS_ADDR is taken by another process (a system named? stop it): $other"
  if [[ -r /sys/kernel/security/apparmor/profiles ]] &&
     grep -q '^/usr/sbin/named (enforce)' /sys/kernel/security/apparmor/profiles; then
    log "warning: AppArmor enforces a profile on /usr/sbin/named; it may refuse to read $LAB_DNS_DIR"
  fi
  rm -f "$LAB_DNS_DIR/named.pid"
  # -4: IPv4 only; the lock fd (9) must not stay open in the daemon.
  named -4 -c "$LAB_DNS_DIR/named.conf" -u bind 9>&- ||
    die "named did not start; see $LAB_DNS_DIR/named.log"
  dns_wait_serial
  dns_named_pid >/dev/null || die "named started but its pid file $LAB_DNS_DIR/named.pid is missing"
}

# Stop the lab's named (if it runs) and wait until it is gone.
dns_stop_named() {
  local pid
  pid=$(dns_named_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do [[ -d /proc/$pid ]] || return 0; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
}

# Stop named and take 127.0.53.1 off lo.
dns_down() {
  dns_stop_named
  ip addr del "$LAB_DNS_ADDR/32" dev lo 2>/dev/null || true
}
