-- The catalog, the connections that produce it, and the job queue.

CREATE TABLE connections (
    id               bigserial PRIMARY KEY,
    name             text NOT NULL,
    partition        text NOT NULL,
    account_id       text NOT NULL CHECK (account_id ~ '^[0-9]{12}$'),
    region           text NOT NULL,
    fips             boolean NOT NULL DEFAULT false,
    registry         text NOT NULL,            -- bare host name
    auth_mode        text NOT NULL CHECK (auth_mode IN ('host', 'static', 'assume_role')),
    access_key_id    text,
    secret_sealed    text,                     -- AES-256-GCM, see src/core/secret.c
    role_arn         text,
    external_id      text,
    session_name     text,
    duration_seconds integer,
    via_role_arn     text,
    schedule         text NOT NULL DEFAULT 'daily',
    tag_include      text[] NOT NULL DEFAULT '{}',
    tag_exclude      text[] NOT NULL DEFAULT '{}',
    next_sync_at     timestamptz,
    last_sync_at     timestamptz,
    last_sync_status text,                     -- ok | failed
    last_error       text,
    last_diagnosis   jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    removed_at       timestamptz               -- removed without --purge: history kept
);
-- One live connection per registry; removed ones keep their history.
CREATE UNIQUE INDEX connections_registry_live
    ON connections (partition, account_id, region) WHERE removed_at IS NULL;

CREATE TABLE repositories (
    id             bigserial PRIMARY KEY,
    connection_id  bigint NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    name           text NOT NULL,
    arn            text,
    tag_mutability text,
    scan_on_push   boolean,
    encryption     text,
    created_at     timestamptz,
    first_seen     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    UNIQUE (connection_id, name)
);

CREATE TABLE images (
    id                  bigserial PRIMARY KEY,
    repository_id       bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest              text NOT NULL,
    media_type          text,
    artifact_media_type text,
    size_bytes          bigint,
    pushed_at           timestamptz,
    first_seen          timestamptz NOT NULL DEFAULT now(),
    deleted_at          timestamptz,
    UNIQUE (repository_id, digest)
);

CREATE TABLE image_tags (
    repository_id bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           text NOT NULL,
    image_id      bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (repository_id, tag)
);
CREATE INDEX image_tags_image ON image_tags (image_id);

CREATE TABLE tag_events (
    id            bigserial PRIMARY KEY,
    repository_id bigint NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    tag           text NOT NULL,
    old_digest    text,                        -- NULL: the tag is new
    new_digest    text,                        -- NULL: the tag went away
    source        text NOT NULL CHECK (source IN ('sync', 'push')),
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tag_events_repo ON tag_events (repository_id, at);

CREATE TABLE scans (
    id          bigserial PRIMARY KEY,
    image_id    bigint NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    scanner     text NOT NULL,
    status      text NOT NULL CHECK (status IN ('queued', 'running', 'ok', 'failed', 'skipped')),
    queued_at   timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    summary     jsonb,
    report      jsonb,
    error       text
);
CREATE INDEX scans_image ON scans (image_id, id DESC);

CREATE TABLE jobs (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('sync', 'scan', 'sweep')),
    payload          jsonb NOT NULL DEFAULT '{}',
    priority         integer NOT NULL DEFAULT 0,  -- higher runs first
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed')),
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 5,
    lease_owner      text,
    lease_expires_at timestamptz,
    dedup_key        text,
    last_error       text,
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- One pending-or-running job per key.
CREATE UNIQUE INDEX jobs_dedup_live ON jobs (dedup_key) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_claim ON jobs (priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';

CREATE TABLE sweeps (
    id           bigserial PRIMARY KEY,
    requested_by text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'complete', 'partial', 'failed')),
    report       jsonb
);
