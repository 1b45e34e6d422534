-- hikkoshi lab: a stand-in for a Misskey 2025.4 database (the tables a migration has to carry,
-- with Misskey's names and quoting), loaded by tests/lab/up into the old host's misskey_db as the
-- misskey role, so every object is owned by misskey:
--   runuser -u misskey -- psql -v ON_ERROR_STOP=1 -d misskey_db -f misskey.sql
-- Deterministic: no now(), no random(); the same file gives the same rows on every machine.
-- Ids are Misskey's "aidx": 8 base-36 digits of milliseconds since 2000-01-01, a 4-digit node
-- key, a 4-digit counter. Local drive files are stored under files/ by their access keys (uuids);
-- tests/lab/lib/gen-appfiles.py writes them from the drive_file rows.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
BEGIN;

CREATE FUNCTION pg_temp.b36(n bigint, width int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(substr('0123456789abcdefghijklmnopqrstuvwxyz',
                           ((n / power(36::numeric, k)::bigint) % 36)::int + 1, 1), '' ORDER BY k DESC)
  FROM generate_series(0, width - 1) k $$;
-- aidx for a point in time (ms after 2024-06-01) and a counter.
CREATE FUNCTION pg_temp.aidx(ms bigint, c int) RETURNS varchar LANGUAGE sql IMMUTABLE AS $$
  SELECT pg_temp.b36(extract(epoch FROM timestamptz '2024-06-01 00:00:00+00')::bigint * 1000
                     - 946684800000 + ms, 8) || 'h1k0' || pg_temp.b36(c, 4) $$;
CREATE FUNCTION pg_temp.at(ms bigint) RETURNS timestamptz LANGUAGE sql IMMUTABLE AS $$
  SELECT timestamptz '2024-06-01 00:00:00+00' + ms * interval '1 millisecond' $$;
-- A version-4-shaped uuid derived from a seed (Misskey's access keys are uuid v4).
CREATE FUNCTION pg_temp.uuid(seed text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT overlay(overlay(h PLACING '4' FROM 13) PLACING substr('89ab', ascii(substr(h, 17, 1)) % 4 + 1, 1)
                 FROM 17)::uuid::text
  FROM md5(seed) h $$;

-- --- migrations: TypeORM's table; Misskey reads it at every start ------------------------------
CREATE TABLE migrations (
  id serial PRIMARY KEY,
  "timestamp" bigint NOT NULL,
  name character varying NOT NULL
);
INSERT INTO migrations ("timestamp", name) VALUES
  (1000000000000, 'Init1000000000000'),
  (1680491187535, 'CleanUp1680491187535'),
  (1697247230117, 'InstanceSilence1697247230117'),
  (1705222772858, 'OptimizeNoteIndexForArrayColumns1705222772858'),
  (1717117195275, 'UserScheduledNote1717117195275'),
  (1728085812127, 'RefineAbuseReport1728085812127'),
  (1733748798177, 'ChatRoom1733748798177'),
  (1739335129758, 'DriveFileStoredInternalIndex1739335129758'),
  (1740121393164, 'RemoveFollowingAvatarCache1740121393164'),
  (1743403874616, 'MetaUrlPreviewTimeout1743403874616');

-- --- meta: the instance settings, one row --------------------------------------------------------
CREATE TABLE meta (
  id character varying(32) PRIMARY KEY,
  name character varying(1024),
  description character varying(1024),
  "maintainerName" character varying(1024),
  "useObjectStorage" boolean NOT NULL DEFAULT false,
  "objectStorageBucket" character varying(1024),
  "objectStorageBaseUrl" character varying(1024)
);
INSERT INTO meta (id, name, description, "maintainerName", "useObjectStorage") VALUES
  ('x', 'Misskey Example', E'A small "test" server.\nSecond line with \\ and ''quotes''. 🍮', 'admin', false);

-- --- user: 20 local users (host NULL), 12 remote ---------------------------------------------------
CREATE TABLE "user" (
  id character varying(32) PRIMARY KEY,
  username character varying(128) NOT NULL,
  "usernameLower" character varying(128) NOT NULL,
  host character varying(128),
  name character varying(128),
  "createdAt" timestamp with time zone NOT NULL,
  "isRoot" boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX "IDX_5deb01ae162d1d70b80d064c27" ON "user" ("usernameLower", host);
INSERT INTO "user" (id, username, "usernameLower", host, name, "createdAt", "isRoot")
SELECT pg_temp.aidx(u::bigint * 3600000, u), uname, lower(uname),
       CASE WHEN u > 20 THEN CASE WHEN u % 2 = 0 THEN 'remote.example' ELSE 'xn--wgv71a119e.example' END END,
       CASE WHEN u = 5 THEN E'Name with \'quotes\' and \\back\\slash 名前'
            WHEN u = 6 THEN 'ねこ 🐈 ‮RTL‬'
            WHEN u % 4 = 0 THEN NULL
            ELSE initcap(uname) END,
       pg_temp.at(u::bigint * 3600000), u = 1
FROM (SELECT u, CASE u WHEN 1 THEN 'admin' WHEN 2 THEN 'alice' WHEN 3 THEN 'Bob'
                       ELSE CASE WHEN u > 20 THEN 'remote' ELSE 'user' END || u END AS uname
      FROM generate_series(1, 32) u) s;

-- --- note: 240 notes, some hostile ---------------------------------------------------------------
-- Misskey's columns with a fixed set of values are enum types, which its migrations alter
-- (ALTER TYPE ... RENAME VALUE / ADD VALUE): only their owner may.
CREATE TYPE note_visibility_enum AS ENUM ('public', 'home', 'followers', 'specified');
CREATE TABLE note (
  id character varying(32) PRIMARY KEY,
  "replyId" character varying(32),
  "userId" character varying(32) NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
  "userHost" character varying(128),
  text text,
  cw character varying(512),
  visibility note_visibility_enum NOT NULL DEFAULT 'public',
  "fileIds" character varying(32)[] NOT NULL DEFAULT '{}',
  "createdAt" timestamp with time zone NOT NULL
);
CREATE INDEX "IDX_5b87d9d19127bd5d92026017a7" ON note ("userId");
CREATE INDEX "IDX_note_createdAt" ON note ("createdAt");
INSERT INTO note (id, "replyId", "userId", "userHost", text, cw, visibility, "createdAt")
SELECT pg_temp.aidx(200000000 + n::bigint * 600000, n),
       CASE WHEN n % 5 = 2 THEN pg_temp.aidx(200000000 + (n - 1)::bigint * 600000, n - 1) END,
       u.id, u.host,
       CASE n % 23
         WHEN 1 THEN E'multi-line note\nsecond line\twith a tab\r\nCRLF line\n' || $t$\.$t$
                     || E'\n\\N\nlast line #' || n
         WHEN 2 THEN $t$'single' "double" `back` $(touch /tmp/hikkoshi-pwned) \backslash ;$t$ || ' #' || n
         WHEN 3 THEN '絵文字 🍮🐈‍⬛ 👩‍👩‍👧 :misskey: שלום עולם' || chr(8232) || 'after U+2028 #' || n
         WHEN 4 THEN NULL
         WHEN 5 THEN repeat('long note ', 300) || n
         ELSE 'note ' || n || ' by ' || u.username
       END,
       CASE WHEN n % 17 = 0 THEN 'cw: spoilers "' || n || '"' END,
       ((ARRAY['public', 'home', 'followers', 'specified'])[n % 4 + 1])::note_visibility_enum,
       pg_temp.at(200000000 + n::bigint * 600000)
FROM generate_series(1, 240) n
JOIN (SELECT id, host, username, row_number() OVER (ORDER BY id) AS k FROM "user") u
  ON u.k = (n * 7) % 32 + 1;

-- --- drive_file: 14 files stored here (files/<accessKey>, with thumbnail-/webpublic- for images),
-- 4 remote files that are only linked ---------------------------------------------------------------
CREATE TABLE drive_file (
  id character varying(32) PRIMARY KEY,
  "userId" character varying(32) REFERENCES "user" (id) ON DELETE CASCADE,
  "userHost" character varying(128),
  name character varying(256) NOT NULL,
  type character varying(128) NOT NULL,
  size integer NOT NULL,
  "storedInternal" boolean NOT NULL,
  url character varying(512) NOT NULL,
  "thumbnailUrl" character varying(512),
  "webpublicUrl" character varying(512),
  "accessKey" character varying(256),
  "thumbnailAccessKey" character varying(256),
  "webpublicAccessKey" character varying(256),
  "isLink" boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX "IDX_d85a184c2540d2deba33daf642" ON drive_file ("accessKey");
CREATE UNIQUE INDEX "IDX_e74022ce9a074b3866f70e0d27" ON drive_file ("thumbnailAccessKey");
CREATE UNIQUE INDEX "IDX_c55b2b7c284d9fef98026fc88e" ON drive_file ("webpublicAccessKey");
CREATE INDEX "IDX_860fa6f6c7df5bb887249fba22" ON drive_file ("userId");
INSERT INTO drive_file (id, "userId", "userHost", name, type, size, "storedInternal", url, "thumbnailUrl",
                        "webpublicUrl", "accessKey", "thumbnailAccessKey", "webpublicAccessKey", "isLink")
SELECT pg_temp.aidx(300000000 + f::bigint * 900000, f), u.id, u.host,
       CASE WHEN f = 3 THEN 'スクリーンショット 2025-04-01 12.00.00.png'
            WHEN f = 4 THEN $t$it's "quoted" & $(echo).png$t$
            ELSE 'file' || f || '.' || ext END,
       mime, 2000 + (f * 7919) % 60000, local,
       CASE WHEN local THEN 'https://misskey.example.net/files/' || ak
            ELSE 'https://remote.example/files/' || ak END,
       CASE WHEN local AND img THEN 'https://misskey.example.net/files/thumbnail-' || ak || '.webp' END,
       CASE WHEN local AND img THEN 'https://misskey.example.net/files/webpublic-' || ak || '.webp' END,
       ak,
       CASE WHEN img THEN 'thumbnail-' || ak || '.webp' END,
       CASE WHEN img THEN 'webpublic-' || ak || '.webp' END,
       NOT local
FROM (SELECT f, f <= 14 AS local, f % 7 <> 0 AS img, pg_temp.uuid('misskey-drive-' || f) AS ak,
             CASE WHEN f % 7 = 0 THEN 'mp4' WHEN f % 2 = 0 THEN 'jpg' ELSE 'png' END AS ext,
             CASE WHEN f % 7 = 0 THEN 'video/mp4' WHEN f % 2 = 0 THEN 'image/jpeg' ELSE 'image/png' END AS mime
      FROM generate_series(1, 18) f) s
JOIN (SELECT id, host, row_number() OVER (ORDER BY id) AS k FROM "user") u
  ON u.k = CASE WHEN s.local THEN s.f % 20 + 1 ELSE 21 + s.f % 12 END;

UPDATE note SET "fileIds" = ARRAY[d.id]
FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM drive_file) d
WHERE note.id = (SELECT id FROM note ORDER BY id OFFSET d.k * 11 LIMIT 1);

COMMIT;
ANALYZE migrations, meta, "user", note, drive_file;
