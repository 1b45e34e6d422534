#!/usr/bin/python3
"""PID 1 of one lab host's Docker daemon (started by tests/lab/docker/hostd).

Run (via nsenter) inside the host's network, UTS and mount namespaces as
`dockerinit.py DOCKER_DIR LOG HOST_INIT_PID`. It unshares a new mount namespace and a new PID namespace, forks,
and the child becomes PID 1 there:
  - every mount private; /sys mounted again (so /sys/class/net shows the host's network
    namespace) with the machine's cgroup mounts moved back on top of it (a fresh sysfs has no
    cgroup mounts and dockerd would die with "Devices cgroup isn't mounted");
  - a fresh tmpfs on /run (dockerd's exec root, containerd's state, netns files: private to the
    daemon, gone with it) and a /proc of the new PID namespace;
  - dockerd with the host's /etc/docker/daemon.json (per-host bind mounts of the host's mount
    namespace, so /var/lib/docker is the host's data root too), listening on
    DOCKER_DIR/run/docker.sock; its output goes to LOG.
It reaps orphans (containerd shims), passes SIGTERM/SIGINT to dockerd (which stops the
containers) and exits when dockerd does, after SIGKILL to whatever is left: the kernel ends every
process of the PID namespace (containers included) with it, so nothing outlives the daemon.
When the host's init (HOST_INIT_PID, watched through a pidfd) ends, as when the lab host is
stopped or "rebooted", dockerd is stopped the same way: the daemon lives and dies with its host
(and a host that boots again gets it back from hostd start, with its `restart: always`
containers).
The parent prints the child's PID (as seen from the machine) and exits.

Not in the host's PID namespace on purpose: the lab's reset ends every process of a host that is
not a known service ("kill-strays"); dockerd and its containers must survive it.
"""
import ctypes
import os
import select
import signal
import subprocess
import sys
import time

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*argv):
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)


def main():
    ddir, log, host_init = sys.argv[1], sys.argv[2], int(sys.argv[3])
    host_fd = os.pidfd_open(host_init)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:
        sys.exit(f"dockerinit: unshare failed: {os.strerror(ctypes.get_errno())}")
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        status = os.read(r, 1000).decode()
        if status != "ok":
            sys.exit(f"dockerinit: child failed: {status or 'no answer'}")
        print(pid, flush=True)
        return
    os.close(r)
    try:
        os.setsid()
        run("mount", "--make-rprivate", "/")
        save = os.path.join(ddir, ".cgroup-save")
        os.makedirs(save, exist_ok=True)
        run("mount", "--rbind", "/sys/fs/cgroup", save)
        run("mount", "-t", "sysfs", "sysfs", "/sys")
        run("mount", "--move", save, "/sys/fs/cgroup")
        run("mount", "-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", "/run")
        run("mount", "-t", "proc", "-o", "nosuid,nodev,noexec", "proc", "/proc")
        sock = os.path.join(ddir, "run", "docker.sock")
        os.makedirs(os.path.dirname(sock), exist_ok=True)
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        logfd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        devnull = os.open("/dev/null", os.O_RDWR)
        env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        dockerd = subprocess.Popen(
            ["dockerd", "--config-file", "/etc/docker/daemon.json", "--pidfile", "/run/docker.pid",
             "-H", "unix://" + sock],
            stdin=devnull, stdout=logfd, stderr=logfd, env=env, close_fds=True, cwd="/")
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        for fd in range(3, 65536):
            if fd not in (w, host_fd):
                try:
                    os.close(fd)
                except OSError:
                    pass
    except Exception as e:  # report to the parent, which reports to hostd
        os.write(w, f"{e}".encode())
        os._exit(1)
    os.write(w, b"ok")
    os.close(w)
    os.chdir("/")
    supervise(dockerd.pid, host_fd)


def supervise(dpid, host_fd):
    def forward(sig, _frame):
        try:
            os.kill(dpid, sig)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)  # dockerd reloads its configuration on SIGHUP
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    poller = select.poll()
    poller.register(host_fd, select.POLLIN)
    host_gone = False
    code = 0
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == dpid:
            code = os.waitstatus_to_exitcode(status)
            break
        if pid:
            continue
        if not host_gone and poller.poll(0):
            host_gone = True  # the host stopped: so does its Docker daemon
            forward(signal.SIGTERM, None)
        signal.sigtimedwait([signal.SIGCHLD], 1.0)
    # dockerd is gone: end what is left (containers of a killed daemon), then ourselves.
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
