#!/usr/bin/python3
"""Recording stand-ins for the parts of the lab's app hosts the lab does not run for real.

Installed in each lab host as /usr/local/bin/hikkoshi-standin, with /usr/local/bin/systemctl,
/usr/local/bin/bundle and /usr/local/bin/dotnet symlinked to it; /home/mastodon/live/bin/tootctl
execs it as `hikkoshi-standin tootctl ARGS`. The tool is chosen by the name it is called as.

Tools (each call appends one JSON line to /var/lib/hikkoshi-host/calls.jsonl):
  systemctl   emulates systemd for the units in /var/lib/hikkoshi-host/units (real processes)
  bundle      `bundle exec rails assets:precompile` writes public/packs/manifest.json
  tootctl     version / feeds build / search deploy, checking what the real one needs to boot
  dotnet      `dotnet Implem.CodeDefiner.dll _rds` checks Pleasanter's Rds.json and database
Services (run by the systemctl stand-in, not recorded, except misskey's start):
  web         HTTP on 127.0.0.1:3000; GET /health is 200 OK only if the instance is usable
  sidekiq     an idle worker
  streaming   HTTP on 127.0.0.1:4000 with /api/v1/streaming/health
  misskey     reads .config/default.yml, records its migrations run (tool misskey, event migrate;
              it only reads the migrations table), HTTP on the configured port: GET /healthz
  pleasanter  reads App_Data/Parameters/Rds.json, HTTP on 127.0.0.1:5000: GET /
"""
import fcntl
import fnmatch
import hashlib
import http.server
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time

STATE = "/var/lib/hikkoshi-host"
UNIT_DIR = STATE + "/units"
RUN_DIR = STATE + "/run"
LOG_DIR = STATE + "/log"
CALLS = STATE + "/calls.jsonl"
APP = "/home/mastodon/live"
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Environment variables worth seeing in the call log (only those that are set are recorded).
RECORDED_ENV = (
    "RAILS_ENV", "NODE_ENV", "BUNDLE_GEMFILE", "SKIP_POST_DEPLOYMENT_MIGRATIONS",
    "RAILS_LOG_LEVEL", "DB_NAME", "MASTODON_USE_LIBVIPS", "SECRET_KEY_BASE_DUMMY",
)


class Fail(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def err(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# call log

def current_user():
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def record(tool, args, exit_code, ts, cwd, extra=None):
    if os.environ.get("HIKKOSHI_LAB_INTERNAL") == "1":
        return
    entry = {
        "ts": ts,
        "tool": tool,
        "argv": args,
        "uid": os.getuid(),
        "user": current_user(),
        "cwd": cwd,
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
        "exit": exit_code,
    }
    entry.update(extra or {})
    # ensure_ascii keeps undecodable argv bytes (surrogate escapes) representable.
    line = (json.dumps(entry) + "\n").encode()
    try:
        fd = os.open(CALLS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as e:
        err(f"hikkoshi-standin: warning: cannot record call in {CALLS}: {e}")


# ---------------------------------------------------------------------------------------------
# Mastodon app helpers shared by web, bundle and tootctl

def parse_dotenv(text):
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value[1:-1])
        env[key.strip()] = value
    return env


def mastodon_version(app=APP):
    path = os.path.join(app, "lib/mastodon/version.rb")
    try:
        with open(path) as f:
            src = f.read()
    except OSError as e:
        raise Fail(f"cannot read the Mastodon version: {e}")

    def num(name):
        m = re.search(r"def %s\s*\n\s*(\d+)" % name, src)
        if not m:
            raise Fail(f"cannot read {name} from {path}")
        return m.group(1)

    version = ".".join(num(n) for n in ("major", "minor", "patch"))
    m = re.search(r"def default_prerelease\s*\n\s*'([^']*)'", src)
    pre = os.environ.get("MASTODON_VERSION_PRERELEASE") or (m.group(1) if m else "")
    return version + (f"-{pre}" if pre else "")


def rails_env():
    return os.environ.get("RAILS_ENV") or "development"


def load_app_env(app=APP):
    """What Rails would load: .env.production in production (required: secrets live there)."""
    if rails_env() != "production":
        return {}
    path = os.path.join(app, ".env.production")
    try:
        with open(path) as f:
            env = parse_dotenv(f.read())
    except FileNotFoundError:
        raise Fail(f"{path} is missing: ArgumentError: Missing `secret_key_base` for 'production' environment")
    except PermissionError:
        raise Fail(f"{path} is not readable by {current_user()}: Permission denied")
    if not env.get("SECRET_KEY_BASE"):
        raise Fail("ArgumentError: Missing `secret_key_base` for 'production' environment")
    return env


def db_params(env):
    name = env.get("DB_NAME", "mastodon_production") if rails_env() == "production" else "mastodon_development"
    return {
        "host": env.get("DB_HOST", "/var/run/postgresql") or "/var/run/postgresql",
        "port": env.get("DB_PORT", "5432") or "5432",
        "user": env.get("DB_USER", current_user()) or current_user(),
        "name": name,
        "password": env.get("DB_PASS", ""),
    }


def psql(env, sql):
    p = db_params(env)
    penv = dict(os.environ, PGCONNECT_TIMEOUT="5")
    if p["password"]:
        penv["PGPASSWORD"] = p["password"]
    cmd = ["psql", "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", p["host"], "-p", p["port"],
           "-U", p["user"], "-d", p["name"], "-c", sql]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=penv)
    except subprocess.TimeoutExpired:
        raise Fail(f"database {p['name']}: query timed out")
    if r.returncode != 0:
        msg = r.stderr.strip().splitlines()
        raise Fail(f"database {p['name']} as {p['user']}: {msg[-1] if msg else 'psql failed'}")
    return r.stdout.strip()


def redis_ping(env):
    redis_ping_at(env.get("REDIS_HOST", "localhost") or "localhost", int(env.get("REDIS_PORT", "6379") or "6379"),
                  env.get("REDIS_PASSWORD", ""))


def redis_ping_at(host, port, password=""):
    try:
        with socket.create_connection(("127.0.0.1" if host == "localhost" else host, port), timeout=3) as s:
            f = s.makefile("rwb")
            if password:
                f.write(b"AUTH %s\r\n" % password.encode())
                f.flush()
                f.readline()
            f.write(b"PING\r\n")
            f.flush()
            reply = f.readline().strip()
    except OSError as e:
        raise Fail(f"redis {host}:{port}: {e}")
    if reply != b"+PONG":
        raise Fail(f"redis {host}:{port}: PING answered {reply.decode(errors='replace')}")


def instance_check():
    """Raise Fail with the reason unless the app could really serve: secrets, DB as the app's role, Redis."""
    env = load_app_env()
    out = psql(env, "SELECT (SELECT count(*) FROM accounts), "
                    "has_table_privilege('statuses', 'INSERT,UPDATE,DELETE') "
                    "AND has_sequence_privilege('statuses_id_seq', 'USAGE')")
    count, writable = out.split("|")
    if writable != "t":
        raise Fail(f"database {db_params(env)['name']}: {current_user()} cannot write statuses")
    redis_ping(env)
    return env, int(count)


# ---------------------------------------------------------------------------------------------
# bundle

def find_gemfile(start):
    d = start
    while True:
        if os.path.isfile(os.path.join(d, "Gemfile")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def bundle_main(args):
    if not args or args[0] in ("install", "check"):
        print("Bundle complete!")
        return 0
    if args[0] == "config":
        return 0
    if args[:1] in (["-v"], ["--version"], ["version"]):
        print("Bundler version 2.5.22")
        return 0
    app = find_gemfile(os.getcwd())
    if app is None:
        raise Fail("Could not locate Gemfile or .bundle/ directory", 10)
    if args[:1] == ["exec"] and len(args) >= 3 and os.path.basename(args[1]) in ("rails", "rake") \
            and "assets:precompile" in args[2:]:
        # rake accepts VAR=value arguments as environment.
        for a in args[2:]:
            k, sep, v = a.partition("=")
            if sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", k):
                os.environ[k] = v
        return precompile(app)
    return 0


def precompile(app):
    env = rails_env()
    load_app_env(app)
    # Mastodon's webpacker config: production -> public/packs, development -> public/packs-dev.
    out = {"production": "packs", "test": "packs-test"}.get(env, "packs-dev")
    outdir = os.path.join(app, "public", out)
    print(f"Compiling assets for RAILS_ENV={env}...", flush=True)
    manifest = {}
    for name, ext in (("application", "js"), ("common", "js"), ("common", "css"), ("mastodon-light", "css")):
        body = f"/* {name}.{ext} built by the hikkoshi lab stand-in for {mastodon_version(app)} */\n".encode()
        digest = hashlib.sha256(body).hexdigest()[:20]
        rel = f"{ext}/{name}-{digest}.{ext}"
        os.makedirs(os.path.join(outdir, ext), exist_ok=True)
        with open(os.path.join(outdir, rel), "wb") as f:
            f.write(body)
        manifest[f"{name}.{ext}"] = f"/{out}/{rel}"
    manifest["entrypoints"] = {"application": {"assets": {"js": [manifest["application.js"]]}}}
    tmp = os.path.join(outdir, ".manifest.json.tmp")
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp, os.path.join(outdir, "manifest.json"))
    print(f"Compiled all packs in {outdir}")
    return 0


# ---------------------------------------------------------------------------------------------
# tootctl

TOOTCTL_COMMANDS = {("feeds", "build"), ("feeds", "clear"), ("search", "deploy"), ("cache", "clear")}


def tootctl_main(args):
    if not args or args[0] in ("help", "--help", "-h"):
        print("Commands:\n  tootctl feeds build\n  tootctl search deploy\n  tootctl version")
        return 0
    if args[0] in ("version", "--version", "-v"):
        print(mastodon_version())
        return 0
    cmd = tuple(args[:2])
    if cmd not in TOOTCTL_COMMANDS:
        raise Fail(f'Could not find command "{" ".join(args[:2])}".')
    _env, accounts = instance_check()
    if cmd == ("feeds", "build"):
        print(f"OK, processed feeds of local users ({accounts} accounts in the database)")
    elif cmd == ("search", "deploy"):
        print("Done! (Elasticsearch is not part of the lab; nothing was indexed)")
    else:
        print("OK")
    return 0


# ---------------------------------------------------------------------------------------------
# systemctl

class Unit:
    def __init__(self, name):
        path = os.path.join(UNIT_DIR, name + ".service")
        if not os.path.exists(path):
            raise KeyError(name)
        real = os.path.realpath(path)
        self.path = real
        self.name = os.path.basename(real)[: -len(".service")]
        self.sections = {}
        section = None
        with open(real) as f:
            for raw in f:
                line = raw.strip()
                if not line or line.startswith(("#", ";")):
                    continue
                if line.startswith("[") and line.endswith("]"):
                    section = self.sections.setdefault(line[1:-1], [])
                    continue
                k, _, v = line.partition("=")
                section.append((k.strip(), v.strip()))

    def get(self, key, default=None, section="Service"):
        vals = [v for k, v in self.sections.get(section, []) if k == key]
        return vals[-1] if vals else default

    def get_all(self, key, section="Service"):
        return [v for k, v in self.sections.get(section, []) if k == key]

    @property
    def unit_id(self):
        return self.name + ".service"

    @property
    def description(self):
        return self.get("Description", self.name, section="Unit")

    @property
    def forking(self):
        return self.get("Type", "simple") == "forking"

    def environment(self):
        pw = pwd.getpwnam(self.get("User", "root"))
        env = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": pw.pw_dir, "USER": pw.pw_name,
               "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell}
        for item in self.get_all("Environment"):
            for assignment in shlex.split(item):
                k, _, v = assignment.partition("=")
                env[k] = v
        # A service the lab itself starts does not record its own calls either (misskey's start).
        if os.environ.get("HIKKOSHI_LAB_INTERNAL") == "1":
            env["HIKKOSHI_LAB_INTERNAL"] = "1"
        return env

    # -- state -----------------------------------------------------------------------------
    def marker(self, kind):
        return os.path.join(UNIT_DIR, f"{self.name}.{kind}")

    @property
    def enabled(self):
        return os.path.exists(self.marker("enabled"))

    @property
    def masked(self):
        return os.path.exists(self.marker("masked"))

    @property
    def pidfile(self):
        return self.get("PIDFile") or os.path.join(RUN_DIR, self.name + ".pid")

    @property
    def startfile(self):
        return os.path.join(RUN_DIR, self.name + ".start")

    def main_pid(self):
        """The unit's main process if it is alive (not a zombie, not a recycled pid), else None."""
        try:
            with open(self.pidfile) as f:
                first = f.readline().strip()
        except OSError:
            return None
        if not first.isdigit():
            return None
        pid, start = int(first), None
        if not self.forking:
            # The process start time (in /proc/PID/stat) tells a recycled pid from ours.
            try:
                with open(self.startfile) as f:
                    start = int(f.read().strip())
            except (OSError, ValueError):
                return None
        st = proc_stat(pid)
        if st is None or st[0] in "ZX" or (start is not None and st[1] != start):
            return None
        return pid

    @property
    def failed(self):
        return os.path.exists(os.path.join(RUN_DIR, self.name + ".failed"))

    def active_state(self):
        if self.main_pid():
            return "active"
        # A pid file whose process is gone: the service died without `stop` (which removes it).
        if self.failed or os.path.exists(self.pidfile):
            return "failed"
        return "inactive"

    def unit_file_state(self):
        if self.masked:
            return "masked"
        return "enabled" if self.enabled else "disabled"


def proc_stat(pid):
    """(state, starttime) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[19])


def all_unit_names():
    try:
        files = sorted(os.listdir(UNIT_DIR))
    except FileNotFoundError:
        return []
    return [f[: -len(".service")] for f in files if f.endswith(".service")]


def set_marker(path, on):
    if on:
        with open(path, "w"):
            pass
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def run_as(unit, argv, timeout):
    pw = pwd.getpwnam(unit.get("User", "root"))
    log = open(os.path.join(LOG_DIR, unit.name + ".log"), "ab")
    try:
        return subprocess.run(argv, cwd=unit.get("WorkingDirectory", "/"), env=unit.environment(),
                              user=pw.pw_uid, group=pw.pw_gid,
                              extra_groups=os.getgrouplist(pw.pw_name, pw.pw_gid),
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=timeout,
                              start_new_session=True).returncode
    except subprocess.TimeoutExpired:
        return 124
    finally:
        log.close()


def listening_sockets(port):
    """Inodes of the sockets listening on a TCP port (in this network namespace)."""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    return inodes


def process_group_holds(pgid, targets):
    """True if a process of the group (the service and its children) has one of the fds."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.getpgid(int(d)) != pgid:
                continue
            for fd in os.listdir(f"/proc/{d}/fd"):
                if os.readlink(f"/proc/{d}/fd/{fd}") in targets:
                    return True
        except OSError:
            continue
    return False


def wait_ready(unit, pid_fn, timeout):
    """Like Type=notify: return True once the service itself listens (and answers), False if it died."""
    spec = unit.get("X-LabReady", "")
    deadline = time.time() + timeout
    kind, _, rest = spec.partition(":")
    while time.time() < deadline:
        pid = pid_fn()
        if not pid:
            return False
        try:
            if not kind:
                time.sleep(0.3)
                return bool(pid_fn())
            host, port = rest.rsplit(":", 1)
            # The port must be the service's own: someone else listening there is not "ready".
            if process_group_holds(pid, listening_sockets(int(port))):
                if kind == "tcp":
                    return True
                with socket.create_connection((host, int(port)), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.makefile("rb").readline().strip() == b"+PONG":
                        return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def usec():
    """CLOCK_MONOTONIC in microseconds, as systemd's *TimestampMonotonic properties."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def stamp(unit, name):
    """Records a state change as systemd does (InactiveExit, ActiveEnter, ActiveExit, InactiveEnter),
    so `systemctl show` can tell how long the last start and stop took."""
    path = os.path.join(RUN_DIR, unit.name + ".stamps")
    try:
        with open(path) as f:
            stamps = json.load(f)
    except (OSError, ValueError):
        stamps = {}
    stamps[name] = usec()
    with open(path + ".tmp", "w") as f:
        json.dump(stamps, f)
    os.replace(path + ".tmp", path)


def stamps_of(unit):
    try:
        with open(os.path.join(RUN_DIR, unit.name + ".stamps")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def start_unit(unit):
    if unit.masked:
        raise Fail(f"Failed to start {unit.unit_id}: Unit {unit.unit_id} is masked.")
    if unit.main_pid():
        return
    stamp(unit, "InactiveExit")
    try:
        start_unit_now(unit)
    finally:
        if unit.main_pid():
            stamp(unit, "ActiveEnter")


def start_unit_now(unit):
    set_marker(os.path.join(RUN_DIR, unit.name + ".failed"), False)
    timeout = float(unit.get("TimeoutStartSec", "90"))
    if unit.forking:
        rc = run_as(unit, shlex.split(unit.get("ExecStart")), timeout)
        ok = rc == 0 and wait_ready(unit, unit.main_pid, timeout)
    else:
        pw = pwd.getpwnam(unit.get("User", "root"))
        with open(os.path.join(LOG_DIR, unit.name + ".log"), "ab") as log:
            p = subprocess.Popen(shlex.split(unit.get("ExecStart")), cwd=unit.get("WorkingDirectory", "/"),
                                 env=unit.environment(), user=pw.pw_uid, group=pw.pw_gid,
                                 extra_groups=os.getgrouplist(pw.pw_name, pw.pw_gid),
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, umask=0o022)
        st = proc_stat(p.pid)
        with open(unit.startfile, "w") as f:
            f.write(f"{st[1] if st else 0}\n")
        with open(unit.pidfile + ".tmp", "w") as f:
            f.write(f"{p.pid}\n")
        os.replace(unit.pidfile + ".tmp", unit.pidfile)

        def alive():
            return unit.main_pid() if p.poll() is None else None

        ok = wait_ready(unit, alive, timeout)
        if not ok:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    if not ok:
        set_marker(os.path.join(RUN_DIR, unit.name + ".failed"), True)
        raise Fail(f"Job for {unit.unit_id} failed because the control process exited with error code.\n"
                   f'See "systemctl status {unit.unit_id}" and "journalctl -xeu {unit.unit_id}" for details.\n'
                   f"(lab: the service's output is in {LOG_DIR}/{unit.name}.log)")


def stop_unit(unit):
    set_marker(os.path.join(RUN_DIR, unit.name + ".failed"), False)
    pid = unit.main_pid()
    if not pid:
        if not unit.forking:
            set_marker(unit.pidfile, False)
            set_marker(unit.startfile, False)
        return
    stamp(unit, "ActiveExit")
    try:
        stop_unit_now(unit, pid)
    finally:
        stamp(unit, "InactiveEnter")


def stop_unit_now(unit, pid):
    timeout = float(unit.get("TimeoutStopSec", "90"))
    stop_cmd = unit.get("ExecStop")
    if stop_cmd:
        run_as(unit, shlex.split(stop_cmd), timeout)
    else:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    # Wait for the process to be really gone: a Redis writes its dump.rdb before it exits.
    deadline = time.time() + timeout
    while unit.main_pid() and time.time() < deadline:
        time.sleep(0.05)
    if unit.main_pid():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        while unit.main_pid():
            time.sleep(0.05)
    if not unit.forking:
        set_marker(unit.pidfile, False)
        set_marker(unit.startfile, False)


MUTATING = {"start", "stop", "restart", "try-restart", "reload", "reload-or-restart", "enable", "disable",
            "mask", "unmask", "kill", "reset-failed", "daemon-reload", "daemon-reexec"}


def parse_systemctl_args(args):
    opts = {"now": False, "quiet": False, "legend": True, "value": False, "props": [], "all": False,
            "types": [], "states": [], "signal": "SIGTERM", "version": False}
    # option -> where its value goes (None: accepted and ignored)
    long_valued = {"--property": "props", "--type": "types", "--state": "states", "--signal": "signal",
                   "--lines": None, "--output": None, "--host": None}
    short_valued = {"-p": "props", "-t": "types", "-s": "signal", "-n": None, "-o": None, "-H": None}
    flags = {"--now": "now", "-q": "quiet", "--quiet": "quiet", "--value": "value", "-a": "all", "--all": "all",
             "--version": "version"}
    ignored = {"--no-pager", "--no-block", "--plain", "--full", "-l", "--system", "--no-ask-password",
               "--no-reload", "--force", "-f", "--no-wall"}
    words = []
    it = iter(args)

    def store(key, val):
        if key == "signal":
            opts["signal"] = val
        elif key:
            opts[key].extend(v for v in val.split(",") if v)

    def value_of(name, inline):
        if inline is not None:
            return inline
        try:
            return next(it)
        except StopIteration:
            raise Fail(f"systemctl: option '{name}' requires an argument")

    for a in it:
        if a == "--":
            words.extend(it)
            break
        if not a.startswith("-") or a == "-":
            words.append(a)
        elif a == "--no-legend":
            opts["legend"] = False
        elif a in flags:
            opts[flags[a]] = True
        elif a in ignored:
            pass
        elif a.startswith("--") and a.partition("=")[0] in long_valued:
            name, eq, val = a.partition("=")
            store(long_valued[name], value_of(name, val if eq else None))
        elif a[:2] in short_valued:
            store(short_valued[a[:2]], value_of(a[:2], a[2:] or None))
        else:
            raise Fail(f"systemctl: unrecognized option '{a}'")
    return opts, words


def resolve_units(patterns, verb):
    """Unit objects for patterns (globs allowed); unknown names raise with systemd's wording."""
    names = all_unit_names()
    units, seen = [], set()
    for pat in patterns:
        base = pat[: -len(".service")] if pat.endswith(".service") else pat
        if any(c in pat for c in "*?["):
            matched = [n for n in names if fnmatch.fnmatchcase(n + ".service", pat) or fnmatch.fnmatchcase(n, pat)]
        else:
            if "." in base and not pat.endswith(".service"):
                matched = []
            else:
                matched = [base] if base in names else []
            if not matched:
                uid = pat if "." in pat else pat + ".service"
                if verb in ("enable", "disable", "mask", "unmask"):
                    raise Fail(f"Failed to {verb} unit: Unit file {uid} does not exist.", 1)
                if verb == "stop":
                    raise Fail(f"Failed to stop {uid}: Unit {uid} not loaded.", 5)
                raise Fail(f"Failed to {verb} {uid}: Unit {uid} not found.", 5)
        for n in matched:
            u = Unit(n)
            if u.name not in seen:
                seen.add(u.name)
                units.append(u)
    return units


def show_props(unit, name):
    if unit is None:
        uid = name if "." in name else name + ".service"
        return {"Id": uid, "Names": uid, "LoadState": "not-found", "ActiveState": "inactive",
                "SubState": "dead", "UnitFileState": "", "MainPID": "0", "Description": uid,
                "FragmentPath": "", "Result": "success"}
    pid = unit.main_pid()
    state = unit.active_state()
    stamps = stamps_of(unit)
    return {
        **{f"{k}TimestampMonotonic": str(stamps.get(k, 0))
           for k in ("InactiveExit", "ActiveEnter", "ActiveExit", "InactiveEnter")},
        "Id": unit.unit_id,
        "Names": unit.unit_id,
        "Description": unit.description,
        "LoadState": "masked" if unit.masked else "loaded",
        "ActiveState": state,
        "SubState": {"active": "running", "failed": "failed"}.get(state, "dead"),
        "UnitFileState": unit.unit_file_state(),
        "UnitFilePreset": "enabled",
        "MainPID": str(pid or 0),
        "FragmentPath": unit.path,
        "User": unit.get("User", ""),
        "WorkingDirectory": unit.get("WorkingDirectory", ""),
        "Type": unit.get("Type", "simple"),
        "Result": "exit-code" if state == "failed" else "success",
    }


def lookup(name):
    base = name[: -len(".service")] if name.endswith(".service") else name
    try:
        return Unit(base)
    except KeyError:
        return None


def systemctl_main(args):
    opts, words = parse_systemctl_args(args)
    if opts["version"]:
        print("systemd 252 (hikkoshi lab stand-in)")
        return 0
    verb = words[0] if words else "list-units"
    targets = words[1:]
    if verb in MUTATING and os.getuid() != 0:
        what = f" {targets[0]}" if targets and verb not in ("enable", "disable", "mask", "unmask") else ""
        raise Fail(f"Failed to {verb}{what or ' unit'}: Interactive authentication required.", 1)

    if verb in ("start", "stop", "restart", "try-restart", "reload-or-restart", "reload", "kill"):
        if not targets:
            raise Fail("Too few arguments.")
        code, errors = 0, []
        # As systemd does, the jobs of one start or stop run at once: `systemctl stop a b c`
        # takes as long as the slowest unit, not the sum.
        if verb in ("start", "stop") and len(targets) > 1:
            units, failures = [], []
            for pat in targets:
                try:
                    units += [u for u in resolve_units([pat], verb) if u.name not in {x.name for x in units}]
                except Fail as e:
                    failures.append(e)
            results = [None] * len(units)

            def act(i, u):
                try:
                    (start_unit if verb == "start" else stop_unit)(u)
                except Fail as e:
                    results[i] = e

            threads = [threading.Thread(target=act, args=(i, u)) for i, u in enumerate(units)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for e in failures + [r for r in results if r is not None]:
                errors.append(str(e))
                code = code or e.code
            for e in errors:
                err(e)
            return code
        for pat in targets:
            try:
                for u in resolve_units([pat], verb):
                    if verb == "start":
                        start_unit(u)
                    elif verb == "stop":
                        stop_unit(u)
                    elif verb in ("restart", "reload-or-restart"):
                        stop_unit(u)
                        start_unit(u)
                    elif verb == "try-restart":
                        if u.main_pid():
                            stop_unit(u)
                            start_unit(u)
                    elif verb == "reload":
                        cmd = u.get("ExecReload")
                        if not cmd:
                            raise Fail(f"Failed to reload {u.unit_id}: Job type reload is not applicable "
                                       f"for unit {u.unit_id}.")
                        if u.main_pid() and run_as(u, shlex.split(cmd), 90) != 0:
                            raise Fail(f"Job for {u.unit_id} failed.")
                    elif verb == "kill":
                        pid = u.main_pid()
                        if pid:
                            sig = opts["signal"].upper()
                            sig = getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig)
                            os.killpg(pid, sig)
            except Fail as e:
                errors.append(str(e))
                code = code or e.code
        for e in errors:
            err(e)
        return code

    if verb in ("enable", "disable", "mask", "unmask"):
        if not targets:
            raise Fail("Too few arguments.")
        units = resolve_units(targets, verb)
        for u in units:
            if verb == "enable":
                if u.masked:
                    raise Fail(f"Failed to enable unit: Unit file {u.path} is masked.")
                if not u.enabled:
                    set_marker(u.marker("enabled"), True)
                    err(f"Created symlink /etc/systemd/system/multi-user.target.wants/{u.unit_id} → {u.path}.")
            elif verb == "disable":
                if u.enabled:
                    set_marker(u.marker("enabled"), False)
                    err(f'Removed "/etc/systemd/system/multi-user.target.wants/{u.unit_id}".')
            elif verb == "mask":
                if not u.masked:
                    set_marker(u.marker("masked"), True)
                    err(f"Created symlink /etc/systemd/system/{u.unit_id} → /dev/null.")
            elif verb == "unmask":
                if u.masked:
                    set_marker(u.marker("masked"), False)
                    err(f'Removed "/etc/systemd/system/{u.unit_id}".')
        if opts["now"]:
            for u in units:
                if verb == "enable":
                    start_unit(u)
                elif verb in ("disable", "mask"):
                    stop_unit(u)
        return 0

    if verb in ("is-active", "is-failed", "is-enabled"):
        if not targets:
            raise Fail("Too few arguments.")
        expanded = []
        for t in targets:
            if any(c in t for c in "*?["):
                expanded += [n for n in all_unit_names()
                             if fnmatch.fnmatchcase(n + ".service", t) or fnmatch.fnmatchcase(n, t)]
            else:
                expanded.append(t)
        results = []
        for t in expanded:
            u = lookup(t)
            if verb == "is-enabled":
                if u is None:
                    uid = t if "." in t else t + ".service"
                    raise Fail(f"Failed to get unit file state for {uid}: No such file or directory", 1)
                results.append(u.unit_file_state())
            else:
                results.append(u.active_state() if u else "inactive")
        if not opts["quiet"]:
            print("\n".join(results))
        if verb == "is-active":
            return 0 if all(r == "active" for r in results) else 3
        if verb == "is-failed":
            return 0 if any(r == "failed" for r in results) else 1
        return 0 if all(r == "enabled" for r in results) else 1

    if verb == "show":
        blocks = []
        for t in targets or []:
            u = lookup(t)
            props = show_props(u, t)
            keys = opts["props"] or list(props)
            lines = []
            for k in keys:
                v = props.get(k, "")
                lines.append(v if opts["value"] else f"{k}={v}")
            blocks.append("\n".join(lines))
        if blocks:
            print("\n\n".join(blocks))
        return 0

    if verb == "status":
        code = 0
        for i, t in enumerate(targets or all_unit_names()):
            u = lookup(t)
            if u is None:
                uid = t if "." in t else t + ".service"
                err(f"Unit {uid} could not be found.")
                code = 4
                continue
            pid = u.main_pid()
            state = u.active_state()
            sub = {"active": "running", "failed": "failed"}.get(state, "dead")
            dot = {"active": "●", "failed": "×"}.get(state, "○")
            if i:
                print()
            print(f"{dot} {u.unit_id} - {u.description}")
            print(f"     Loaded: loaded ({u.path}; {u.unit_file_state()}; preset: enabled)")
            print(f"     Active: {state} ({sub})")
            if pid:
                print(f"   Main PID: {pid}")
            if state != "active" and code == 0:
                code = 3
        return code

    if verb == "cat":
        for t in targets:
            u = lookup(t)
            if u is None:
                raise Fail(f"No files found for {t}.", 1)
            print(f"# {u.path}")
            with open(u.path) as f:
                print(f.read(), end="")
        return 0

    if verb == "list-unit-files":
        names = all_unit_names()
        if targets:
            names = [n for n in names if any(fnmatch.fnmatchcase(n + ".service", p) or fnmatch.fnmatchcase(n, p)
                                             for p in targets)]
        rows = []
        for n in names:
            path = os.path.join(UNIT_DIR, n + ".service")
            if os.path.islink(path):
                rows.append((n + ".service", "alias", "-"))
            else:
                rows.append((n + ".service", Unit(n).unit_file_state(), "enabled"))
        if opts["states"]:
            rows = [r for r in rows if r[1] in opts["states"]]
        w = max([len("UNIT FILE")] + [len(r[0]) for r in rows]) + 1
        if opts["legend"]:
            print(f"{'UNIT FILE':<{w}} {'STATE':<15} VENDOR PRESET")
        for r in rows:
            print(f"{r[0]:<{w}} {r[1]:<15} {r[2]}")
        if opts["legend"]:
            print(f"\n{len(rows)} unit files listed.")
        return 0

    if verb == "list-units":
        rows = []
        for n in all_unit_names():
            if os.path.islink(os.path.join(UNIT_DIR, n + ".service")):
                continue
            u = Unit(n)
            if targets and not any(fnmatch.fnmatchcase(u.unit_id, p) or fnmatch.fnmatchcase(n, p) for p in targets):
                continue
            st = u.active_state()
            sub = {"active": "running", "failed": "failed"}.get(st, "dead")
            if opts["states"] and st not in opts["states"] and sub not in opts["states"]:
                continue
            if not opts["all"] and not opts["states"] and st == "inactive":
                continue
            rows.append((u.unit_id, "loaded", st, sub, u.description))
        if opts["legend"]:
            print(f"{'UNIT':<28} {'LOAD':<6} {'ACTIVE':<8} {'SUB':<8} DESCRIPTION")
        for r in rows:
            print(f"{r[0]:<28} {r[1]:<6} {r[2]:<8} {r[3]:<8} {r[4]}")
        if opts["legend"]:
            print(f"\n{len(rows)} loaded units listed.")
        return 0

    if verb in ("daemon-reload", "daemon-reexec"):
        return 0
    if verb == "reset-failed":
        for u in resolve_units(targets, verb) if targets else [Unit(n) for n in all_unit_names()]:
            set_marker(os.path.join(RUN_DIR, u.name + ".failed"), False)
            if not u.forking and not u.main_pid():
                set_marker(u.pidfile, False)
                set_marker(u.startfile, False)
        return 0
    raise Fail(f"Unknown command verb '{verb}'.", 1)


# ---------------------------------------------------------------------------------------------
# services

class QuietServer(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(handler, default_port, port=None, bind=None):
    bind = bind or os.environ.get("BIND", "127.0.0.1")
    port = port or int(os.environ.get("PORT", default_port))
    server = QuietServer((bind, port), handler)

    def on_term(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"listening on {bind}:{port}", flush=True)
    try:
        server.serve_forever()
    except SystemExit:
        pass


class WebHandler(http.server.BaseHTTPRequestHandler):
    server_version = "hikkoshi-lab-web"

    def reply(self, code, body, ctype="text/plain; charset=utf-8"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        try:
            env, _ = instance_check()
            problem = None
        except Fail as e:
            env, problem = {}, str(e)
        except Exception as e:  # a stand-in bug must not look like a healthy instance
            env, problem = {}, f"internal error: {e!r}"
        if path == "/health":
            self.reply(200, "OK") if problem is None else self.reply(503, problem + "\n")
        elif path in ("/api/v1/instance", "/api/v2/instance"):
            if problem is not None:
                self.reply(503, json.dumps({"error": problem}), "application/json")
            else:
                domain = env.get("LOCAL_DOMAIN", "")
                self.reply(200, json.dumps({"uri": domain, "domain": domain, "title": "Mastodon",
                                            "version": mastodon_version()}), "application/json")
        elif problem is not None:
            try:
                with open(os.path.join(APP, "public/500.html"), "rb") as f:
                    page = f.read()
            except OSError:
                page = b"We're sorry, but something went wrong.\n"
            self.reply(500, page, "text/html; charset=utf-8")
        else:
            self.reply(200, "<!DOCTYPE html><title>Mastodon</title><p>hikkoshi lab stand-in</p>\n",
                       "text/html; charset=utf-8")

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), fmt % args))
        sys.stderr.flush()


class StreamingHandler(WebHandler):
    def do_GET(self):
        if self.path.split("?", 1)[0] == "/api/v1/streaming/health":
            self.reply(200, "OK")
        else:
            self.reply(404, "Not Found\n")


def web_main(_args):
    serve(WebHandler, "3000")


def streaming_main(_args):
    serve(StreamingHandler, "4000")


def sidekiq_main(_args):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("sidekiq stand-in: idle worker (processes no jobs)", flush=True)
    while True:
        time.sleep(3600)


# ---------------------------------------------------------------------------------------------
# Misskey and Pleasanter: database checks shared by their services and the dotnet tool

def pg_socket(host):
    """The lab's PostgreSQL listens on its Unix socket only: localhost means the socket."""
    if not host or host in ("localhost", "127.0.0.1", "::1"):
        return "/var/run/postgresql"
    return host


def app_psql(db, user, sql, host="localhost", port="5432", password="", runas=None):
    """Run SQL (a script, fed on stdin) as database role USER; returns stdout, raises Fail with psql's error."""
    penv = dict(os.environ, PGCONNECT_TIMEOUT="5")
    if password:
        penv["PGPASSWORD"] = password
    cmd = ["psql", "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", pg_socket(host), "-p", str(port),
           "-U", user, "-d", db, "-f", "-"]
    if runas:
        cmd = ["runuser", "-u", runas, "--"] + cmd
    try:
        r = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=20, env=penv, cwd="/")
    except subprocess.TimeoutExpired:
        raise Fail(f"database {db}: query timed out")
    if r.returncode != 0:
        msg = [line for line in r.stderr.strip().splitlines() if line.strip()]
        raise Fail(f"database {db} as {user}: {msg[-1] if msg else 'psql failed'}")
    return r.stdout


# Every table of schema public must be readable: a database restored as postgres with --no-owner
# and without grants fails here with "permission denied for table ...".
ALL_TABLES_SQL = """SELECT count(*) FROM pg_tables WHERE schemaname = 'public';
SELECT format('SELECT 1 FROM %I.%I LIMIT 1', schemaname, tablename) FROM pg_tables
WHERE schemaname = 'public' ORDER BY tablename \\gexec
"""


def check_all_tables(db, user, **kw):
    out = app_psql(db, user, ALL_TABLES_SQL, **kw)
    n = int(out.split()[0])
    if n == 0:
        raise Fail(f"database {db}: no tables in schema public")
    return n


class AppHandler(WebHandler):
    """GET on the paths in `routes` runs the check; 200 if it passes, 503 with the reason if not."""
    routes = {}

    def check(self):
        raise NotImplementedError

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path not in self.routes:
            self.reply(404, "Not Found\n")
            return
        try:
            self.check()
        except Fail as e:
            self.reply(503, f"{e}\n")
            return
        except Exception as e:  # a stand-in bug must not look like a healthy instance
            self.reply(503, f"internal error: {e!r}\n")
            return
        body, ctype = self.routes[path]
        self.reply(200, body, ctype)


# ---------------------------------------------------------------------------------------------
# Misskey (service `misskey`, in /home/misskey/misskey)

def yaml_scalar(text):
    """A plain, 'single' or "double" quoted YAML scalar, with a trailing comment removed."""
    text = text.strip()
    if text[:1] == "'":
        end = 1
        while True:
            end = text.find("'", end)
            if end < 0:
                raise ValueError(f"unterminated quote in {text!r}")
            if text[end + 1:end + 2] == "'":
                end += 2
                continue
            return text[1:end].replace("''", "'")
    if text[:1] == '"':
        m = re.match(r'"((?:[^"\\]|\\.)*)"', text)
        if not m:
            raise ValueError(f"unterminated quote in {text!r}")
        return re.sub(r'\\(.)', lambda x: {"n": "\n", "t": "\t"}.get(x.group(1), x.group(1)), m.group(1))
    return re.split(r"\s#", text, 1)[0].strip()


def parse_misskey_yaml(text):
    """Misskey's default.yml as far as the stand-in needs it: top-level `key: value` lines and one
    level of `key: value` under a `key:` line. List items, flow collections and deeper levels are
    skipped (a tiny reader for a flat file, not YAML)."""
    top, block = {}, None
    for raw in text.splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        line = raw.strip()
        if line.startswith("-"):
            continue
        m = re.match(r"([A-Za-z0-9_]+):(?:\s+(.*))?$", line)
        if not m:
            continue
        key, value = m.group(1), yaml_scalar(m.group(2) or "")
        if indent == 0:
            if value == "":
                block = top[key] = {}
            else:
                top[key], block = value, None
        elif block is not None:
            block.setdefault(key, value)
    return top


def misskey_config(app):
    path = os.path.join(app, ".config", "default.yml")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise Fail(f"Error: ENOENT: no such file or directory, open '{path}'")
    except PermissionError:
        raise Fail(f"Error: EACCES: permission denied, open '{path}'")
    try:
        cfg = parse_misskey_yaml(text)
    except ValueError as e:
        raise Fail(f"{path}: {e}")
    db = cfg.get("db") if isinstance(cfg.get("db"), dict) else {}
    for key in ("url", "port"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise Fail(f"{path}: {key} is not set")
    for key in ("host", "db", "user"):
        if not db.get(key):
            raise Fail(f"{path}: db.{key} is not set")
    if not cfg["port"].isdigit():
        raise Fail(f"{path}: port is not a number: {cfg['port']!r}")
    return cfg


def misskey_db_args(cfg):
    db = cfg["db"]
    return db["db"], db["user"], {"host": db["host"], "port": db.get("port") or "5432", "password": db.get("pass", "")}


class MisskeyHandler(AppHandler):
    server_version = "hikkoshi-lab-misskey"
    routes = {"/healthz": ("OK", "text/plain; charset=utf-8")}
    config = None

    def check(self):
        cfg = self.config
        db, user, kw = misskey_db_args(cfg)
        check_all_tables(db, user, **kw)
        redis = cfg.get("redis") if isinstance(cfg.get("redis"), dict) else {}
        redis_ping_at(redis.get("host") or "localhost", int(redis.get("port") or 6379), redis.get("pass", ""))


def misskey_main(_args):
    """`pnpm start`: check the config, run the migrations (here: read the migrations table, write
    nothing), serve. Without a readable config it exits 1 as the real one does; a database it cannot
    read is logged and recorded, and the server still starts so /healthz can tell why."""
    ts, app = time.time(), os.getcwd()
    try:
        cfg = misskey_config(app)
    except Fail as e:
        err(str(e))
        record("misskey", [], 1, ts, app, {"event": "migrate", "error": str(e)})
        sys.exit(1)
    db, user, kw = misskey_db_args(cfg)
    try:
        out = app_psql(db, user, 'SELECT count(*), coalesce((SELECT name FROM migrations '
                                 'ORDER BY "timestamp" DESC, id DESC LIMIT 1), \'\') FROM migrations;', **kw)
        count, last = out.strip().split("|", 1)
        print(f"migrations: {count} applied (last {last}), nothing to do", flush=True)
        record("misskey", [], 0, ts, app, {"event": "migrate", "migrations": int(count)})
    except Fail as e:
        err(f"migrations: {e}")
        record("misskey", [], 1, ts, app, {"event": "migrate", "error": str(e)})
    print(f"Misskey {misskey_version(app)} for {cfg['url']}", flush=True)
    MisskeyHandler.config = cfg
    serve(MisskeyHandler, "3001", port=int(cfg["port"]), bind="127.0.0.1")


def misskey_version(app):
    try:
        with open(os.path.join(app, "package.json")) as f:
            return json.load(f).get("version", "?")
    except (OSError, ValueError):
        return "?"


# ---------------------------------------------------------------------------------------------
# Pleasanter (service `pleasanter` in /web/pleasanter/Implem.Pleasanter; tool `dotnet`)

PLEASANTER_DB = "Implem.Pleasanter"
RDS_JSON = os.path.join("App_Data", "Parameters", "Rds.json")


def connection_string(text):
    """`Server=x;Port=5432;Database=y;UID=z;PWD=w` -> {"server": "x", ...} (keys lowercased)."""
    out = {}
    for part in (text or "").split(";"):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = v.strip()
    return out


def read_rds(path):
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise Fail(f"{path} is missing")
    except PermissionError:
        raise Fail(f"{path} is not readable by {current_user()}: Permission denied")
    try:
        rds = json.loads(text)
    except ValueError as e:
        raise Fail(f"{path}: invalid JSON: {e}")
    if not isinstance(rds, dict):
        raise Fail(f"{path}: not a JSON object")
    return rds


def rds_database(rds, path, names=("OwnerConnectionString", "UserConnectionString")):
    """The database the connection strings name; it must be Implem.Pleasanter in each of them."""
    if rds.get("Dbms") != "PostgreSQL":
        raise Fail(f"{path}: Dbms is {rds.get('Dbms')!r}, not PostgreSQL")
    for name in names:
        db = connection_string(rds.get(name)).get("database")
        if db != PLEASANTER_DB:
            raise Fail(f"{path}: {name} names Database={db}, expected {PLEASANTER_DB}")
    return PLEASANTER_DB


class PleasanterHandler(AppHandler):
    server_version = "Kestrel"
    routes = {"/": ("<!DOCTYPE html><title>Pleasanter</title><p>hikkoshi lab stand-in</p>\n",
                    "text/html; charset=utf-8")}
    rds_path = None

    def check(self):
        rds = read_rds(self.rds_path)
        db = rds_database(rds, self.rds_path)
        check_all_tables(db, "pleasanter")


def pleasanter_main(_args):
    """`dotnet Implem.Pleasanter.dll`: needs a readable Rds.json to start; GET / checks the rest per request."""
    path = os.path.join(os.getcwd(), RDS_JSON)
    try:
        with open(path):
            pass
    except OSError as e:
        err(f"Unhandled exception. System.IO.FileNotFoundException: Could not read {path}: {e.strerror}")
        sys.exit(1)
    url = os.environ.get("ASPNETCORE_URLS", "http://127.0.0.1:5000").split(";")[0]
    m = re.match(r"https?://([^:/]+|\[[^\]]+\]):(\d+)", url)
    bind, port = (m.group(1).strip("[]"), int(m.group(2))) if m else ("127.0.0.1", 5000)
    if bind == "localhost":
        bind = "127.0.0.1"
    PleasanterHandler.rds_path = path
    print(f"Now listening on: http://{bind}:{port}", flush=True)
    serve(PleasanterHandler, "5000", port=port, bind=bind)


def dotnet_main(args):
    """Only `dotnet Implem.CodeDefiner.dll _rds` (run in Implem.CodeDefiner/) is emulated: it checks
    what the real one needs (its dll, ../Implem.Pleasanter/App_Data/Parameters/Rds.json, the database
    reachable as pleasanter) and changes nothing."""
    if len(args) < 2 or os.path.basename(args[0]) != "Implem.CodeDefiner.dll" or args[1] != "_rds":
        raise Fail(f"dotnet {' '.join(args)}: not emulated by the hikkoshi lab stand-in")
    cwd = os.getcwd()
    if not os.path.isfile(args[0]) or not os.path.isfile(os.path.join(cwd, "Implem.CodeDefiner.dll")):
        raise Fail(f"Could not execute because the specified command or file was not found "
                   f"({args[0]} in {cwd}; run it in Implem.CodeDefiner/).")
    print("<INFO> Starter.Main: Implem.CodeDefiner 1.4.15.0", flush=True)
    path = os.path.normpath(os.path.join(cwd, "..", "Implem.Pleasanter", RDS_JSON))
    rds = read_rds(path)
    db = rds_database(rds, path, names=("OwnerConnectionString",))
    runas = "pleasanter" if os.getuid() == 0 else None
    app_psql(db, "pleasanter", "SELECT 1;", runas=runas)
    print(f"<INFO> Starter.Main: {db}: the tables are up to date.")
    print("<SUCCESS> Starter.Main: All of the processing has been completed.")
    return 0


# ---------------------------------------------------------------------------------------------

TOOLS = {"systemctl": systemctl_main, "bundle": bundle_main, "tootctl": tootctl_main, "dotnet": dotnet_main}
SERVICES = {"web": web_main, "sidekiq": sidekiq_main, "streaming": streaming_main, "misskey": misskey_main,
            "pleasanter": pleasanter_main}


def main():
    name = os.path.basename(sys.argv[0])
    args = sys.argv[1:]
    if name not in TOOLS:
        if not args or (args[0] not in TOOLS and args[0] not in SERVICES):
            err(f"usage: hikkoshi-standin {{{'|'.join(list(TOOLS) + list(SERVICES))}}} [ARGS...]")
            return 2
        name, args = args[0], args[1:]
    if name in SERVICES:
        SERVICES[name](args)
        return 0
    ts = time.time()
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = os.environ.get("PWD", "")
    code = 1
    try:
        code = TOOLS[name](args)
    except Fail as e:
        err(str(e))
        code = e.code
    except KeyboardInterrupt:
        code = 130
    finally:
        sys.stdout.flush()
        record(name, args, code, ts, cwd)
    return code


if __name__ == "__main__":
    sys.exit(main())
