#!/usr/bin/python3
"""Lab-internal helpers that run inside a host (via nsenter) for up/reset; not installed in hosts.

  labhelper.py kill-strays   end every process of the host except its init, the sshd listener,
                             PostgreSQL and the processes of the systemctl units (with their
                             children): leftover ssh sessions, dumps, copies from an earlier test.
  labhelper.py sshd-pid      print the pid of the running sshd listener, exit 1 if none
"""
import os
import signal
import socket
import sys
import time

STATE = "/var/lib/hikkoshi-host"
PGDATA = "/var/lib/postgresql/15/main"


def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return {"state": fields[0], "ppid": int(fields[1]), "start": int(fields[19]),
            "comm": data[data.index("(") + 1:data.rindex(")")]}


def pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def alive(pid, comm=None, start=None):
    st = stat(pid)
    return bool(st) and st["state"] not in "ZX" and (comm is None or st["comm"] == comm) \
        and (start is None or st["start"] == start)


def read_first_int(path):
    try:
        with open(path) as f:
            first = f.readline().strip()
        return int(first)
    except (OSError, ValueError):
        return None


def sshd_pid():
    pid = read_first_int(f"{STATE}/sshd.pid")
    return pid if pid and alive(pid, "sshd") else None


def service_roots():
    roots = []
    pm = read_first_int(f"{PGDATA}/postmaster.pid")
    if pm and alive(pm, "postgres"):
        roots.append(pm)
    run = f"{STATE}/run"
    for name in os.listdir(run) if os.path.isdir(run) else []:
        if not name.endswith(".pid"):
            continue
        pid = read_first_int(os.path.join(run, name))
        start = read_first_int(os.path.join(run, name[: -len(".pid")] + ".start"))
        if pid and start is not None and alive(pid, start=start):
            roots.append(pid)
    return roots


def kill_strays():
    children = {}
    for p in pids():
        st = stat(p)
        if st:
            children.setdefault(st["ppid"], []).append(p)
    keep = {1, os.getpid()}
    s = sshd_pid()
    if s:
        keep.add(s)  # the listener only: its children are sessions
    stack = service_roots()
    while stack:
        p = stack.pop()
        if p not in keep:
            keep.add(p)
            stack.extend(children.get(p, []))
    victims = [p for p in pids() if p not in keep and alive(p)]
    for p in victims:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + 3
    while time.time() < deadline and any(alive(p) for p in victims):
        time.sleep(0.05)
    for p in victims:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if victims:
        print(f"[lab {socket.gethostname()}] ended {len(victims)} leftover process(es)", file=sys.stderr)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "kill-strays":
        kill_strays()
    elif cmd == "sshd-pid":
        pid = sshd_pid()
        if not pid:
            return 1
        print(pid)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
