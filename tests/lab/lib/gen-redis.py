#!/usr/bin/python3
"""Print Redis commands (RESP, for `redis-cli --pipe`) that load Sidekiq- and Mastodon-shaped data.

usage: gen-redis.py HOSTNAME < feeds.tsv > seed.resp
feeds.tsv: ACCOUNT_ID<TAB>STATUS_ID lines for home feeds. Every key is deleted before it is
written, so replaying the file restores the same data. The marker hash `hikkoshi:lab:seed` is
written last: its presence means the seed is complete.
"""
import json
import random
import sys
import time

rng = random.Random()
now = time.time()
out = sys.stdout.buffer


def cmd(*args):
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    out.write(b"*%d\r\n" % len(parts))
    for p in parts:
        out.write(b"$%d\r\n%s\r\n" % (len(p), p))


def jid():
    return "%024x" % rng.getrandbits(96)


def job(cls, args, queue, **extra):
    created = now - rng.uniform(0, 3600)
    j = {"retry": True, "queue": queue, "class": cls, "args": args, "jid": jid(),
         "created_at": created, "enqueued_at": created + rng.uniform(0, 5)}
    j.update(extra)
    return json.dumps(j, ensure_ascii=False, separators=(",", ":"))


def main():
    hostname = sys.argv[1]
    feeds = {}
    for line in sys.stdin:
        account, status = line.split()
        feeds.setdefault(account, []).append(int(status))

    default_jobs = [
        ("ActivityPub::DeliveryWorker", lambda i: [json.dumps({"type": "Create", "id": f"https://social.example.net/users/alice/statuses/{i}/activity"}), 2, f"https://fedi-{i % 50}.example/inbox"]),
        ("LinkCrawlWorker", lambda i: [110000000000000000 + i]),
        ("DistributionWorker", lambda i: [110000000000000000 + i, {"update": False}]),
        ("ThreadResolveWorker", lambda i: [110000000000000000 + i, f"https://fedi-{i % 50}.example/users/x/statuses/{i}", {"request_id": None}]),
        ("RemoteAccountRefreshWorker", lambda i: [i]),
    ]
    keys = ["queues", "queue:default", "queue:push", "queue:mailers", "schedule", "retry", "dead",
            "stat:processed", "stat:failed", "processes", "trending_tags", "hikkoshi:lab:seed",
            "キー with space", "hikkoshi:binary", "trends:statuses:recently_used"]
    for k in keys:
        cmd("DEL", k)

    cmd("SADD", "queues", "default", "push", "mailers", "pull", "ingress", "scheduler")
    for i in range(50):
        cls, args = default_jobs[i % len(default_jobs)]
        a = args(i)
        if i == 7:
            a = ["text with \"quotes\", 'apostrophes', \\backslash\\, newline\n, 日本語 🐘, $(touch /tmp/hikkoshi-pwned)"]
        cmd("RPUSH", "queue:default", job(cls, a, "default"))
    for i in range(5):
        cmd("RPUSH", "queue:push", job("Web::PushNotificationWorker", [i + 1, 9000000 + i], "push"))
    for i in range(3):
        cmd("RPUSH", "queue:mailers", job("ActionMailer::MailDeliveryJob", ["UserMailer", "confirmation_instructions", "deliver_now", {"args": [{"_aj_globalid": f"gid://mastodon/User/{i + 2}"}]}], "mailers"))
    for i in range(20):
        at = now + rng.uniform(60, 7 * 86400)
        cmd("ZADD", "schedule", f"{at:.6f}", job("Scheduler::ScheduledStatusesScheduler" if i % 2 else "PublishScheduledStatusWorker", [1000 + i], "scheduler", at=at))
    for i in range(4):
        failed = now - rng.uniform(60, 86400)
        cmd("ZADD", "retry", f"{failed + 300 * (i + 1):.6f}", job("ActivityPub::DeliveryWorker", ["{}", 2, f"https://gone-{i}.example/inbox"], "push", error_class="HTTP::ConnectionError", error_message="Connection refused", failed_at=failed, retry_count=i))
    for i in range(2):
        cmd("ZADD", "dead", f"{now - 86400 * (i + 2):.6f}", job("LinkCrawlWorker", [120000000000000000 + i], "pull", error_class="Mastodon::UnexpectedResponseError", error_message="https://broken.example/ returned code 500", failed_at=now - 86400 * (i + 2), retry_count=25))
    cmd("SET", "stat:processed", 1234567)
    cmd("SET", "stat:failed", 4321)
    proc = f"{hostname}:1234:{'%012x' % rng.getrandbits(48)}"
    cmd("DEL", proc)
    cmd("SADD", "processes", proc)
    cmd("HSET", proc, "info", json.dumps({"hostname": hostname, "started_at": now - 86400, "pid": 1234, "tag": "live", "concurrency": 25, "queues": ["default", "push", "mailers", "pull", "ingress", "scheduler"], "identity": proc}), "busy", 0, "beat", f"{now:.6f}", "quiet", "false", "rss", 512000)

    for i, tag in enumerate(["mastodon", "fediverse", "日本語", "café", "hikkoshi", "caturday", "photography"]):
        cmd("ZADD", "trending_tags", 100 - i * 7, tag)
    for week in range(8):
        ts = int(now // 604800 * 604800 - week * 604800)
        cmd("SET", f"activity:statuses:local:{ts}", rng.randint(100, 5000))
        cmd("SET", f"activity:registrations:{ts}", rng.randint(0, 30))
        cmd("DEL", f"activity:logins:{ts}")
        cmd("PFADD", f"activity:logins:{ts}", *[str(rng.randint(1, 100)) for _ in range(40)])
    for account, statuses in sorted(feeds.items()):
        key = f"feed:home:{account}"
        cmd("DEL", key)
        args = []
        for s in statuses:
            args += [s, s]
        cmd("ZADD", key, *args)
    cmd("SET", "キー with space", "値 with \"quotes\" and\nnewline")
    cmd("SET", "hikkoshi:binary", bytes(range(256)))
    cmd("SET", "trends:statuses:recently_used", "1", "EX", 7 * 86400)
    cmd("HSET", "hikkoshi:lab:seed", "seeded_at", f"{now:.0f}", "queue_default_jobs", 50)


if __name__ == "__main__":
    main()
