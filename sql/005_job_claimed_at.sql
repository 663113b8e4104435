-- When a job was first claimed: push-to-claim latency is claimed_at - created_at,
-- both on the database's clock.
ALTER TABLE jobs ADD COLUMN claimed_at timestamptz;
