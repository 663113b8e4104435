-- hgf_apply_push (sql/004) with shorter row locks. Push events for one
-- repository arrive in parallel (the webhook runs on several connections),
-- and their scan jobs can be claimed only once they commit:
--  * the repository was upserted on every event, and INSERT ... ON CONFLICT
--    DO UPDATE locks the existing row even when its WHERE skips the update,
--    so every event for a repository waited for the previous one's whole
--    transaction. A live repository is now only read.
--  * a moved tag's row (one hot row for a tag such as "latest") is locked
--    last, so only until the commit that follows at once; it is locked
--    before it is read, so concurrent moves of one tag record a true chain
--    of old digests (the repository lock used to serialize them).
-- Same arguments and result; new_repository is false, not null, for a known
-- repository.
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
