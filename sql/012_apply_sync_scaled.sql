-- hgf_apply_sync at scale: the same contract as sql/004's, with no statement
-- that reads more than the connection's own rows and none that is quadratic.
--
-- What sql/004's version did and this one does not:
--   - staged images keyed by (repo name, digest) but looked them up by
--     (repository id, digest), so marking deleted images probed the whole
--     staging index once per stored image: O(n^2) in a registry's images
--     (0.36 s for 2,895 images, minutes for 100,000);
--   - joined the whole images table (a sequential scan as the fleet grows)
--     to find live images and tag targets, instead of the connection's own
--     repositories;
--   - parsed the listing's JSON twice and kept a fourth staging table for
--     images already live, which a separate UPDATE now fills in.
-- The staging tables have new names: a session that ran the old function
-- keeps the old tables, with the old keys, until it ends.
CREATE OR REPLACE FUNCTION hgf_apply_sync(p_conn bigint, p_repos jsonb, p_images jsonb, p_source text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_registry text;
    v_repo_ids bigint[];
    v_new_repos int; v_upd_repos int; v_del_repos int;
    v_new_images int; v_del_images int; v_tag_moves int; v_tags_written int; v_scans int;
    v_n_repos int; v_n_images int;
BEGIN
    SELECT registry INTO v_registry FROM connections WHERE id = p_conn;
    IF v_registry IS NULL THEN
        RAISE EXCEPTION 'connection % does not exist', p_conn;
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS hgf_sync_repos (
        name text PRIMARY KEY, arn text, mut text, sop boolean, enc text, created timestamptz
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS hgf_sync_images (
        repository_id bigint, digest text, repo text, media text, artifact text, size bigint,
        pushed timestamptz, tags jsonb, PRIMARY KEY (repository_id, digest)
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS hgf_sync_tags (
        repository_id bigint, tag text, digest text, PRIMARY KEY (repository_id, tag)
    ) ON COMMIT DELETE ROWS;

    INSERT INTO hgf_sync_repos
    SELECT r.n, r.a, r.m, r.s, r.e, to_timestamp(r.c)
      FROM jsonb_to_recordset(p_repos) AS r(n text, a text, m text, s boolean, e text, c double precision)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n_repos = ROW_COUNT;

    -- Repositories: new, changed, back from the dead, gone.
    INSERT INTO repositories (connection_id, name, arn, tag_mutability, scan_on_push, encryption, created_at)
    SELECT p_conn, i.name, i.arn, i.mut, i.sop, i.enc, i.created FROM hgf_sync_repos i
    ON CONFLICT (connection_id, name) DO UPDATE
       SET arn = EXCLUDED.arn, tag_mutability = EXCLUDED.tag_mutability,
           scan_on_push = EXCLUDED.scan_on_push, encryption = EXCLUDED.encryption,
           created_at = EXCLUDED.created_at, deleted_at = NULL
     WHERE repositories.deleted_at IS NOT NULL
        OR (repositories.arn, repositories.tag_mutability, repositories.scan_on_push, repositories.encryption)
           IS DISTINCT FROM (EXCLUDED.arn, EXCLUDED.tag_mutability, EXCLUDED.scan_on_push, EXCLUDED.encryption);
    GET DIAGNOSTICS v_upd_repos = ROW_COUNT;
    SELECT count(*) INTO v_new_repos FROM repositories
     WHERE connection_id = p_conn AND first_seen = now();

    UPDATE repositories SET deleted_at = now()
     WHERE connection_id = p_conn AND deleted_at IS NULL
       AND name NOT IN (SELECT name FROM hgf_sync_repos);
    GET DIAGNOSTICS v_del_repos = ROW_COUNT;

    -- Every later statement reaches images and tags through these ids (the
    -- leading column of their keys), never through the whole table.
    v_repo_ids := ARRAY(SELECT id FROM repositories WHERE connection_id = p_conn);

    INSERT INTO hgf_sync_images
    SELECT rp.id, x.d, x.r, x.m, x.a, x.s, to_timestamp(x.p), x.t
      FROM jsonb_to_recordset(p_images) AS x(r text, d text, m text, a text, s bigint,
                                             p double precision, t jsonb)
      JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n_images = ROW_COUNT;

    INSERT INTO hgf_sync_tags
    SELECT ii.repository_id, t.tag, ii.digest
      FROM hgf_sync_images ii
     CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(ii.tags, '[]'::jsonb)) AS t(tag)
    ON CONFLICT DO NOTHING;

    -- Live images a push event recorded before a sync could fill in their
    -- details: filling them in is not a new digest.
    UPDATE images im SET media_type = ii.media, size_bytes = ii.size, pushed_at = ii.pushed,
                         artifact_media_type = ii.artifact
      FROM hgf_sync_images ii
     WHERE im.repository_id = ANY (v_repo_ids)
       AND im.repository_id = ii.repository_id AND im.digest = ii.digest
       AND im.deleted_at IS NULL AND im.media_type IS NULL;

    -- New digests (or digests seen again after deletion) are what get scanned.
    WITH ins AS (
        INSERT INTO images (repository_id, digest, media_type, artifact_media_type, size_bytes, pushed_at)
        SELECT ii.repository_id, ii.digest, ii.media, ii.artifact, ii.size, ii.pushed
          FROM hgf_sync_images ii
        ON CONFLICT (repository_id, digest) DO UPDATE
           SET deleted_at = NULL, media_type = EXCLUDED.media_type, size_bytes = EXCLUDED.size_bytes,
               pushed_at = EXCLUDED.pushed_at, artifact_media_type = EXCLUDED.artifact_media_type
         WHERE images.deleted_at IS NOT NULL
        RETURNING id, repository_id, digest),
    queued AS (
        INSERT INTO jobs (kind, payload, priority, dedup_key)
        SELECT 'scan',
               jsonb_build_object('connection_id', p_conn, 'image_id', ins.id,
                                  'repository', ii.repo, 'digest', ins.digest, 'reason', p_source),
               0, 'scan:' || v_registry || '/' || ii.repo || '@' || ins.digest
          FROM ins JOIN hgf_sync_images ii
            ON ii.repository_id = ins.repository_id AND ii.digest = ins.digest
        ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING
        RETURNING 1)
    SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM queued) INTO v_new_images, v_scans;

    UPDATE images im SET deleted_at = now()
     WHERE im.repository_id = ANY (v_repo_ids) AND im.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM hgf_sync_images ii
                        WHERE ii.repository_id = im.repository_id AND ii.digest = im.digest);
    GET DIAGNOSTICS v_del_images = ROW_COUNT;

    -- Tags: every move is an event; the map holds the present.
    WITH cur AS (
        SELECT it.repository_id, it.tag, im.digest
          FROM image_tags it JOIN images im
            ON im.id = it.image_id AND im.repository_id = ANY (v_repo_ids)
         WHERE it.repository_id = ANY (v_repo_ids)),
    moves AS (
        SELECT coalesce(n.repository_id, c.repository_id) AS repository_id,
               coalesce(n.tag, c.tag) AS tag, c.digest AS old_digest, n.digest AS new_digest
          FROM hgf_sync_tags n FULL JOIN cur c ON c.repository_id = n.repository_id AND c.tag = n.tag
         WHERE c.digest IS DISTINCT FROM n.digest)
    INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
    SELECT repository_id, tag, old_digest, new_digest, p_source FROM moves;
    GET DIAGNOSTICS v_tag_moves = ROW_COUNT;

    v_tags_written := 0;
    IF v_tag_moves > 0 THEN
        DELETE FROM image_tags it
         WHERE it.repository_id = ANY (v_repo_ids)
           AND NOT EXISTS (SELECT 1 FROM hgf_sync_tags n
                            WHERE n.repository_id = it.repository_id AND n.tag = it.tag);
        INSERT INTO image_tags (repository_id, tag, image_id)
        SELECT n.repository_id, n.tag, im.id
          FROM hgf_sync_tags n JOIN images im
            ON im.repository_id = ANY (v_repo_ids)
           AND im.repository_id = n.repository_id AND im.digest = n.digest
        ON CONFLICT (repository_id, tag) DO UPDATE
           SET image_id = EXCLUDED.image_id, updated_at = now()
         WHERE image_tags.image_id <> EXCLUDED.image_id;
        GET DIAGNOSTICS v_tags_written = ROW_COUNT;
    END IF;

    RETURN jsonb_build_object(
        'repositories', v_n_repos, 'images', v_n_images,
        'new_repositories', v_new_repos, 'new_images', v_new_images,
        'deleted_repositories', v_del_repos, 'deleted_images', v_del_images,
        'tag_moves', v_tag_moves, 'scans_queued', v_scans,
        'rows_written', v_upd_repos + v_del_repos + v_new_images + v_del_images
                        + 2 * v_tag_moves + v_scans);
END;
$$;
