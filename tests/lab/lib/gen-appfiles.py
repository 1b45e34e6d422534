#!/usr/bin/python3
"""Write the old host's stored files of the Misskey and Pleasanter instances, from their database rows.

usage: gen-appfiles.py misskey    FILES_DIR   UID GID < rows
       gen-appfiles.py pleasanter STORAGE_DIR UID GID < rows
rows: psql output with NUL field and record separators (psql -At -z -0), so any name survives:
  misskey:    accessKey, thumbnailAccessKey, webpublicAccessKey, type, size   (local drive files)
  pleasanter: Guid, FileName, Size                                           (attachments kept as files)
Layouts: Misskey's local storage keeps every file flat in files/ under its access key (the original,
thumbnail-<uuid>.webp and webpublic-<uuid>.webp for images); Pleasanter's "Local" binary storage keeps
attachments in Attachments/<GUID>/<file name>. Misskey also gets a few stray files with hostile names
(Pleasanter's hostile names come from its rows). Content and mtimes are deterministic (seeded from the
names), so two runs write the same tree.
"""
import os
import random
import sys

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
         "mp4": b"\x00\x00\x00\x18ftypmp42", "webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ", "pdf": b"%PDF-1.7\n",
         "xlsx": b"PK\x03\x04\x14\x00\x06\x00"}
# Files a Misskey files/ directory can gain without a row: leftovers of failed uploads, an admin's
# copy. Their names are what a careless shell command would trip over.
MISSKEY_STRAYS = [
    (b"drive file with space.webp", "webp"),
    (b"-rf --no-preserve-root", ""),
    (b"$(cd;cd ..;cd ..;cd tmp;touch hikkoshi-pwned)", ""),
    (b"new\nline.webp", "webp"),
]
BASE_MTIME = 1735689600  # 2025-01-01T00:00:00Z


def read_rows(nfields):
    data = sys.stdin.buffer.read()
    fields = [f for f in data.split(b"\0")]
    if fields and fields[-1] in (b"", b"\n"):
        fields.pop()
    if len(fields) % nfields:
        raise SystemExit(f"gen-appfiles: {len(fields)} fields is not a multiple of {nfields}")
    return [fields[i:i + nfields] for i in range(0, len(fields), nfields)]


def write(root, rel, size, kind, uid, gid, dirs):
    path = os.path.join(root, rel)
    d = os.path.dirname(path)
    while d.startswith(root) and d not in dirs:
        dirs.add(d)
        d = os.path.dirname(d)
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    rng = random.Random(rel)
    head = MAGIC.get(kind, b"")[:size]
    with open(path, "wb") as f:
        f.write(head + rng.randbytes(size - len(head)))
    os.chown(path, uid, gid)
    os.chmod(path, 0o644)
    t = BASE_MTIME + rng.randint(0, 90 * 86400)
    os.utime(path, (t, t))
    return size


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("misskey", "pleasanter"):
        print(__doc__, file=sys.stderr)
        return 2
    app, root = sys.argv[1], sys.argv[2].encode()
    uid, gid = int(sys.argv[3]), int(sys.argv[4])
    os.makedirs(root, mode=0o755, exist_ok=True)
    dirs = {root}
    count = total = 0
    if app == "misskey":
        for key, thumb, webpublic, mime, size in read_rows(5):
            kind = mime.decode().split("/")[-1]
            total += write(root, key, int(size), kind, uid, gid, dirs)
            count += 1
            if thumb:
                total += write(root, thumb, 1000 + int(size) // 20, "webp", uid, gid, dirs)
                total += write(root, webpublic, 2000 + int(size) // 2, "webp", uid, gid, dirs)
                count += 2
        for name, kind in MISSKEY_STRAYS:
            total += write(root, name, 777, kind, uid, gid, dirs)
            count += 1
    else:
        for guid, name, size in read_rows(3):
            rel = b"Attachments/" + guid + b"/" + name
            total += write(root, rel, int(size), name.rsplit(b".", 1)[-1].decode(errors="replace"), uid, gid, dirs)
            count += 1
    # Directories last (children first), so writing files does not bump their mtimes again.
    for d in sorted(dirs, key=len, reverse=True):
        os.chown(d, uid, gid)
        os.chmod(d, 0o755)
        t = BASE_MTIME + 95 * 86400 + random.Random(d).randint(0, 86400)
        os.utime(d, (t, t))
    print(f"{count} files, {total / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
