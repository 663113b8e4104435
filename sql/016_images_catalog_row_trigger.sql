-- The fingerprint's UPDATE trigger on images fires per changed row, and only
-- when a catalog field changed outside an apply (issue #8).
--
-- sql/009 made it a statement trigger with transition tables, so that a
-- whole-catalog write paid once. But the writers that update images one row
-- at a time are the scans: each records the image's config (config_kind,
-- config_user, config_read_at) and each finish runs an UPDATE that marks the
-- image gone only when the registry said so, and matches no row otherwise. A
-- statement trigger fires for both, and ran its transition-table join and
-- hgf_catalog_forget twice per scan: in a `small` sweep (25,642 scans),
-- 51,284 calls and 12.1 s of the database's 64 s of statement time.
--
-- A row trigger's WHEN is evaluated before anything is queued, so a config
-- update, an UPDATE that matched nothing and every row an apply writes
-- (hgf_catalog_applying) cost no call at all. What it forgets is unchanged:
-- the connection of any image whose stored catalog fields changed. (PostgreSQL
-- allows no column list on a trigger with transition tables, so the statement
-- form could not have been narrowed instead.)
DROP TRIGGER images_catalog_upd ON images;

CREATE FUNCTION hgf_image_row_changed()
RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM hgf_catalog_forget(ARRAY(
        SELECT connection_id FROM repositories
         WHERE id IN (OLD.repository_id, NEW.repository_id)));
    RETURN NULL;
END
$$;

CREATE TRIGGER images_catalog_upd AFTER UPDATE ON images
    FOR EACH ROW
    WHEN (NOT hgf_catalog_applying()
          AND (OLD.repository_id, OLD.digest, OLD.media_type, OLD.artifact_media_type,
               OLD.size_bytes, OLD.pushed_at, OLD.deleted_at)
              IS DISTINCT FROM
              (NEW.repository_id, NEW.digest, NEW.media_type, NEW.artifact_media_type,
               NEW.size_bytes, NEW.pushed_at, NEW.deleted_at))
    EXECUTE FUNCTION hgf_image_row_changed();
