-- Catalog fingerprints: an unchanged re-sync costs one small statement.
--
-- The sync job hashes its listing (src/sched/sync.c: every repository and
-- image field hgf_apply_sync stores, sorted) and applies it through
-- hgf_apply_listing, which stores the hash with the counts it returned. The
-- next sync whose hash matches asks hgf_sync_unchanged instead and sends no
-- listing: hgf_apply_sync is idempotent, so applying the same listing again
-- to a catalog nobody else touched would change nothing.
--
-- "Nobody else touched" is kept by triggers rather than by each writer: any
-- statement that changes a stored catalog field of a connection (a push
-- event, a scan that finds its image gone, a hand-made fix, a writer added
-- later) clears that connection's fingerprint, so its next sync applies.
-- Policy columns (hgf_apply_posture) and config columns (scans) are not
-- catalog fields: posture runs on every sync that asks for it anyway.
--
-- A later migration that changes what hgf_apply_sync stores for a given
-- listing must forget every fingerprint (UPDATE connections SET
-- catalog_fingerprint = NULL), or unchanged registries keep the old result.
ALTER TABLE connections
    ADD COLUMN catalog_fingerprint text,     -- NULL: the next sync applies
    ADD COLUMN catalog_counts      jsonb;    -- {"repositories","images"} of that apply

-- Forgets the fingerprints of the given connections. Writes nothing for a
-- connection that has none, so a burst of push events costs one row.
CREATE FUNCTION hgf_catalog_forget(p_conns bigint[])
RETURNS void LANGUAGE sql AS $$
    UPDATE connections SET catalog_fingerprint = NULL
     WHERE id = ANY (p_conns) AND catalog_fingerprint IS NOT NULL;
$$;

-- Set by hgf_apply_listing while it applies, which stores the fingerprint
-- itself at its end: its own writes need no forgetting, and taking the
-- connection's row lock at its first write would make a push event for the
-- same registry wait for (or deadlock with) the whole apply.
CREATE FUNCTION hgf_catalog_applying()
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('hgfleet.applying_catalog', true), '') = 'on';
$$;

-- Statement-level, so a whole-catalog write pays once per statement, not
-- per row. An UPDATE counts only when a field hgf_apply_sync stores changed.
CREATE FUNCTION hgf_repositories_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF hgf_catalog_applying() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM hgf_catalog_forget(ARRAY(SELECT DISTINCT connection_id FROM new_rows));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM hgf_catalog_forget(ARRAY(SELECT DISTINCT connection_id FROM old_rows));
    ELSE
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT o.connection_id FROM old_rows o JOIN new_rows n ON n.id = o.id
             WHERE (o.connection_id, o.name, o.arn, o.tag_mutability, o.scan_on_push,
                    o.encryption, o.created_at, o.deleted_at)
                   IS DISTINCT FROM
                   (n.connection_id, n.name, n.arn, n.tag_mutability, n.scan_on_push,
                    n.encryption, n.created_at, n.deleted_at)));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION hgf_images_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF hgf_catalog_applying() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (SELECT repository_id FROM new_rows)));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (SELECT repository_id FROM old_rows)));
    ELSE
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (
                SELECT o.repository_id FROM old_rows o JOIN new_rows n ON n.id = o.id
                 WHERE (o.repository_id, o.digest, o.media_type, o.artifact_media_type,
                        o.size_bytes, o.pushed_at, o.deleted_at)
                       IS DISTINCT FROM
                       (n.repository_id, n.digest, n.media_type, n.artifact_media_type,
                        n.size_bytes, n.pushed_at, n.deleted_at))));
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION hgf_image_tags_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF hgf_catalog_applying() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (SELECT repository_id FROM new_rows)));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (SELECT repository_id FROM old_rows)));
    ELSE
        PERFORM hgf_catalog_forget(ARRAY(
            SELECT DISTINCT rp.connection_id FROM repositories rp
             WHERE rp.id IN (
                SELECT o.repository_id FROM old_rows o JOIN new_rows n
                    ON n.repository_id = o.repository_id AND n.tag = o.tag
                 WHERE o.image_id IS DISTINCT FROM n.image_id)));
    END IF;
    RETURN NULL;
END
$$;

-- A trigger with transition tables takes one event, hence three per table.
CREATE TRIGGER repositories_catalog_ins AFTER INSERT ON repositories
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_repositories_changed();
CREATE TRIGGER repositories_catalog_upd AFTER UPDATE ON repositories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_repositories_changed();
CREATE TRIGGER repositories_catalog_del AFTER DELETE ON repositories
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_repositories_changed();
CREATE TRIGGER images_catalog_ins AFTER INSERT ON images
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_images_changed();
CREATE TRIGGER images_catalog_upd AFTER UPDATE ON images
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_images_changed();
CREATE TRIGGER images_catalog_del AFTER DELETE ON images
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_images_changed();
CREATE TRIGGER image_tags_catalog_ins AFTER INSERT ON image_tags
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_image_tags_changed();
CREATE TRIGGER image_tags_catalog_upd AFTER UPDATE ON image_tags
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_image_tags_changed();
CREATE TRIGGER image_tags_catalog_del AFTER DELETE ON image_tags
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hgf_image_tags_changed();

-- hgf_apply_sync, then the listing's fingerprint (NULL: none, the next sync
-- applies) and counts, after the triggers of its own writes have run.
-- Returns what hgf_apply_sync returns.
CREATE FUNCTION hgf_apply_listing(p_conn bigint, p_repos jsonb, p_images jsonb,
                                  p_fingerprint text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v jsonb;
BEGIN
    PERFORM set_config('hgfleet.applying_catalog', 'on', true);
    v := hgf_apply_sync(p_conn, p_repos, p_images, 'sync');
    PERFORM set_config('hgfleet.applying_catalog', '', true);
    UPDATE connections
       SET catalog_fingerprint = p_fingerprint,
           catalog_counts = jsonb_build_object('repositories', v->'repositories',
                                               'images', v->'images')
     WHERE id = p_conn;
    RETURN v;
END
$$;

-- What hgf_apply_sync would have returned for the listing last applied, with
-- nothing new, when p_fingerprint is still the stored one; NULL otherwise.
-- Reads only: the caller records the sync as it does after an apply.
CREATE FUNCTION hgf_sync_unchanged(p_conn bigint, p_fingerprint text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT catalog_counts || jsonb_build_object(
               'new_repositories', 0, 'new_images', 0, 'deleted_repositories', 0,
               'deleted_images', 0, 'tag_moves', 0, 'scans_queued', 0, 'rows_written', 0,
               'unchanged', true)
      FROM connections
     WHERE id = p_conn AND catalog_fingerprint = p_fingerprint;
$$;
