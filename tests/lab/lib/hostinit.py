#!/usr/bin/python3
"""Init process of one lab host.

Run (via nsenter) inside the host's network and mount namespaces as `hostinit.py HOSTNAME`.
It unshares new PID, UTS and IPC namespaces, forks, and the child becomes PID 1 of the host:
it sets the hostname, mounts a /proc that shows only the host's processes, and reaps orphans
(daemons started by the systemctl stand-in, sshd, pg_ctl are re-parented to it). The parent
prints the child's PID (as seen from the machine) and exits, so the host outlives `up`.
When this process dies, the kernel kills every process of the host: that is how `down` stops it.
"""
import ctypes
import os
import signal
import subprocess
import sys
import time

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000


def main():
    hostname = sys.argv[1].encode()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC) != 0:
        err = ctypes.get_errno()
        sys.exit(f"hostinit: unshare failed: {os.strerror(err)}")
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        # Wait until the child has mounted /proc, so callers can enter the host right away.
        status = os.read(r, 100).decode()
        if status != "ok":
            sys.exit(f"hostinit: child failed: {status or 'no answer'}")
        print(pid, flush=True)
        return
    os.close(r)
    try:
        os.setsid()
        if libc.sethostname(hostname, len(hostname)) != 0:
            raise OSError(ctypes.get_errno(), "sethostname")
        subprocess.run(["mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc"], check=True)
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, w)
        os.closerange(w + 1, 65536)
    except Exception as e:  # report to the parent, which reports to up
        os.write(w, f"{e}".encode())
        os._exit(1)
    os.write(w, b"ok")
    os.close(w)
    os.chdir("/")
    reap_forever()


def reap_forever():
    # SIGTERM from the machine: pass it on to every process of the host, give them a moment.
    def on_term(_sig, _frame):
        try:
            os.kill(-1, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            time.sleep(0.1)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    while True:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
        signal.sigtimedwait([signal.SIGCHLD], 5.0)


if __name__ == "__main__":
    main()
