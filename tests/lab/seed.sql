-- hikkoshi lab: data for the old host's mastodon_production, loaded as the mastodon role right
-- after /work/shared/fixtures/mastodon/schema.sql.
--   psql -v ON_ERROR_STOP=1 -v scale=1 -d mastodon_production -f seed.sql
-- `scale` multiplies the row counts (1 = about 20k statuses; see README.md for sizes).
-- Ids follow Mastodon's conventions: local accounts have small ids (instances older than
-- timestamp ids), remote accounts, statuses and media have timestamp ids
-- ((unix ms << 16) + 16 low bits), so references can be computed instead of looked up.

\set ON_ERROR_STOP on
SET client_min_messages = warning;
BEGIN;

SELECT greatest(10, round(100 * s))::int    AS n_local,
       greatest(20, round(900 * s))::int    AS n_remote,
       greatest(500, round(20000 * s))::int AS n_statuses,
       greatest(30, least(5000, round(300 * s)))::int AS n_tags,
       greatest(30, round(300 * s))::int    AS n_cards,
       floor(extract(epoch FROM now() - interval '365 days') * 1000)::bigint AS base_ms
FROM (SELECT :'scale'::numeric AS s) p
\gset

SELECT set_config('lab.n_local', :'n_local', false),
       set_config('lab.n_remote', :'n_remote', false),
       set_config('lab.n_statuses', :'n_statuses', false),
       set_config('lab.base_ms', :'base_ms', false),
       -- statuses are spread evenly over the last year, at least 4 ms apart (media ids use +0..3)
       set_config('lab.step_ms', greatest(4, (365::bigint * 86400 * 1000) / :n_statuses)::text, false)
\gset unused_

-- Account number a (1..n_local local, then remote) -> id, name, domain, creation time.
CREATE FUNCTION pg_temp.n_local() RETURNS int LANGUAGE sql STABLE AS $$ SELECT current_setting('lab.n_local')::int $$;
CREATE FUNCTION pg_temp.n_accounts() RETURNS int LANGUAGE sql STABLE AS
  $$ SELECT current_setting('lab.n_local')::int + current_setting('lab.n_remote')::int $$;
CREATE FUNCTION pg_temp.a_ms(a int) RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT current_setting('lab.base_ms')::bigint - 400::bigint * 86400000 + a::bigint * 60000 $$;
CREATE FUNCTION pg_temp.aid(a int) RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT CASE WHEN a <= pg_temp.n_local() THEN a::bigint
                 ELSE (pg_temp.a_ms(a) << 16) + (a & 65535) END $$;
CREATE FUNCTION pg_temp.a_created(a int) RETURNS timestamp LANGUAGE sql STABLE AS
  $$ SELECT to_timestamp(pg_temp.a_ms(a) / 1000.0) AT TIME ZONE 'UTC' $$;
CREATE FUNCTION pg_temp.a_domain(a int) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT CASE WHEN a <= pg_temp.n_local() THEN NULL
                 WHEN a % 50 = 7 THEN 'xn--wgv71a119e.example'
                 ELSE 'fedi-' || (a % 50) || '.example' END $$;
CREATE FUNCTION pg_temp.a_name(a int) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT CASE WHEN a > pg_temp.n_local() THEN 'remote' || a
                 WHEN a = 1 THEN 'admin' WHEN a = 2 THEN 'alice' WHEN a = 3 THEN 'bob'
                 ELSE 'user' || a END $$;
CREATE FUNCTION pg_temp.a_base_url(a int) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT 'https://' || coalesce(pg_temp.a_domain(a), 'social.example.net') $$;

-- Status number n (1..n_statuses) -> id, time, author. Statuses come in groups of five:
-- a thread root, two replies to it, a reply to the second reply, and a reblog of the previous
-- group's root.
CREATE FUNCTION pg_temp.s_ms(n int) RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT current_setting('lab.base_ms')::bigint + n::bigint * current_setting('lab.step_ms')::bigint $$;
CREATE FUNCTION pg_temp.sid(n int) RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT (pg_temp.s_ms(n) << 16) + (n & 65535) $$;
CREATE FUNCTION pg_temp.s_created(n int) RETURNS timestamp LANGUAGE sql STABLE AS
  $$ SELECT to_timestamp(pg_temp.s_ms(n) / 1000.0) AT TIME ZONE 'UTC' $$;
CREATE FUNCTION pg_temp.s_acct(n int) RETURNS int LANGUAGE sql STABLE AS
  $$ SELECT CASE WHEN n % 5 < 3 THEN 1 + (n * 7) % pg_temp.n_local()
                 ELSE pg_temp.n_local() + 1 + (n * 13) % current_setting('lab.n_remote')::int END $$;
CREATE FUNCTION pg_temp.s_parent(n int) RETURNS int LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE (n - 1) % 5 WHEN 1 THEN n - 1 WHEN 2 THEN n - 2 WHEN 3 THEN n - 1 END $$;
CREATE FUNCTION pg_temp.s_reblog_of(n int) RETURNS int LANGUAGE sql IMMUTABLE AS
  $$ SELECT CASE WHEN (n - 1) % 5 = 4 AND n > 5 THEN n - 4 - 5 END $$;
-- Paperclip's :id_partition ("000/000/001", or 3-digit groups of a long id).
CREATE FUNCTION pg_temp.id_partition(id bigint) RETURNS text LANGUAGE sql IMMUTABLE AS
  $$ SELECT regexp_replace(lpad(id::text, 9, '0'), '(\d{3})(?!$)', '\1/', 'g') $$;

-- Text that breaks naive quoting: quotes, backslashes, COPY's "\." and "\N", control characters,
-- shell syntax, RTL/ZWJ/astral unicode, U+2028.
CREATE FUNCTION pg_temp.hostile(n int) RETURNS text LANGUAGE sql IMMUTABLE AS $f$
  SELECT $t$<p>It's a "quoted" \backslashed\ post with 'single' and ''doubled'' quotes</p>$t$
      || E'\nsecond line\twith a tab\r\nCRLF line\n'
      || $t$\.$t$ || E'\n'
      || $t$\N and \\N and $(touch /tmp/hikkoshi-pwned) `touch /tmp/hikkoshi-pwned` ; rm -rf / # $t$
      || E'\n' || '日本語の投稿です 🐘🎉 👩‍👩‍👧 Ω≈ç√ שלום עולם' || chr(8232) || 'after U+2028'
      || E'\x01\x7f' || ' #' || n
$f$;

-- ---------------------------------------------------------------------------------------------
INSERT INTO user_roles (id, name, color, position, permissions, highlighted, created_at, updated_at) VALUES
  (-99, '', '', -1, 65536, false, now(), now()),
  (1, 'Moderator', '', 10, 1308, true, now(), now()),
  (2, 'Admin', '', 100, 983036, true, now(), now()),
  (3, 'Owner', '', 1000, 1, true, now(), now());

INSERT INTO accounts (id, username, domain, private_key, public_key, created_at, updated_at, note,
                      display_name, uri, url, avatar_file_name, avatar_content_type, avatar_file_size,
                      avatar_updated_at, header_file_name, header_content_type, header_file_size,
                      header_updated_at, avatar_remote_url, locked, header_remote_url, last_webfingered_at,
                      inbox_url, outbox_url, shared_inbox_url, followers_url, following_url, actor_type,
                      discoverable, fields, indexable, memorial)
SELECT pg_temp.aid(a),
       pg_temp.a_name(a),
       pg_temp.a_domain(a),
       CASE WHEN local THEN E'-----BEGIN RSA PRIVATE KEY-----\n'
                            || (SELECT string_agg(md5(a || ':' || i), '') FROM generate_series(1, 50) i)
                            || E'\n-----END RSA PRIVATE KEY-----\n' END,
       E'-----BEGIN PUBLIC KEY-----\n' || md5('pub' || a) || md5('key' || a) || E'\n-----END PUBLIC KEY-----\n',
       pg_temp.a_created(a), pg_temp.a_created(a) + interval '1 day',
       CASE WHEN a % 40 = 3 THEN pg_temp.hostile(a)
            ELSE '<p>Hello, I am ' || pg_temp.a_name(a) || E'.</p>\n<p>I post about things.</p>' END,
       CASE WHEN a = 2 THEN 'Alice 🐘 "the tester"'
            WHEN a % 40 = 5 THEN E'Name with \'quotes\' and \\back\\slash and 名前'
            ELSE initcap(pg_temp.a_name(a)) END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) END,
       pg_temp.a_base_url(a) || '/@' || pg_temp.a_name(a),
       CASE WHEN a % 3 <> 0 THEN md5('avatar' || a) || '.png' END,
       CASE WHEN a % 3 <> 0 THEN 'image/png' END,
       CASE WHEN a % 3 <> 0 THEN 10000 + a % 50000 END,
       CASE WHEN a % 3 <> 0 THEN pg_temp.a_created(a) END,
       CASE WHEN a % 7 = 0 THEN md5('header' || a) || '.jpg' END,
       CASE WHEN a % 7 = 0 THEN 'image/jpeg' END,
       CASE WHEN a % 7 = 0 THEN 50000 + a % 100000 END,
       CASE WHEN a % 7 = 0 THEN pg_temp.a_created(a) END,
       CASE WHEN NOT local AND a % 3 <> 0 THEN pg_temp.a_base_url(a) || '/avatars/' || a || '.png' END,
       a % 17 = 0,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/headers/' || a || '.jpg' END,
       CASE WHEN local THEN NULL ELSE now() - interval '3 days' END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) || '/inbox' END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) || '/outbox' END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/inbox' END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) || '/followers' END,
       CASE WHEN local THEN '' ELSE pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) || '/following' END,
       CASE WHEN a % 23 = 0 THEN 'Service' ELSE 'Person' END,
       a % 4 <> 0,
       CASE WHEN a % 5 = 0 THEN jsonb_build_array(
              jsonb_build_object('name', 'Website', 'value', 'https://example.org/~' || pg_temp.a_name(a)),
              jsonb_build_object('name', 'Pronouns "x"', 'value', E'they/them \\ 日本語')) END,
       a % 4 <> 0,
       false
FROM generate_series(1, pg_temp.n_accounts()) a
CROSS JOIN LATERAL (SELECT a <= pg_temp.n_local() AS local) l;

INSERT INTO users (id, email, created_at, updated_at, encrypted_password, sign_in_count, current_sign_in_at,
                   last_sign_in_at, confirmed_at, locale, otp_required_for_login, otp_secret, account_id,
                   chosen_languages, approved, sign_up_ip, role_id, settings, time_zone)
SELECT a,
       CASE WHEN a = 1 THEN 'admin@social.example.net' ELSE 'user' || a || '@mail.example' END,
       pg_temp.a_created(a), now() - (a % 30) * interval '1 day',
       '$2a$10$' || substr(md5('pw' || a) || md5('salt' || a), 1, 53),
       a % 50,
       CASE WHEN a % 3 <> 0 THEN now() - (a % 25) * interval '1 day' END,
       CASE WHEN a % 3 <> 0 THEN now() - (a % 25 + 1) * interval '1 day' END,
       pg_temp.a_created(a) + interval '10 minutes',
       (ARRAY['en', 'ja', 'de'])[1 + a % 3],
       a = 2,
       -- ActiveRecord-encrypted column (needs ACTIVE_RECORD_ENCRYPTION_* from .env.production)
       CASE WHEN a = 2 THEN '{"p":"' || encode(sha256(('otp' || a)::bytea), 'base64')
                            || '","h":{"iv":"' || substr(md5('iv' || a), 1, 16) || '","at":"'
                            || substr(md5('at' || a), 1, 22) || '=="}}' END,
       pg_temp.aid(a),
       CASE WHEN a % 4 = 0 THEN ARRAY['en', 'ja'] END,
       true,
       ('198.51.100.' || (a % 250 + 1))::inet,
       CASE WHEN a = 1 THEN 3 WHEN a % 50 = 10 THEN 1 END,
       '{"default_privacy":"public","theme":"default","web.expand_content_warnings":' || (a % 2 = 0) || '}',
       CASE WHEN a % 2 = 0 THEN 'Asia/Tokyo' ELSE 'Etc/UTC' END
FROM generate_series(1, pg_temp.n_local()) a;

INSERT INTO conversations (id, uri, created_at, updated_at, parent_status_id, parent_account_id)
SELECT g + 1,
       CASE WHEN pg_temp.s_acct(root) > pg_temp.n_local()
            THEN 'tag:' || pg_temp.a_domain(pg_temp.s_acct(root)) || ',2024:objectId=' || pg_temp.sid(root)
                 || ':objectType=Conversation' END,
       pg_temp.s_created(root), pg_temp.s_created(root),
       CASE WHEN pg_temp.s_acct(root) <= pg_temp.n_local() THEN pg_temp.sid(root) END,
       CASE WHEN pg_temp.s_acct(root) <= pg_temp.n_local() THEN pg_temp.aid(pg_temp.s_acct(root)) END
FROM generate_series(0, (:n_statuses - 1) / 5) g
CROSS JOIN LATERAL (SELECT g * 5 + 1 AS root) r;

INSERT INTO statuses (id, uri, text, created_at, updated_at, in_reply_to_id, reblog_of_id, url, sensitive,
                      visibility, spoiler_text, reply, language, conversation_id, local, account_id,
                      in_reply_to_account_id, deleted_at, edited_at)
SELECT pg_temp.sid(n),
       pg_temp.a_base_url(a) || '/users/' || pg_temp.a_name(a) || '/statuses/' || pg_temp.sid(n)
         || CASE WHEN reblog_of IS NOT NULL THEN '/activity' ELSE '' END,
       CASE WHEN reblog_of IS NOT NULL THEN ''
            WHEN n % 4999 = 0 THEN '<p>' || repeat('とても長い投稿 very long post, ', 3000) || '</p>'
            WHEN n % 997 = 0 THEN pg_temp.hostile(n)
            ELSE '<p>' || (ARRAY['Good morning, fediverse!', 'Moving servers this weekend.',
                                 'Coffee first.', '今日はいい天気ですね。', 'Reading about PostgreSQL dumps.',
                                 'The cat sat on the keyboard: asdfghjkl', 'Release notes are out!',
                                 'Lunch: ramen 🍜'])[1 + n % 8]
                 || repeat(' Lorem ipsum dolor sit amet, consectetur adipiscing elit.', (n * 17) % 9)
                 || CASE WHEN n % 3 = 0 THEN ' #tag' || n % 100 ELSE '' END || '</p>' END,
       pg_temp.s_created(n),
       pg_temp.s_created(n) + CASE WHEN n % 53 = 0 THEN interval '10 minutes' ELSE interval '0' END,
       pg_temp.sid(parent),
       pg_temp.sid(reblog_of),
       CASE WHEN reblog_of IS NULL THEN pg_temp.a_base_url(a) || '/@' || pg_temp.a_name(a) || '/' || pg_temp.sid(n) END,
       n % 31 = 0,
       CASE WHEN reblog_of IS NOT NULL THEN 0 WHEN n % 20 = 0 THEN 3 WHEN n % 10 = 0 THEN 2
            WHEN n % 7 = 0 THEN 1 ELSE 0 END,
       CASE WHEN n % 50 = 0 AND reblog_of IS NULL THEN 'CW: "spoilers" \ ネタバレ' ELSE '' END,
       parent IS NOT NULL,
       CASE WHEN reblog_of IS NULL THEN (ARRAY['en', 'ja', 'de', 'fr', NULL])[1 + n % 5] END,
       CASE WHEN reblog_of IS NULL THEN (n - 1) / 5 + 1 END,
       a <= pg_temp.n_local(),
       pg_temp.aid(a),
       CASE WHEN parent IS NOT NULL THEN pg_temp.aid(pg_temp.s_acct(parent)) END,
       CASE WHEN n % 1009 = 0 THEN pg_temp.s_created(n) + interval '1 day' END,
       CASE WHEN n % 53 = 0 THEN pg_temp.s_created(n) + interval '10 minutes' END
FROM generate_series(1, :n_statuses) n
CROSS JOIN LATERAL (SELECT pg_temp.s_acct(n) AS a, pg_temp.s_parent(n) AS parent,
                           pg_temp.s_reblog_of(n) AS reblog_of) x;

-- Media: one or two attachments on every other thread root; remote ones are cached for some.
INSERT INTO media_attachments (id, status_id, file_file_name, file_content_type, file_file_size,
                               file_updated_at, remote_url, created_at, updated_at, shortcode, type,
                               file_meta, account_id, description, blurhash, processing,
                               file_storage_schema_version)
SELECT ((pg_temp.s_ms(n) + j) << 16) + ((n * 4 + j) & 65535),
       pg_temp.sid(n),
       CASE WHEN local OR n % 4 = 1 THEN substr(md5('media' || n || ':' || j), 1, 16) || ext END,
       CASE WHEN local OR n % 4 = 1 THEN ctype END,
       CASE WHEN local OR n % 4 = 1 THEN 20000 + (n::bigint * 7919) % 900000 END,
       CASE WHEN local OR n % 4 = 1 THEN pg_temp.s_created(n) END,
       CASE WHEN local THEN ''
            ELSE pg_temp.a_base_url(a) || '/system/media_attachments/files/' || pg_temp.id_partition(pg_temp.sid(n))
                 || '/original/' || substr(md5('remote' || n || ':' || j), 1, 16) || ext END,
       pg_temp.s_created(n), pg_temp.s_created(n),
       CASE WHEN local THEN substr(md5('shortcode' || n || ':' || j), 1, 20) END,
       mtype,
       '{"original":{"width":1280,"height":720,"size":"1280x720","aspect":1.7777777777777777},'
       '"small":{"width":640,"height":360,"size":"640x360","aspect":1.7777777777777777}}',
       pg_temp.aid(a),
       CASE WHEN n % 97 = 1 THEN pg_temp.hostile(n) WHEN n % 3 = 0 THEN 'A photo of thing #' || n END,
       'LEHV6nWB2yk8pyo0adR*.7kCMdnj',
       2,
       1
FROM generate_series(1, :n_statuses, 5) n
CROSS JOIN generate_series(0, 1) j
CROSS JOIN LATERAL (SELECT pg_temp.s_acct(n) AS a, pg_temp.s_acct(n) <= pg_temp.n_local() AS local,
                           CASE WHEN n % 11 = 1 THEN 2 WHEN n % 13 = 1 THEN 1 ELSE 0 END AS mtype) x
CROSS JOIN LATERAL (SELECT CASE WHEN mtype > 0 THEN '.mp4' WHEN n % 2 = 0 THEN '.png' ELSE '.jpg' END AS ext,
                           CASE WHEN mtype > 0 THEN 'video/mp4' WHEN n % 2 = 0 THEN 'image/png'
                                ELSE 'image/jpeg' END AS ctype) y
WHERE ((n - 1) / 5) % 2 = 0 AND (j = 0 OR n % 3 = 0);

UPDATE statuses s SET ordered_media_attachment_ids = m.ids
FROM (SELECT status_id, array_agg(id ORDER BY id) AS ids FROM media_attachments GROUP BY status_id) m
WHERE s.id = m.status_id;

-- Serial ids start far from 1, as on any instance that has been running for a while.
SELECT setval('follows_id_seq', 1000000), setval('favourites_id_seq', 5000000),
       setval('notifications_id_seq', 9000000), setval('mentions_id_seq', 300000)
\gset ignored_

INSERT INTO follows (created_at, updated_at, account_id, target_account_id, show_reblogs, uri, notify)
SELECT pg_temp.a_created(greatest(a, t)) + interval '1 hour', pg_temp.a_created(greatest(a, t)) + interval '1 hour',
       pg_temp.aid(a), pg_temp.aid(t), k % 5 <> 0,
       pg_temp.a_base_url(a) || '/' || md5('follow' || a || ':' || t),
       k = 1
FROM generate_series(1, pg_temp.n_accounts()) a
CROSS JOIN generate_series(1, 15) k
CROSS JOIN LATERAL (SELECT 1 + (a - 1 + k * 37) % pg_temp.n_accounts() AS t) x
WHERE t <> a
ON CONFLICT DO NOTHING;

INSERT INTO favourites (created_at, updated_at, account_id, status_id)
SELECT pg_temp.s_created(n) + j * interval '7 minutes', pg_temp.s_created(n) + j * interval '7 minutes',
       pg_temp.aid(1 + (n * 31 + j * 101) % pg_temp.n_accounts()), pg_temp.sid(n)
FROM generate_series(1, :n_statuses) n
CROSS JOIN generate_series(1, 3) j
WHERE j <= n % 4 AND pg_temp.s_reblog_of(n) IS NULL
ON CONFLICT DO NOTHING;

INSERT INTO mentions (status_id, created_at, updated_at, account_id, silent)
SELECT pg_temp.sid(n), pg_temp.s_created(n), pg_temp.s_created(n),
       pg_temp.aid(pg_temp.s_acct(pg_temp.s_parent(n))), false
FROM generate_series(1, :n_statuses) n
WHERE pg_temp.s_parent(n) IS NOT NULL
ON CONFLICT DO NOTHING;

INSERT INTO notifications (activity_id, activity_type, created_at, updated_at, account_id, from_account_id, type)
SELECT f.id, 'Follow', f.created_at, f.created_at, f.target_account_id, f.account_id, 'follow'
FROM follows f WHERE f.target_account_id <= pg_temp.n_local();

INSERT INTO notifications (activity_id, activity_type, created_at, updated_at, account_id, from_account_id,
                           type, group_key)
SELECT fav.id, 'Favourite', fav.created_at, fav.created_at, s.account_id, fav.account_id, 'favourite',
       'favourite-' || s.id || '-' || (extract(epoch FROM fav.created_at)::bigint / 10800)
FROM favourites fav JOIN statuses s ON s.id = fav.status_id
WHERE s.account_id <= pg_temp.n_local() AND fav.account_id <> s.account_id;

INSERT INTO notifications (activity_id, activity_type, created_at, updated_at, account_id, from_account_id, type)
SELECT m.id, 'Mention', m.created_at, m.created_at, m.account_id, s.account_id, 'mention'
FROM mentions m JOIN statuses s ON s.id = m.status_id
WHERE m.account_id <= pg_temp.n_local() AND m.account_id <> s.account_id;

INSERT INTO tags (id, name, created_at, updated_at, usable, trendable, listable, last_status_at, display_name)
SELECT t,
       CASE t WHEN 1 THEN 'mastodon' WHEN 2 THEN 'fediverse' WHEN 3 THEN '日本語' WHEN 4 THEN 'café'
              WHEN 5 THEN 'hikkoshi' ELSE 'tag' || t END,
       now() - interval '300 days' + t * interval '1 hour', now() - interval '1 day',
       CASE WHEN t % 10 = 0 THEN true END, CASE WHEN t % 3 = 0 THEN true END, CASE WHEN t % 3 = 0 THEN true END,
       now() - (t % 30) * interval '1 day',
       CASE t WHEN 1 THEN 'Mastodon' WHEN 2 THEN 'FediVerse' END
FROM generate_series(1, :n_tags) t;

INSERT INTO statuses_tags (status_id, tag_id)
SELECT pg_temp.sid(n), 1 + (n * m) % :n_tags
FROM generate_series(3, :n_statuses, 3) n
CROSS JOIN (VALUES (7), (11)) v(m)
WHERE pg_temp.s_reblog_of(n) IS NULL AND (m = 7 OR n % 6 = 0)
ON CONFLICT DO NOTHING;

INSERT INTO status_stats (status_id, replies_count, reblogs_count, favourites_count, created_at, updated_at)
SELECT pg_temp.sid(n), CASE WHEN (n - 1) % 5 = 0 THEN 2 ELSE 0 END, n % 5, n % 4,
       pg_temp.s_created(n), pg_temp.s_created(n) + interval '1 day'
FROM generate_series(2, :n_statuses, 2) n
WHERE pg_temp.s_reblog_of(n) IS NULL;

INSERT INTO account_stats (account_id, statuses_count, following_count, followers_count, created_at,
                           updated_at, last_status_at)
SELECT a.id, coalesce(s.c, 0), coalesce(f1.c, 0), coalesce(f2.c, 0), a.created_at, now(), s.last
FROM accounts a
LEFT JOIN (SELECT account_id, count(*) AS c, max(created_at) AS last FROM statuses GROUP BY 1) s ON s.account_id = a.id
LEFT JOIN (SELECT account_id, count(*) AS c FROM follows GROUP BY 1) f1 ON f1.account_id = a.id
LEFT JOIN (SELECT target_account_id, count(*) AS c FROM follows GROUP BY 1) f2 ON f2.target_account_id = a.id;

INSERT INTO preview_cards (id, url, title, description, image_file_name, image_content_type, image_file_size,
                           image_updated_at, type, html, author_name, author_url, provider_name, provider_url,
                           width, height, created_at, updated_at, language, published_at, author_account_id)
SELECT p,
       'https://news-' || p % 20 || '.example/articles/' || p || '?utm_source=mastodon&ref=' || md5('card' || p),
       CASE WHEN p % 50 = 0 THEN 'Title with "quotes", \backslash\ & <html> 日本語 ' || p ELSE 'Article ' || p END,
       'A description of article ' || p || CASE WHEN p % 7 = 0 THEN E'\nwith a second line' ELSE '' END,
       CASE WHEN p % 2 = 0 THEN md5('cardimg' || p) || '.jpg' END,
       CASE WHEN p % 2 = 0 THEN 'image/jpeg' END,
       CASE WHEN p % 2 = 0 THEN 30000 + p * 13 % 70000 END,
       CASE WHEN p % 2 = 0 THEN now() - interval '30 days' END,
       0, '', 'Author ' || p % 9, '', 'News ' || p % 20, 'https://news-' || p % 20 || '.example/',
       1200, 630, now() - interval '60 days' + p * interval '1 minute', now() - interval '1 day',
       'en', now() - interval '61 days',
       CASE WHEN p % 10 = 0 THEN pg_temp.aid(1 + p % pg_temp.n_local()) END
FROM generate_series(1, :n_cards) p;

INSERT INTO preview_cards_statuses (preview_card_id, status_id, url)
SELECT 1 + (n * 3) % :n_cards, pg_temp.sid(n), 'https://news-' || n % 20 || '.example/l/' || n
FROM generate_series(7, :n_statuses, 7) n
WHERE pg_temp.s_reblog_of(n) IS NULL;

INSERT INTO custom_emoji_categories (id, name, created_at, updated_at) VALUES
  (1, 'Blobs', now(), now()), (2, 'Cats', now(), now()), (3, 'その他 "misc"', now(), now());

INSERT INTO custom_emojis (shortcode, domain, image_file_name, image_content_type, image_file_size,
                           image_updated_at, created_at, updated_at, disabled, uri, image_remote_url,
                           visible_in_picker, category_id, image_storage_schema_version)
SELECT CASE WHEN i <= 40 THEN 'blobcat_' || i ELSE 'emoji_' || i % 30 END,
       CASE WHEN i <= 40 THEN NULL ELSE 'fedi-' || i / 30 || '.example' END,
       md5('emoji' || i) || '.png', 'image/png', 2000 + i * 37 % 30000,
       now() - interval '100 days', now() - interval '100 days', now() - interval '100 days',
       i % 29 = 0,
       CASE WHEN i > 40 THEN 'https://fedi-' || i / 30 || '.example/emojis/' || i END,
       CASE WHEN i > 40 THEN 'https://fedi-' || i / 30 || '.example/system/custom_emojis/' || i || '.png' END,
       i <= 40, CASE WHEN i <= 40 THEN 1 + i % 3 END, 1
FROM generate_series(1, 190) i;

INSERT INTO settings (var, value, created_at, updated_at) VALUES
  ('site_title', E'--- Social Example\n', now(), now()),
  ('site_contact_email', E'--- admin@social.example.net\n', now(), now()),
  ('registrations_mode', E'--- open\n', now(), now()),
  ('site_short_description', E'--- |-\n  A small "test" instance.\n  Second line with \\ and ''quotes''.\n', now(), now());

INSERT INTO oauth_applications (name, uid, secret, redirect_uri, scopes, created_at, updated_at, superapp, website)
VALUES ('Web', md5('web-uid'), md5('web-secret') || md5('web-secret2'), 'urn:ietf:wg:oauth:2.0:oob',
        'read write follow push', now(), now(), true, 'https://social.example.net');

-- Sequences behind explicit ids: past the data, with the gaps real instances have.
SELECT setval('users_id_seq', :n_local),
       setval('tags_id_seq', :n_tags + 1000),
       setval('conversations_id_seq', (:n_statuses - 1) / 5 + 1),
       setval('preview_cards_id_seq', :n_cards + 77),
       setval('custom_emoji_categories_id_seq', 3),
       setval('user_roles_id_seq', 3),
       setval('accounts_id_seq', pg_temp.n_accounts() + 12345),
       setval('statuses_id_seq', :n_statuses + 54321),
       setval('media_attachments_id_seq', (SELECT count(*) FROM media_attachments) + 999)
\gset ignored_

-- ---------------------------------------------------------------------------------------------
-- Data outside the public schema (PgHero's tables, in their own schema). The official guide's
-- `pg_restore -n public` silently drops it.
CREATE SCHEMA pghero;

CREATE TABLE pghero.pghero_query_stats (
    id bigserial PRIMARY KEY,
    database text,
    "user" text,
    query text,
    query_hash bigint,
    total_time double precision,
    calls bigint,
    captured_at timestamp without time zone
);
CREATE INDEX index_pghero_query_stats_on_database_and_captured_at
    ON pghero.pghero_query_stats (database, captured_at);

CREATE TABLE pghero.pghero_space_stats (
    id bigserial PRIMARY KEY,
    database text,
    schema text,
    relation text,
    size bigint,
    captured_at timestamp without time zone
);
CREATE INDEX index_pghero_space_stats_on_database_and_captured_at
    ON pghero.pghero_space_stats (database, captured_at);

SELECT setval('pghero.pghero_query_stats_id_seq', 70000)
\gset ignored_

INSERT INTO pghero.pghero_query_stats (database, "user", query, query_hash, total_time, calls, captured_at)
SELECT 'mastodon_production', 'mastodon',
       (ARRAY['SELECT "statuses".* FROM "statuses" WHERE "statuses"."id" = $1 LIMIT $2',
              'UPDATE "accounts" SET "updated_at" = $1 WHERE "accounts"."id" = $2',
              $q$SELECT 'it''s' AS quoted, E'\\n' AS escaped, "日本語" FROM x$q$,
              'INSERT INTO "notifications" ("activity_id", "activity_type") VALUES ($1, $2) RETURNING "id"'])[1 + i % 4],
       hashtext('q' || i % 40)::bigint * 4294967296 + i, (i * 37 % 10000) / 7.0, i * 13 % 5000,
       now() - (i % 300) * interval '1 hour'
FROM generate_series(1, 400) i;

INSERT INTO pghero.pghero_space_stats (database, schema, relation, size, captured_at)
SELECT 'mastodon_production', 'public', r.relname, pg_total_relation_size(r.oid) + d * 4096,
       now() - d * interval '1 day'
FROM (SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace
      WHERE ns.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname LIMIT 60) r
CROSS JOIN generate_series(1, 5) d;

COMMIT;

REFRESH MATERIALIZED VIEW account_summaries;
REFRESH MATERIALIZED VIEW global_follow_recommendations;
REFRESH MATERIALIZED VIEW instances;
-- A real instance's views lag its tables between two refreshes by Sidekiq, and a restore
-- recomputes them: a block made after the last refresh leaves 'instances' one row behind.
INSERT INTO domain_blocks (domain, created_at, updated_at, severity)
VALUES ('blocked-after-refresh.example', now(), now(), 1);
SET client_min_messages = error;  -- ANALYZE warns about each catalog a non-superuser may not analyze
ANALYZE;
