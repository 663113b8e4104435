-- Posture data the report judges: each repository's lifecycle and repository
-- policies (collected by syncs that ask for posture: GetLifecyclePolicy,
-- GetRepositoryPolicy) and each image's config user (read by its first scan
-- from the config blob).
--
-- *_status: NULL never collected, 'ok' (the policy, NULL when AWS's text was
-- not readable JSON), 'none' (the repository has no such policy), 'denied'
-- (AccessDenied: the check is "not evaluated", never a pass).
ALTER TABLE repositories
    ADD COLUMN lifecycle_policy         jsonb,
    ADD COLUMN lifecycle_policy_status  text
        CHECK (lifecycle_policy_status IN ('ok', 'none', 'denied')),
    ADD COLUMN repository_policy        jsonb,
    ADD COLUMN repository_policy_status text
        CHECK (repository_policy_status IN ('ok', 'none', 'denied')),
    ADD COLUMN policies_changed_at      timestamptz;

-- When posture was last collected for the whole connection (one row per
-- sweep, where a per-repository stamp would rewrite every repository).
ALTER TABLE connections ADD COLUMN posture_checked_at timestamptz;

-- config_kind: NULL not read yet; 'image' (config_user is the config's User,
-- '' when it has none); 'artifact' (a config that is no container image:
-- nothing to judge); 'unreadable' (the blob was no image config we could read).
ALTER TABLE images
    ADD COLUMN config_kind    text CHECK (config_kind IN ('image', 'artifact', 'unreadable')),
    ADD COLUMN config_user    text,
    ADD COLUMN config_read_at timestamptz;

-- hgf_apply_posture: one connection's policies in, only the repositories whose
-- policies changed written, plus the connection's stamp. A row without "ls"
-- (or "rs") keeps the stored lifecycle (repository) policy: its call failed.
-- p_rows: [{"n":name,"ls":status,"lp":policy,"rs":status,"rp":policy}]
-- Returns the rows written.
CREATE OR REPLACE FUNCTION hgf_apply_posture(p_conn bigint, p_rows jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_changed int;
BEGIN
    UPDATE repositories r
       SET lifecycle_policy_status = coalesce(x.ls, r.lifecycle_policy_status),
           lifecycle_policy = CASE WHEN x.ls IS NULL THEN r.lifecycle_policy ELSE x.lp END,
           repository_policy_status = coalesce(x.rs, r.repository_policy_status),
           repository_policy = CASE WHEN x.rs IS NULL THEN r.repository_policy ELSE x.rp END,
           policies_changed_at = now()
      FROM jsonb_to_recordset(p_rows) AS x(n text, ls text, lp jsonb, rs text, rp jsonb)
     WHERE r.connection_id = p_conn AND r.name = x.n AND r.deleted_at IS NULL
       AND ((x.ls IS NOT NULL AND (r.lifecycle_policy_status, r.lifecycle_policy)
                                  IS DISTINCT FROM (x.ls, x.lp))
         OR (x.rs IS NOT NULL AND (r.repository_policy_status, r.repository_policy)
                                  IS DISTINCT FROM (x.rs, x.rp)));
    GET DIAGNOSTICS v_changed = ROW_COUNT;
    UPDATE connections SET posture_checked_at = now() WHERE id = p_conn;
    RETURN v_changed + 1;
END
$$;
