#!/usr/bin/python3
"""Write the old host's public/system: Mastodon's Paperclip layout, filled with random bytes.

usage: gen-media.py SYSTEM_DIR UID GID < rows.tsv
rows.tsv (from the seeded database): KIND<TAB>ID<TAB>FILE_NAME, where KIND is one of
media, media_cache, avatar, avatar_cache, header, emoji, emoji_cache, card.
Adds files with hostile names (quotes, shell syntax, newlines, leading dashes, long, non-UTF-8).
"""
import math
import os
import random
import sys
import time

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", ".mp4": b"\x00\x00\x00\x18ftypmp42"}

# Relative paths as bytes: one of them is not valid UTF-8 on purpose.
HOSTILE_DIR = b"media_attachments/files/999/999/999/original/"
HOSTILE_NAMES = [
    b"file with space.png",
    b"it's.png",
    b'say "hi".png',
    b"semi;colon.png",
    b"back`tick`.png",
    b"new\nline.png",
    b"tab\tname.png",
    b"back\\slash.png",
    b"-rf",
    b"--remove-source-files",
    b"--.png",
    b" leading space.png",
    b"trailing space.png ",
    b"*.png",
    b"[a-z]?.png",
    b"$HOME.png",
    "日本語.png".encode(),
    "émoji 🐘.png".encode(),
    b"a" * 196 + b".png",
    b"$(cd;cd ..;cd ..;cd tmp;touch hikkoshi-pwned).png",
    b"`cd;cd ..;cd ..;cd tmp;touch hikkoshi-pwned`.jpg",
    b"latin1-\xe9\xff.bin",
    b"empty.png",
]
# Paths whose text is a shell command (the slashes make directories).
HOSTILE_PATHS = [
    b"media_attachments/files/999/999/998/original/$(touch /tmp/hikkoshi-pwned).png",
    b"cache/media_attachments/files/dir with space/original/x.png",
    b'cache/media_attachments/files/"quoted dir"/original/y.png',
    b"cache/media_attachments/files/dir\nnewline/original/z.png",
    b"cache/media_attachments/files/-dashdir/original/--help.png",
]


def partition(ident):
    s = str(ident).rjust(9, "0")
    return "/".join(s[i:i + 3] for i in range(0, len(s), 3))


def paths_for(kind, ident, name):
    p = partition(ident)
    stem, ext = os.path.splitext(name)
    if kind in ("media", "media_cache"):
        base = ("cache/" if kind == "media_cache" else "") + f"media_attachments/files/{p}"
        small = name if ext != ".mp4" else stem + ".png"
        return [(f"{base}/original/{name}", "original"), (f"{base}/small/{small}", "small")]
    if kind in ("avatar", "avatar_cache"):
        base = ("cache/" if kind == "avatar_cache" else "") + f"accounts/avatars/{p}"
        return [(f"{base}/original/{name}", "small"), (f"{base}/static/{stem}.png", "small")]
    if kind == "header":
        return [(f"accounts/headers/{p}/original/{name}", "original")]
    if kind in ("emoji", "emoji_cache"):
        base = ("cache/" if kind == "emoji_cache" else "") + f"custom_emojis/images/{p}"
        return [(f"{base}/original/{name}", "tiny"), (f"{base}/static/{stem}.png", "tiny")]
    if kind == "card":
        return [(f"cache/preview_cards/images/{p}/original/{name}", "small")]
    raise SystemExit(f"gen-media: unknown kind {kind!r}")


def size_for(rng, cls):
    if cls == "original":  # log-uniform 8 KB .. 1 MB: mostly small, a few large
        return int(math.exp(rng.uniform(math.log(8_000), math.log(1_000_000))))
    if cls == "small":
        return rng.randint(3_000, 60_000)
    return rng.randint(300, 8_000)


def main():
    root = sys.argv[1].encode()
    uid, gid = int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random()
    now = time.time()
    files = []
    for line in sys.stdin:
        kind, ident, name = line.rstrip("\n").split("\t")
        files.extend((p.encode(), cls) for p, cls in paths_for(kind, ident, name))
    # A few files at the top of the size range, whatever the draw.
    big = {i for i in range(0, len(files), max(1, len(files) // 3))} if files else set()
    files.extend((HOSTILE_DIR + n, "small") for n in HOSTILE_NAMES)
    files.extend((p, "small") for p in HOSTILE_PATHS)
    files.append((b"site_uploads/files/000/000/001/original/thumbnail.png", "original"))
    files.append((b"site_uploads/files/000/000/002/original/favicon.png", "tiny"))

    total = 0
    dirs = set()
    for i, (rel, cls) in enumerate(files):
        path = os.path.join(root, rel)
        d = os.path.dirname(path)
        if d not in dirs:
            os.makedirs(d, mode=0o755, exist_ok=True)
            while d.startswith(root) and d not in dirs:
                dirs.add(d)
                d = os.path.dirname(d)
        size = rng.randint(1_000_000, 1_048_576) if i in big else size_for(rng, cls)
        if rel.endswith(b"empty.png"):
            size = 0
        head = MAGIC.get(os.path.splitext(rel)[1].decode(errors="replace"), b"")[:size]
        with open(path, "wb") as f:
            f.write(head + os.urandom(size - len(head)))
        os.chown(path, uid, gid)
        os.chmod(path, 0o600 if i % 9 == 4 else 0o644)
        t = now - rng.uniform(86400, 365 * 86400)
        os.utime(path, (t, t))
        total += size
    # Directories last (children first), so writing files does not bump their mtimes again.
    for d in sorted(dirs, key=len, reverse=True):
        os.chown(d, uid, gid)
        os.chmod(d, 0o755)
        t = now - rng.uniform(86400, 30 * 86400)
        os.utime(d, (t, t))
    print(f"{len(files)} files, {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
