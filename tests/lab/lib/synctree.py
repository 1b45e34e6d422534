#!/usr/bin/python3
"""Make an app directory of a lab host hold exactly the app's files (run on the machine by up/reset).

usage: synctree.py SRC DST USER [--keep REL]... [--put REL MODE TEMPLATE]... [--sub KEY FILE]...
                   [--next SRC DST USER ...]...

DST (and every directory of SRC in it) becomes USER's, mode 0755; every file of SRC is copied to DST
(only when the content differs, so mtimes stay), owned by USER, mode 0755 if executable, else 0644;
entries of those directories that SRC does not have are removed, except the --keep paths (relative
to DST: kept as they are, not descended into) and the --put files: TEMPLATE's content with each @KEY@
replaced by the first line of FILE (--sub), installed at REL with MODE, owned by USER.
--next starts another tree. One process instead of a few dozen forks of install/cmp/chown per tree.
"""
import os
import pwd
import shutil
import sys


def parse(argv):
    if len(argv) < 3:
        raise SystemExit(__doc__)
    src, dst, user = argv[:3]
    keep, puts, subs = set(), [], {}
    i = 3
    while i < len(argv):
        opt = argv[i]
        if opt == "--keep":
            keep.add(argv[i + 1].strip("/"))
            i += 2
        elif opt == "--put":
            puts.append((argv[i + 1].strip("/"), int(argv[i + 2], 8), argv[i + 3]))
            i += 4
        elif opt == "--sub":
            with open(argv[i + 2]) as f:
                subs["@" + argv[i + 1] + "@"] = f.readline().rstrip("\n")
            i += 3
        else:
            raise SystemExit(f"synctree: unknown argument {opt!r}\n{__doc__}")
    return src, dst, user, keep, puts, subs


def set_owner_mode(path, uid, gid, mode):
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def install(content, path, uid, gid, mode):
    try:
        with open(path, "rb") as f:
            same = f.read() == content
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        same = False
    if not same:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".synctree.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    set_owner_mode(path, uid, gid, mode)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def main():
    args, jobs = sys.argv[1:], [[]]
    for a in args:
        if a == "--next":
            jobs.append([])
        else:
            jobs[-1].append(a)
    for job in jobs:
        sync(*parse(job))


def sync(src, dst, user, keep, puts, subs):
    pw = pwd.getpwnam(user)
    uid, gid = pw.pw_uid, pw.pw_gid
    wanted = {}  # relative path -> (content, mode)
    dirs = {""}
    for root, dnames, fnames in os.walk(src):
        rel = os.path.relpath(root, src)
        rel = "" if rel == "." else rel
        dirs.update(os.path.join(rel, d) for d in dnames)
        for name in fnames:
            s = os.path.join(root, name)
            with open(s, "rb") as f:
                wanted[os.path.join(rel, name)] = (f.read(), 0o755 if os.access(s, os.X_OK) else 0o644)
    for rel, mode, template in puts:
        with open(template) as f:
            text = f.read()
        for k, v in subs.items():
            text = text.replace(k, v)
        wanted[rel] = (text.encode(), mode)
        parent = os.path.dirname(rel)
        while parent:
            dirs.add(parent)
            parent = os.path.dirname(parent)
    for rel in sorted(dirs):
        d = os.path.join(dst, rel) if rel else dst
        if os.path.lexists(d) and not (os.path.isdir(d) and not os.path.islink(d)):
            os.unlink(d)
        os.makedirs(d, exist_ok=True)
        set_owner_mode(d, uid, gid, 0o755)
        allowed = {os.path.basename(p) for p in list(wanted) + list(dirs) + list(keep)
                   if p and os.path.dirname(p) == rel}
        for name in os.listdir(d):
            if name not in allowed:
                remove(os.path.join(d, name))
    for rel, (content, mode) in wanted.items():
        install(content, os.path.join(dst, rel), uid, gid, mode)


if __name__ == "__main__":
    main()
