-- Earshot sink schema, version 4: posts deleted at their source (retractions) and the
-- author's stable account id. Columns are added nullable, so rows written by earlier
-- versions stay valid.

-- The author's stable id on the source when the handle can change (a Bluesky DID, an X
-- user id).
ALTER TABLE mentions ADD COLUMN author_id text;

-- When the post was deleted at its source; NULL while it exists. Set once by the first
-- retraction the sink reads, never cleared, never moved: a replayed retraction changes
-- nothing. A retraction read before its post inserts a row holding only what the delete
-- event told (no text); the post, read later, is then not inserted over it.
ALTER TABLE mentions ADD COLUMN deleted_at timestamptz;

-- Analysts filter on it ("WHERE deleted_at IS NULL"); most rows are NULL.
CREATE INDEX mentions_deleted_at ON mentions (deleted_at) WHERE deleted_at IS NOT NULL;
