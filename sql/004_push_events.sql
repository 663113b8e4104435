-- Push events: the webhook's one round trip. A PUSH records the repository
-- (new ones too), the digest and the tag move, and queues a push-priority
-- scan when the digest is new to the store; a known digest under a new tag is
-- only a tag move. A DELETE marks the image deleted and drops its tags.
-- Returns {"action","new_repository","new_image","tag_moved","job_id","deleted"}.
CREATE FUNCTION hgf_apply_push(p_conn bigint, p_repo text, p_digest text, p_tag text,
                               p_action text, p_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c connections%ROWTYPE;
    v_repo bigint; v_new_repo boolean := false;
    v_image bigint; v_new_image boolean := false;
    v_old text; v_moved boolean := false;
    v_job bigint; v_key text; v_deleted int := 0;
BEGIN
    SELECT * INTO c FROM connections WHERE id = p_conn;
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

    INSERT INTO repositories (connection_id, name, arn)
    VALUES (p_conn, p_repo, 'arn:' || c.partition || ':ecr:' || c.region || ':' || c.account_id
                            || ':repository/' || p_repo)
    ON CONFLICT (connection_id, name) DO UPDATE SET deleted_at = NULL
     WHERE repositories.deleted_at IS NOT NULL
    RETURNING id, (xmax = 0) INTO v_repo, v_new_repo;
    IF v_repo IS NULL THEN
        SELECT id INTO v_repo FROM repositories WHERE connection_id = p_conn AND name = p_repo;
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

    IF p_tag IS NOT NULL THEN
        SELECT im.digest INTO v_old FROM image_tags it JOIN images im ON im.id = it.image_id
         WHERE it.repository_id = v_repo AND it.tag = p_tag;
        IF v_old IS DISTINCT FROM p_digest THEN
            v_moved := true;
            INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
            VALUES (v_repo, p_tag, v_old, p_digest, 'push');
            INSERT INTO image_tags (repository_id, tag, image_id) VALUES (v_repo, p_tag, v_image)
            ON CONFLICT (repository_id, tag) DO UPDATE SET image_id = EXCLUDED.image_id, updated_at = now();
        END IF;
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
    RETURN jsonb_build_object('action', 'PUSH', 'new_repository', v_new_repo,
                              'new_image', v_new_image, 'tag_moved', v_moved, 'job_id', v_job);
END;
$$;

-- The sync fills in what a push event could not know (media type, size) and
-- no longer counts such an image as new: its scan was queued by the push.
CREATE OR REPLACE FUNCTION hgf_apply_sync(p_conn bigint, p_repos jsonb, p_images jsonb, p_source text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_registry text;
    v_new_repos int; v_upd_repos int; v_del_repos int;
    v_new_images int; v_del_images int; v_tag_moves int; v_tags_written int; v_scans int;
    v_n_repos int; v_n_images int;
BEGIN
    SELECT registry INTO v_registry FROM connections WHERE id = p_conn;
    IF v_registry IS NULL THEN
        RAISE EXCEPTION 'connection % does not exist', p_conn;
    END IF;

    CREATE TEMP TABLE IF NOT EXISTS hgf_in_repos (
        name text PRIMARY KEY, arn text, mut text, sop boolean, enc text, created timestamptz
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS hgf_in_images (
        repo text, digest text, media text, artifact text, size bigint, pushed timestamptz,
        repository_id bigint, PRIMARY KEY (repo, digest)
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS hgf_in_tags (
        repository_id bigint, tag text, digest text, PRIMARY KEY (repository_id, tag)
    ) ON COMMIT DELETE ROWS;

    INSERT INTO hgf_in_repos
    SELECT r.n, r.a, r.m, r.s, r.e, to_timestamp(r.c)
      FROM jsonb_to_recordset(p_repos) AS r(n text, a text, m text, s boolean, e text, c double precision)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n_repos = ROW_COUNT;

    -- Repositories: new, changed, back from the dead, gone.
    INSERT INTO repositories (connection_id, name, arn, tag_mutability, scan_on_push, encryption, created_at)
    SELECT p_conn, i.name, i.arn, i.mut, i.sop, i.enc, i.created FROM hgf_in_repos i
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
       AND name NOT IN (SELECT name FROM hgf_in_repos);
    GET DIAGNOSTICS v_del_repos = ROW_COUNT;

    INSERT INTO hgf_in_images
    SELECT x.r, x.d, x.m, x.a, x.s, to_timestamp(x.p), rp.id
      FROM jsonb_to_recordset(p_images) AS x(r text, d text, m text, a text, s bigint, p double precision)
      JOIN repositories rp ON rp.connection_id = p_conn AND rp.name = x.r
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS v_n_images = ROW_COUNT;

    INSERT INTO hgf_in_tags
    SELECT ii.repository_id, t.tag, x.d
      FROM jsonb_to_recordset(p_images) AS x(r text, d text, t jsonb)
      JOIN hgf_in_images ii ON ii.repo = x.r AND ii.digest = x.d
     CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(x.t, '[]'::jsonb)) AS t(tag)
    ON CONFLICT DO NOTHING;

    -- Live images already known (a push event may have recorded one before its
    -- first sync filled in the details): filling them in is not a new digest.
    CREATE TEMP TABLE IF NOT EXISTS hgf_known_live (image_id bigint PRIMARY KEY) ON COMMIT DELETE ROWS;
    INSERT INTO hgf_known_live
    SELECT im.id FROM images im JOIN hgf_in_images ii
        ON im.repository_id = ii.repository_id AND im.digest = ii.digest
     WHERE im.deleted_at IS NULL;

    -- Images: new digests (or digests seen again after deletion) are what get scanned.
    CREATE TEMP TABLE IF NOT EXISTS hgf_new_images (image_id bigint, repo text, digest text)
        ON COMMIT DELETE ROWS;
    WITH ins AS (
        INSERT INTO images (repository_id, digest, media_type, artifact_media_type, size_bytes, pushed_at)
        SELECT ii.repository_id, ii.digest, ii.media, ii.artifact, ii.size, ii.pushed FROM hgf_in_images ii
        ON CONFLICT (repository_id, digest) DO UPDATE
           SET deleted_at = NULL, media_type = EXCLUDED.media_type, size_bytes = EXCLUDED.size_bytes,
               pushed_at = EXCLUDED.pushed_at, artifact_media_type = EXCLUDED.artifact_media_type
         WHERE images.deleted_at IS NOT NULL OR images.media_type IS NULL
        RETURNING id, repository_id, digest)
    INSERT INTO hgf_new_images
    SELECT ins.id, rp.name, ins.digest FROM ins JOIN repositories rp ON rp.id = ins.repository_id
     WHERE NOT EXISTS (SELECT 1 FROM hgf_known_live k WHERE k.image_id = ins.id);
    GET DIAGNOSTICS v_new_images = ROW_COUNT;

    UPDATE images im SET deleted_at = now()
      FROM repositories rp
     WHERE rp.connection_id = p_conn AND im.repository_id = rp.id AND im.deleted_at IS NULL
       AND NOT EXISTS (SELECT 1 FROM hgf_in_images ii
                        WHERE ii.repository_id = im.repository_id AND ii.digest = im.digest);
    GET DIAGNOSTICS v_del_images = ROW_COUNT;

    -- Tags: every move is an event; the map holds the present.
    WITH cur AS (
        SELECT it.repository_id, it.tag, im.digest
          FROM image_tags it JOIN images im ON im.id = it.image_id
          JOIN repositories rp ON rp.id = it.repository_id
         WHERE rp.connection_id = p_conn),
    moves AS (
        SELECT coalesce(n.repository_id, c.repository_id) AS repository_id,
               coalesce(n.tag, c.tag) AS tag, c.digest AS old_digest, n.digest AS new_digest
          FROM hgf_in_tags n FULL JOIN cur c ON c.repository_id = n.repository_id AND c.tag = n.tag
         WHERE c.digest IS DISTINCT FROM n.digest)
    INSERT INTO tag_events (repository_id, tag, old_digest, new_digest, source)
    SELECT repository_id, tag, old_digest, new_digest, p_source FROM moves;
    GET DIAGNOSTICS v_tag_moves = ROW_COUNT;

    IF v_tag_moves > 0 THEN
        DELETE FROM image_tags it USING repositories rp
         WHERE rp.id = it.repository_id AND rp.connection_id = p_conn
           AND NOT EXISTS (SELECT 1 FROM hgf_in_tags n
                            WHERE n.repository_id = it.repository_id AND n.tag = it.tag);
        INSERT INTO image_tags (repository_id, tag, image_id)
        SELECT n.repository_id, n.tag, im.id
          FROM hgf_in_tags n JOIN images im ON im.repository_id = n.repository_id AND im.digest = n.digest
        ON CONFLICT (repository_id, tag) DO UPDATE
           SET image_id = EXCLUDED.image_id, updated_at = now()
         WHERE image_tags.image_id <> EXCLUDED.image_id;
        GET DIAGNOSTICS v_tags_written = ROW_COUNT;
    ELSE
        v_tags_written := 0;
    END IF;

    INSERT INTO jobs (kind, payload, priority, dedup_key)
    SELECT 'scan',
           jsonb_build_object('connection_id', p_conn, 'image_id', n.image_id,
                              'repository', n.repo, 'digest', n.digest, 'reason', p_source),
           0, 'scan:' || v_registry || '/' || n.repo || '@' || n.digest
      FROM hgf_new_images n
    ON CONFLICT (dedup_key) WHERE state IN ('queued', 'running') DO NOTHING;
    GET DIAGNOSTICS v_scans = ROW_COUNT;

    RETURN jsonb_build_object(
        'repositories', v_n_repos, 'images', v_n_images,
        'new_repositories', v_new_repos, 'new_images', v_new_images,
        'deleted_repositories', v_del_repos, 'deleted_images', v_del_images,
        'tag_moves', v_tag_moves, 'scans_queued', v_scans,
        'rows_written', v_upd_repos + v_del_repos + v_new_images + v_del_images
                        + 2 * v_tag_moves + v_scans);
END;
$$;
