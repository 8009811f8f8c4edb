-- Earshot sink schema, version 1. Applied once by the sink at start (inside a transaction,
-- under an advisory lock), recorded in earshot_schema_migrations. Every table is keyed by the
-- pipeline's stable ids, so replayed records insert nothing (ON CONFLICT DO NOTHING).

-- One row per mention, however many watchlists it matched.
CREATE TABLE mentions (
    id                  uuid PRIMARY KEY,
    native_id           text NOT NULL,
    source_kind         text NOT NULL,
    source_instance     text NOT NULL,
    url                 text,
    author_handle       text NOT NULL,
    author_name         text,
    author_followers    bigint,
    author_verified     boolean NOT NULL,
    text                text NOT NULL,
    lang_hint           text,
    created_at          timestamptz NOT NULL,
    collected_at        timestamptz NOT NULL,
    likes               bigint NOT NULL,
    reposts             bigint NOT NULL,
    replies             bigint NOT NULL,
    parent_id           text,
    conversation_id     text,
    has_media           boolean NOT NULL,
    sentiment_neg       double precision NOT NULL,
    sentiment_neu       double precision NOT NULL,
    sentiment_pos       double precision NOT NULL,
    sentiment_compound  double precision NOT NULL,
    language            text,
    language_confidence double precision NOT NULL,
    spam_score          double precision NOT NULL,
    intent              text NOT NULL,
    reach               bigint NOT NULL,
    urgency             double precision NOT NULL,
    enriched_at         timestamptz NOT NULL,
    written_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mentions_collected_at ON mentions (collected_at);

-- One row per (mention, watchlist) it matched.
CREATE TABLE mention_matches (
    mention_id uuid NOT NULL,
    watchlist  text NOT NULL,
    relevance  double precision NOT NULL,
    clause     text NOT NULL,
    PRIMARY KEY (mention_id, watchlist)
);
CREATE INDEX mention_matches_watchlist ON mention_matches (watchlist, mention_id);

CREATE TABLE alerts (
    id                   uuid PRIMARY KEY,
    created_at           timestamptz NOT NULL,
    route                text NOT NULL,
    watchlist            text NOT NULL,
    mention_id           uuid NOT NULL,
    mention_url          text,
    mention_text         text NOT NULL,
    author_handle        text NOT NULL,
    score_name           text NOT NULL,
    score                double precision NOT NULL,
    threshold            double precision NOT NULL,
    mention_collected_at timestamptz NOT NULL
);
CREATE INDEX alerts_created_at ON alerts (created_at);
CREATE INDEX alerts_mention_id ON alerts (mention_id);

CREATE TABLE deliveries (
    id           uuid PRIMARY KEY,
    alert_id     uuid NOT NULL,
    channel      text NOT NULL,
    receiver     text NOT NULL,
    status       text NOT NULL,
    attempts     integer NOT NULL,
    last_error   text,
    delivered_at timestamptz
);
CREATE INDEX deliveries_alert_id ON deliveries (alert_id);
