-- Earshot sink schema, version 3: why the enricher scored a mention as it did
-- (EnrichedMention.signals) and how the router decided (Alert.route_path, the review flag).
-- Columns are added with defaults, so rows written by earlier versions stay valid.

-- Every intent that holds (most urgent first; `intent` keeps the first), why spam_score is
-- above 0, audience and momentum 0..1, and what was wrong with the input.
ALTER TABLE mentions
    ADD COLUMN intents       text[]           NOT NULL DEFAULT '{}',
    ADD COLUMN spam_reasons  text[]           NOT NULL DEFAULT '{}',
    ADD COLUMN reach_score   double precision NOT NULL DEFAULT 0,
    ADD COLUMN input_flags   text[]           NOT NULL DEFAULT '{}';

-- The routes from the root to the one that raised the alert; whether it touches a sensitive
-- topic (no public reply before review) and which.
ALTER TABLE alerts
    ADD COLUMN route_path       text[]  NOT NULL DEFAULT '{}',
    ADD COLUMN review_required  boolean NOT NULL DEFAULT false,
    ADD COLUMN review_topics    text[]  NOT NULL DEFAULT '{}';
