-- The catalog's foreign keys below repositories, kept by their writers
-- instead of checked per row (issue #8).
--
-- A fleet's first sync writes about 4.4 rows per image (image, tag, tag
-- event, scan job), and before this migration every image, tag and tag event
-- row ran one or two referential-integrity checks: a query of its own, a
-- row lock on the repository or image, an after-trigger event. Under
-- callgrind, a backend applying 25 registries' first listings (6,570 images,
-- 7,721 tags) spent 37 % of its instructions in those checks; without them
-- the apply takes 40 % fewer instructions (see docs/benchmarks.md).
--
-- Dropped, and why nothing is lost (docs/architecture.md, "Data model"):
--   images.repository_id, image_tags.repository_id, image_tags.image_id,
--   tag_events.repository_id.
-- Only two functions write these tables: hgf_apply_sync and hgf_apply_push.
-- Each takes the repository ids it writes from `repositories` rows of its
-- own connection, read in its own transaction, and the image ids of tags
-- from images of those repositories; and each now first locks its
-- connection's row FOR KEY SHARE, which is the lock the dropped checks took
-- on the parent rows, one level up. Nothing deletes a repository or an
-- image except `connection remove --purge` (DELETE FROM connections, whose
-- cascade to repositories stays), and that DELETE must wait for every apply
-- of the connection to end, or the apply, once it gets the lock, finds no
-- connection. The ON DELETE CASCADE they did is done by the triggers below,
-- on any DELETE of a repository or an image, whoever runs it.
-- Kept: repositories.connection_id (one check per new repository, and the
-- webhook creates repositories), scans.image_id (written by the scan job).
--
-- Also, for the same first sync:
--   - jobs_state_id (sql/003) leaves out queued jobs: a scan job queued by an
--     apply had four index entries to write, now three. Queued jobs are
--     found through jobs_claim, jobs_dedup_live (both partial on the live
--     states) and the primary key; every claim keeps its plan.
--   - the listing's images come as parallel arrays, one per field, rather
--     than as one JSON document: parsing the JSON (into jsonb, then each
--     record and its tags) was 16 % of the apply, and an array's elements
--     are read once. hgf_apply_listing and hgf_apply_sync keep their JSON
--     forms for any other caller; they convert and call the array forms.

ALTER TABLE images DROP CONSTRAINT images_repository_id_fkey;
ALTER TABLE image_tags DROP CONSTRAINT image_tags_repository_id_fkey,
                       DROP CONSTRAINT image_tags_image_id_fkey;
ALTER TABLE tag_events DROP CONSTRAINT tag_events_repository_id_fkey;

-- The cascades, once per statement. A DELETE run by hand (not a purge)
-- first locks the connections concerned FOR UPDATE, so it waits for their
-- applies and then deletes what they wrote too; a purge has deleted the
-- connection already (having waited at that DELETE), and finds none to lock.
-- The ids go in as arrays so that each DELETE probes the child's index by
-- repository (or image) rather than scanning a table that holds every
-- registry: a transition table has no statistics, and the planner would
-- guess.
CREATE FUNCTION hgf_repositories_deleted()
RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[] := ARRAY(SELECT id FROM old_rows);
BEGIN
    PERFORM 1 FROM connections
      WHERE id = ANY (ARRAY(SELECT DISTINCT connection_id FROM old_rows)) FOR UPDATE;
    DELETE FROM tag_events WHERE repository_id = ANY (v_ids);
    DELETE FROM image_tags WHERE repository_id = ANY (v_ids);
    DELETE FROM images WHERE repository_id = ANY (v_ids);
    RETURN NULL;
END
$$;

CREATE FUNCTION hgf_images_deleted()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM connections c JOIN repositories rp ON rp.connection_id = c.id
      WHERE rp.id = ANY (ARRAY(SELECT DISTINCT repository_id FROM old_rows)) FOR UPDATE OF c;
    DELETE FROM image_tags WHERE image_id = ANY (ARRAY(SELECT id FROM old_rows));
    RETURN NULL;
END
$$;

CREATE TRIGGER repositories_cascade AFTER DELETE ON repositories
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_repositories_deleted();
CREATE TRIGGER images_cascade AFTER DELETE ON images
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_images_deleted();

-- ---- jobs_state_id without queued jobs ----------------------------------------
-- `jobs list --state queued` now reads the primary key backwards (or, when
-- few jobs are queued, jobs_claim and a sort); the other states, and
-- hgf_jobs_finish's look-up of a running job, read this index as before.
DROP INDEX jobs_state_id;
CREATE INDEX jobs_state_id ON jobs (state, id DESC) WHERE state <> 'queued';

-- ---- the listing as arrays -------------------------------------------------------
-- An image listing is eight arrays: for the i-th image, p_r[i] its
-- repository's name, p_d[i] its digest, p_m[i] and p_a[i] its media and
-- artifact media types, p_s[i] its size and p_p[i] when it was pushed
-- (epoch seconds); for the k-th tag, p_ti[k] the image it is on (an index
-- into the image arrays, from 1) and p_tt[k] its name. The image arrays have
-- one length, the tag arrays another. Everything else is as in sql/013,
-- whose functions these replace: the same dedup (an image listed twice, by
-- repository and digest, keeps its first entry and that entry's tags; a tag
-- on two digests of a repository keeps the first), the same stored result.

DROP FUNCTION hgf_sync_diff(bigint, bigint[], jsonb, text, text);
DROP FUNCTION hgf_sync_first(bigint, jsonb, text, text);

-- sql/013's diff. Returns {"images","new_images","deleted_images",
-- "scans_queued","tag_moves"}.
CREATE FUNCTION hgf_sync_diff(p_conn bigint, p_repo_ids bigint[], p_r text[], p_d text[],
                              p_m text[], p_a text[], p_s bigint[], p_p double precision[],
                              p_ti int[], p_tt text[], p_source text, p_registry text)
RETURNS jsonb LANGUAGE plpgsql SET enable_nestloop = off SET jit = off AS $$
DECLARE
    v_images int; v_new int; v_gone int; v_scans int; v_moves int;
BEGIN
    -- Fill in, revive, mark gone and insert touch different rows, so one
    -- statement does them all.
    WITH l AS MATERIALIZED (
        SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.r, x.d, x.m, x.a, x.s,
               to_timestamp(x.p) AS p
          FROM unnest(p_r, p_d, p_m, p_a, p_s, p_p) WITH ORDINALITY AS x(r, d, m, a, s, p, o)
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
    -- Every move is an event; the map holds the present.
    WITH l AS (
        SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.d, x.o
          FROM unnest(p_r, p_d) WITH ORDINALITY AS x(r, d, o)
          JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
         ORDER BY rp.id, x.d, x.o),
    t AS (
        SELECT DISTINCT ON (l.rid, tg.tag) l.rid, tg.tag, l.d
          FROM unnest(p_ti, p_tt) AS tg(o, tag) JOIN l ON l.o = tg.o::bigint
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

-- sql/013's first sync: plain inserts, image ids drawn up front. Returns what
-- hgf_sync_diff returns; raises unique_violation when anything collides.
CREATE FUNCTION hgf_sync_first(p_conn bigint, p_r text[], p_d text[], p_m text[], p_a text[],
                               p_s bigint[], p_p double precision[], p_ti int[], p_tt text[],
                               p_source text, p_registry text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_images int; v_moves int;
BEGIN
    WITH l AS (
        SELECT nextval('images_id_seq') AS id, u.*
          FROM (SELECT DISTINCT ON (rp.id, x.d) rp.id AS rid, x.r, x.d, x.m, x.a, x.s, x.p, x.o
                  FROM unnest(p_r, p_d, p_m, p_a, p_s, p_p)
                       WITH ORDINALITY AS x(r, d, m, a, s, p, o)
                  JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
                 ORDER BY rp.id, x.d, x.o) u),
    stored AS (
        INSERT INTO images (id, repository_id, digest, media_type, artifact_media_type,
                            size_bytes, pushed_at)
        SELECT l.id, l.rid, l.d, l.m, l.a, l.s, to_timestamp(l.p) FROM l),
    t AS (
        SELECT DISTINCT ON (l.rid, tg.tag) l.rid, tg.tag, l.id, l.d
          FROM unnest(p_ti, p_tt) AS tg(o, tag) JOIN l ON l.o = tg.o::bigint
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

-- sql/013's hgf_apply_sync for a listing as arrays, with the connection
-- locked first. Same result.
CREATE FUNCTION hgf_apply_sync(p_conn bigint, p_repos jsonb, p_r text[], p_d text[],
                               p_m text[], p_a text[], p_s bigint[], p_p double precision[],
                               p_ti int[], p_tt text[], p_source text)
RETURNS jsonb LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    v_registry text;
    v_repo_ids bigint[];
    v_n_repos int; v_upd_repos int; v_new_repos int; v_del_repos int;
    v_n int := coalesce(cardinality(p_d), 0);
    d jsonb;
BEGIN
    IF coalesce(cardinality(p_r), 0) <> v_n OR coalesce(cardinality(p_m), 0) <> v_n
       OR coalesce(cardinality(p_a), 0) <> v_n OR coalesce(cardinality(p_s), 0) <> v_n
       OR coalesce(cardinality(p_p), 0) <> v_n THEN
        RAISE EXCEPTION 'listing of connection %: the image arrays (repository, digest, media '
                        'type, artifact type, size, pushed) differ in length', p_conn;
    END IF;
    IF coalesce(cardinality(p_ti), 0) <> coalesce(cardinality(p_tt), 0) THEN
        RAISE EXCEPTION 'listing of connection %: the tag arrays (image, tag) differ in length',
                        p_conn;
    END IF;
    -- Until this transaction ends, no purge can delete the connection and
    -- with it the repositories and images written below (see the top).
    SELECT registry INTO v_registry FROM connections WHERE id = p_conn FOR KEY SHARE;
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
        d := hgf_sync_diff(p_conn, v_repo_ids, p_r, p_d, p_m, p_a, p_s, p_p, p_ti, p_tt,
                           p_source, v_registry);
    ELSE
        BEGIN
            d := hgf_sync_first(p_conn, p_r, p_d, p_m, p_a, p_s, p_p, p_ti, p_tt, p_source,
                                v_registry);
        EXCEPTION WHEN unique_violation THEN
            d := hgf_sync_diff(p_conn, v_repo_ids, p_r, p_d, p_m, p_a, p_s, p_p, p_ti, p_tt,
                               p_source, v_registry);
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

-- The JSON form (sql/002's p_images: [{"r","d","t":[tags],"m","a","s","p"}])
-- as arrays, in the listing's order.
CREATE OR REPLACE FUNCTION hgf_apply_sync(p_conn bigint, p_repos jsonb, p_images jsonb,
                                          p_source text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r text[]; d text[]; m text[]; a text[]; s bigint[]; p double precision[];
    ti int[]; tt text[];
BEGIN
    SELECT coalesce(array_agg(x.r ORDER BY x.o), '{}'), coalesce(array_agg(x.d ORDER BY x.o), '{}'),
           coalesce(array_agg(x.m ORDER BY x.o), '{}'), coalesce(array_agg(x.a ORDER BY x.o), '{}'),
           coalesce(array_agg(x.s ORDER BY x.o), '{}'), coalesce(array_agg(x.p ORDER BY x.o), '{}')
      INTO r, d, m, a, s, p
      FROM ROWS FROM (jsonb_to_recordset(p_images)
                      AS (r text, d text, m text, a text, s bigint, p double precision))
           WITH ORDINALITY AS x(r, d, m, a, s, p, o);
    SELECT coalesce(array_agg(x.o::int ORDER BY x.o, tg.k), '{}'),
           coalesce(array_agg(tg.tag ORDER BY x.o, tg.k), '{}')
      INTO ti, tt
      FROM ROWS FROM (jsonb_to_recordset(p_images) AS (t jsonb)) WITH ORDINALITY AS x(t, o)
           CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.t, '[]'::jsonb))
                              WITH ORDINALITY AS tg(tag, k);
    RETURN hgf_apply_sync(p_conn, p_repos, r, d, m, a, s, p, ti, tt, p_source);
END;
$$;

-- sql/009's hgf_apply_listing for a listing as arrays: what the sync job
-- sends. The JSON form stays as it was and reaches the same function.
CREATE FUNCTION hgf_apply_listing(p_conn bigint, p_repos jsonb, p_r text[], p_d text[],
                                  p_m text[], p_a text[], p_s bigint[],
                                  p_p double precision[], p_ti int[], p_tt text[],
                                  p_fingerprint text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    PERFORM set_config('hgfleet.applying_catalog', 'on', true);
    v := hgf_apply_sync(p_conn, p_repos, p_r, p_d, p_m, p_a, p_s, p_p, p_ti, p_tt, 'sync');
    PERFORM set_config('hgfleet.applying_catalog', '', true);
    UPDATE connections
       SET catalog_fingerprint = p_fingerprint,
           catalog_counts = jsonb_build_object('repositories', v->'repositories',
                                               'images', v->'images')
     WHERE id = p_conn;
    RETURN v;
END
$$;

-- sql/010's, with the connection locked first.
CREATE OR REPLACE FUNCTION hgf_apply_push(p_conn bigint, p_repo text, p_digest text, p_tag text,
                                          p_action text, p_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c connections%ROWTYPE;
    v_repo bigint; v_repo_gone boolean; v_new_repo boolean := false;
    v_image bigint; v_new_image boolean := false;
    v_old text; v_moved boolean := false;
    v_job bigint; v_key text; v_deleted int := 0;
BEGIN
    -- As in hgf_apply_sync: no purge of the connection until this ends.
    SELECT * INTO c FROM connections WHERE id = p_conn FOR KEY SHARE;
    IF p_action = 'DELETE' THEN
        WITH gone AS (
            UPDATE images im SET deleted_at = now()
              FROM repositories rp
             WHERE rp.connection_id = p_conn AND rp.name = p_repo AND im.repository_id = rp.id
               AND im.digest = p_digest AND im.deleted_at IS NULL
            RETURNING im.id, im.repository_id)
        SELECT count(*) INTO v_deleted FROM gone;
        INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
        SELECT it.repository_id, it.tag, p_digest, NULL, 'push'
          FROM image_tags it JOIN images im ON im.id = it.image_id
          JOIN repositories rp ON rp.id = it.repository_id
         WHERE rp.connection_id = p_conn AND rp.name = p_repo AND im.digest = p_digest;
        DELETE FROM image_tags it USING images im, repositories rp
         WHERE im.id = it.image_id AND rp.id = it.repository_id AND rp.connection_id = p_conn
           AND rp.name = p_repo AND im.digest = p_digest;
        RETURN jsonb_build_object('action', 'DELETE', 'deleted', v_deleted);
    END IF;

    SELECT id, deleted_at IS NOT NULL INTO v_repo, v_repo_gone
      FROM repositories WHERE connection_id = p_conn AND name = p_repo;
    IF v_repo IS NULL OR v_repo_gone THEN
        INSERT INTO repositories (connection_id, name, arn)
        VALUES (p_conn, p_repo, 'arn:' || c.partition || ':ecr:' || c.region || ':' || c.account_id
                                || ':repository/' || p_repo)
        ON CONFLICT (connection_id, name) DO UPDATE SET deleted_at = NULL
         WHERE repositories.deleted_at IS NOT NULL
        RETURNING id, (xmax = 0) INTO v_repo, v_new_repo;
        IF v_repo IS NULL THEN -- a concurrent event revived or created it first
            SELECT id INTO v_repo FROM repositories WHERE connection_id = p_conn AND name = p_repo;
        END IF;
        v_new_repo := coalesce(v_new_repo, false);
    END IF;

    SELECT id, deleted_at IS NOT NULL INTO v_image, v_new_image
      FROM images WHERE repository_id = v_repo AND digest = p_digest;
    IF v_image IS NULL THEN
        INSERT INTO images (repository_id, digest, pushed_at) VALUES (v_repo, p_digest, p_at)
        RETURNING id INTO v_image;
        v_new_image := true;
    ELSIF v_new_image THEN
        UPDATE images SET deleted_at = NULL WHERE id = v_image;
    END IF;

    IF v_new_image THEN
        v_key := 'scan:' || c.registry || '/' || p_repo || '@' || p_digest;
        INSERT INTO jobs (kind, payload, priority, dedup_key)
        VALUES ('scan', jsonb_build_object('connection_id', p_conn, 'image_id', v_image,
                                           'repository', p_repo, 'digest', p_digest,
                                           'tag', p_tag, 'reason', 'push'), 10, v_key)
        ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING
        RETURNING id INTO v_job;
        IF v_job IS NULL THEN
            SELECT id INTO v_job FROM jobs WHERE dedup_key = v_key AND state IN ('queued', 'running');
        END IF;
    END IF;

    IF p_tag IS NOT NULL THEN
        -- A tag seen for the first time is inserted; else its row is locked
        -- before its digest is read, so events moving the same tag at once
        -- each record the digest the one before them left.
        INSERT INTO image_tags (repository_id, tag, image_id) VALUES (v_repo, p_tag, v_image)
        ON CONFLICT (repository_id, tag) DO NOTHING RETURNING true INTO v_moved;
        IF v_moved IS NULL THEN
            PERFORM 1 FROM image_tags WHERE repository_id = v_repo AND tag = p_tag FOR UPDATE;
            SELECT im.digest INTO v_old FROM image_tags it JOIN images im ON im.id = it.image_id
             WHERE it.repository_id = v_repo AND it.tag = p_tag;
            v_moved := v_old IS DISTINCT FROM p_digest;
            IF v_moved THEN
                UPDATE image_tags SET image_id = v_image, updated_at = now()
                 WHERE repository_id = v_repo AND tag = p_tag;
            END IF;
        END IF;
        IF v_moved THEN
            INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
            VALUES (v_repo, p_tag, v_old, p_digest, 'push');
        END IF;
    END IF;
    RETURN jsonb_build_object('action', 'PUSH', 'new_repository', v_new_repo,
                              'new_image', v_new_image, 'tag_moved', v_moved, 'job_id', v_job);
END;
$$;
