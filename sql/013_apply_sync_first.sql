-- hgf_apply_sync (sql/012) with a cheaper apply, the same contract and the
-- same stored result for every listing that can have a fingerprint, so none
-- needs forgetting. (A listing whose outcome depends on its order, such as a
-- tag on two digests, gets no fingerprint from sync.c; such a listing now
-- keeps the entry listed first, where sql/012 kept whichever entry its join
-- happened to produce first.)
--
-- Where sql/012's PostgreSQL time went on a fleet's first sync (issue #8):
--   - its three ON COMMIT DELETE ROWS staging tables: every row staged once
--     more, every commit truncating them and rebuilding their primary keys,
--     which rewrites their pg_class rows and so invalidates every cached
--     plan that reads them: each call planned its statements again;
--   - ON CONFLICT on every row of an empty catalog (a speculative insertion,
--     a second index probe and a confirmation record per row), and an
--     INSERT ... ON CONFLICT DO UPDATE that locked every image already
--     stored on every re-apply, even the unchanged ones.
-- What no rewrite of this function can avoid: the foreign-key check of
-- every image, tag and tag event row (a third of what is left), the jobs'
-- four index entries, and parsing the listing.
--
-- Now:
--   - no staging table: each statement reads the listing's JSON itself;
--   - a connection with no stored image (its first sync) inserts the
--     listing straight: images, tags, one tag event per tag, one scan job per
--     image, in one statement of plain INSERTs. Anything that makes one of
--     them collide (a push event that stored an image or queued its scan
--     meanwhile, a scan job left queued under the same key) rolls that
--     statement back, and the diff below applies the listing instead;
--   - otherwise the diff writes only what differs and locks no unchanged row.
--
-- Planner settings: the listing's rows are estimated (a function scan: 100
-- rows; joined to a connection's repositories: 1), so a nested loop could
-- rescan a CTE once per row; the diff turns nested loops off, which in turn
-- inflates plan costs past jit_above_cost, so JIT is off too (compiling took
-- about a second a statement, far more than running them).

-- Whether any image, live or deleted, is stored in these repositories. An
-- index probe per repository: without statistics the planner would rather
-- scan the whole images table, every registry's, for the first match.
CREATE FUNCTION hgf_sync_has_images(p_repo_ids bigint[])
RETURNS boolean LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT EXISTS (SELECT 1 FROM images WHERE repository_id = ANY (p_repo_ids));
$$;

-- The listing's images and tags against the stored ones of p_repo_ids (the
-- connection's repositories): sql/012's diff in two statements. Returns
-- {"images","new_images","deleted_images","scans_queued","tag_moves"}.
CREATE FUNCTION hgf_sync_diff(p_conn bigint, p_repo_ids bigint[], p_images jsonb,
                              p_source text, p_registry text)
RETURNS jsonb LANGUAGE plpgsql SET enable_nestloop = off SET jit = off AS $$
DECLARE
    v_images int; v_new int; v_gone int; v_scans int; v_moves int;
BEGIN
    -- Fill in, revive, mark gone and insert touch different rows, so one
    -- statement does them all. A digest listed twice keeps its first entry.
    WITH l AS MATERIALIZED (
        SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.r, x.d, x.m, x.a, x.s,
               to_timestamp(x.p) AS p
          FROM ROWS FROM (jsonb_to_recordset(p_images)
                          AS (r text, d text, m text, a text, s bigint, p double precision))
               WITH ORDINALITY AS x(r, d, m, a, s, p, o)
          JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
         ORDER BY rp.id, x.d, x.o),
    -- Live images a push event recorded before a sync could fill in their
    -- details: filling them in is not a new digest. (A data-modifying CTE
    -- runs whether or not anything reads it.)
    filled AS (
        UPDATE images im SET media_type = l.m, size_bytes = l.s, pushed_at = l.p,
                             artifact_media_type = l.a
          FROM l
         WHERE im.repository_id = ANY (p_repo_ids)
           AND im.repository_id = l.rid AND im.digest = l.d
           AND im.deleted_at IS NULL AND im.media_type IS NULL),
    revived AS (
        UPDATE images im SET deleted_at = NULL, media_type = l.m, size_bytes = l.s,
                             pushed_at = l.p, artifact_media_type = l.a
          FROM l
         WHERE im.repository_id = ANY (p_repo_ids)
           AND im.repository_id = l.rid AND im.digest = l.d AND im.deleted_at IS NOT NULL
        RETURNING im.id, im.repository_id, im.digest),
    gone AS (
        UPDATE images im SET deleted_at = now()
         WHERE im.repository_id = ANY (p_repo_ids) AND im.deleted_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM l WHERE l.rid = im.repository_id AND l.d = im.digest)
        RETURNING 1),
    -- ON CONFLICT: a push event may store the digest after this snapshot.
    inserted AS (
        INSERT INTO images (repository_id, digest, media_type, artifact_media_type, size_bytes,
                            pushed_at)
        SELECT l.rid, l.d, l.m, l.a, l.s, l.p FROM l
         WHERE NOT EXISTS (SELECT 1 FROM images im
                            WHERE im.repository_id = ANY (p_repo_ids)
                              AND im.repository_id = l.rid AND im.digest = l.d)
        ON CONFLICT (repository_id, digest) DO NOTHING
        RETURNING id, repository_id, digest),
    -- New digests (or digests seen again after deletion) are what get scanned.
    fresh AS (SELECT * FROM inserted UNION ALL SELECT * FROM revived),
    queued AS (
        INSERT INTO jobs (kind, payload, priority, dedup_key)
        SELECT 'scan',
               jsonb_build_object('connection_id', p_conn, 'image_id', f.id,
                                  'repository', l.r, 'digest', f.digest, 'reason', p_source),
               0, 'scan:' || p_registry || '/' || l.r || '@' || f.digest
          FROM fresh f JOIN l ON l.rid = f.repository_id AND l.d = f.digest
        ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING
        RETURNING 1)
    SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM fresh), (SELECT count(*) FROM gone),
           (SELECT count(*) FROM queued)
      INTO v_images, v_new, v_gone, v_scans;

    -- Tags, in a statement of their own so that it sees the images above.
    -- Every move is an event; the map holds the present. The tags are those
    -- of the listed images above; one the listing puts on two digests
    -- keeps the first.
    WITH l AS (
        SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.d, x.t, x.o
          FROM ROWS FROM (jsonb_to_recordset(p_images) AS (r text, d text, t jsonb))
               WITH ORDINALITY AS x(r, d, t, o)
          JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
         ORDER BY rp.id, x.d, x.o),
    t AS (
        SELECT DISTINCT ON (l.rid, tg.tag) l.rid, tg.tag, l.d
          FROM l CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(l.t, '[]'::jsonb)) AS tg(tag)
         ORDER BY l.rid, tg.tag, l.o),
    cur AS (
        SELECT it.repository_id, it.tag, im.digest
          FROM image_tags it JOIN images im
            ON im.id = it.image_id AND im.repository_id = ANY (p_repo_ids)
         WHERE it.repository_id = ANY (p_repo_ids)),
    moves AS MATERIALIZED (
        SELECT coalesce(t.rid, c.repository_id) AS rid, coalesce(t.tag, c.tag) AS tag,
               c.digest AS old_digest, t.d AS new_digest
          FROM t FULL JOIN cur c ON c.repository_id = t.rid AND c.tag = t.tag
         WHERE c.digest IS DISTINCT FROM t.d),
    events AS (
        INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
        SELECT rid, tag, old_digest, new_digest, p_source FROM moves
        RETURNING 1),
    dropped AS (
        DELETE FROM image_tags it USING moves m
         WHERE it.repository_id = ANY (p_repo_ids)
           AND it.repository_id = m.rid AND it.tag = m.tag AND m.new_digest IS NULL),
    moved AS (
        INSERT INTO image_tags (repository_id, tag, image_id)
        SELECT m.rid, m.tag, im.id
          FROM moves m JOIN images im
            ON im.repository_id = ANY (p_repo_ids)
           AND im.repository_id = m.rid AND im.digest = m.new_digest
        ON CONFLICT (repository_id, tag) DO UPDATE
           SET image_id = EXCLUDED.image_id, updated_at = now()
         WHERE image_tags.image_id <> EXCLUDED.image_id)
    SELECT count(*) INTO v_moves FROM events;

    RETURN jsonb_build_object('images', v_images, 'new_images', v_new, 'deleted_images', v_gone,
                              'scans_queued', v_scans, 'tag_moves', v_moves);
END;
$$;

-- A connection's first listing, into repositories with no image stored:
-- every image new, every tag new (an event from no digest), every image a
-- scan. Image ids are drawn up front so that tags and jobs need no join back
-- to the inserted rows. Returns what hgf_sync_diff returns; raises
-- unique_violation when anything collides.
CREATE FUNCTION hgf_sync_first(p_conn bigint, p_images jsonb, p_source text, p_registry text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_images int; v_moves int;
BEGIN
    WITH l AS (
        SELECT nextval('images_id_seq') AS id, u.*
          FROM (SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.r, x.d, x.m, x.a, x.s, x.p,
                       x.t, x.o
                  FROM ROWS FROM (jsonb_to_recordset(p_images)
                                  AS (r text, d text, m text, a text, s bigint,
                                      p double precision, t jsonb))
                       WITH ORDINALITY AS x(r, d, m, a, s, p, t, o)
                  JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
                 ORDER BY rp.id, x.d, x.o) u),
    stored AS (
        INSERT INTO images (id, repository_id, digest, media_type, artifact_media_type,
                            size_bytes, pushed_at)
        SELECT l.id, l.rid, l.d, l.m, l.a, l.s, to_timestamp(l.p) FROM l),
    t AS (
        SELECT DISTINCT ON (l.rid, tg.tag) l.rid, tg.tag, l.id, l.d
          FROM l CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(l.t, '[]'::jsonb)) AS tg(tag)
         ORDER BY l.rid, tg.tag, l.o),
    mapped AS (
        INSERT INTO image_tags (repository_id, tag, image_id) SELECT t.rid, t.tag, t.id FROM t),
    events AS (
        INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
        SELECT t.rid, t.tag, NULL, t.d, p_source FROM t),
    queued AS (
        INSERT INTO jobs (kind, payload, priority, dedup_key)
        SELECT 'scan',
               jsonb_build_object('connection_id', p_conn, 'image_id', l.id,
                                  'repository', l.r, 'digest', l.d, 'reason', p_source),
               0, 'scan:' || p_registry || '/' || l.r || '@' || l.d
          FROM l)
    SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM t) INTO v_images, v_moves;
    RETURN jsonb_build_object('images', v_images, 'new_images', v_images, 'deleted_images', 0,
                              'scans_queued', v_images, 'tag_moves', v_moves);
END;
$$;

-- Same arguments and result as sql/012's.
CREATE OR REPLACE FUNCTION hgf_apply_sync(p_conn bigint, p_repos jsonb, p_images jsonb, p_source text)
RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_registry text;
    v_repo_ids bigint[];
    v_n_repos int; v_upd_repos int; v_new_repos int; v_del_repos int;
    d jsonb;
BEGIN
    SELECT registry INTO v_registry FROM connections WHERE id = p_conn;
    IF v_registry IS NULL THEN
        RAISE EXCEPTION 'connection % does not exist', p_conn;
    END IF;

    -- Repositories: new, changed, back from the dead, gone. A name listed
    -- twice keeps its first entry.
    WITH l AS (
        SELECT DISTINCT ON (r.n) r.n, r.a, r.m, r.s, r.e, to_timestamp(r.c) AS c
          FROM ROWS FROM (jsonb_to_recordset(p_repos)
                          AS (n text, a text, m text, s boolean, e text, c double precision))
               WITH ORDINALITY AS r(n, a, m, s, e, c, o)
         ORDER BY r.n, r.o),
    upserted AS (
        INSERT INTO repositories (connection_id, name, arn, tag_mutability, scan_on_push,
                                  encryption, created_at)
        SELECT p_conn, l.n, l.a, l.m, l.s, l.e, l.c FROM l
        ON CONFLICT (connection_id, name) DO UPDATE
           SET arn = EXCLUDED.arn, tag_mutability = EXCLUDED.tag_mutability,
               scan_on_push = EXCLUDED.scan_on_push, encryption = EXCLUDED.encryption,
               created_at = EXCLUDED.created_at, deleted_at = NULL
         WHERE repositories.deleted_at IS NOT NULL
            OR (repositories.arn, repositories.tag_mutability, repositories.scan_on_push,
                repositories.encryption)
               IS DISTINCT FROM (EXCLUDED.arn, EXCLUDED.tag_mutability, EXCLUDED.scan_on_push,
                                 EXCLUDED.encryption)
        RETURNING 1)
    SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM upserted) INTO v_n_repos, v_upd_repos;
    SELECT count(*) INTO v_new_repos FROM repositories
     WHERE connection_id = p_conn AND first_seen = now();
    UPDATE repositories SET deleted_at = now()
     WHERE connection_id = p_conn AND deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset(p_repos) AS r(n text) WHERE r.n = name);
    GET DIAGNOSTICS v_del_repos = ROW_COUNT;

    -- Every later statement reaches images and tags through these ids (the
    -- leading column of their keys), never through the whole table.
    v_repo_ids := ARRAY(SELECT id FROM repositories WHERE connection_id = p_conn);
    IF hgf_sync_has_images(v_repo_ids) THEN
        d := hgf_sync_diff(p_conn, v_repo_ids, p_images, p_source, v_registry);
    ELSE
        BEGIN
            d := hgf_sync_first(p_conn, p_images, p_source, v_registry);
        EXCEPTION WHEN unique_violation THEN
            d := hgf_sync_diff(p_conn, v_repo_ids, p_images, p_source, v_registry);
        END;
    END IF;

    RETURN d || jsonb_build_object(
        'repositories', v_n_repos, 'new_repositories', v_new_repos,
        'deleted_repositories', v_del_repos,
        'rows_written', v_upd_repos + v_del_repos + (d->>'new_images')::int
                        + (d->>'deleted_images')::int + 2 * (d->>'tag_moves')::int
                        + (d->>'scans_queued')::int);
END;
$$;
