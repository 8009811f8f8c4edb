-- Earshot sink schema, version 6: the analytics views leave out mentions deleted at their
-- source. The rows stay in `mentions`, flagged by `deleted_at` (version 4), so what was
-- collected and when it was retracted remain queryable; the views count what is still
-- published. Alerts are kept as they were raised and delivered (the alert views are
-- unchanged): a retraction does not undo a notification.

CREATE OR REPLACE VIEW mentions_hourly AS
SELECT mm.watchlist,
       date_trunc('hour', m.collected_at, 'UTC') AS hour,
       CASE WHEN m.sentiment_compound <= -0.05 THEN 'negative'
            WHEN m.sentiment_compound >= 0.05 THEN 'positive'
            ELSE 'neutral' END AS sentiment,
       m.intent,
       count(*) AS mentions
FROM mentions m
JOIN mention_matches mm ON mm.mention_id = m.id
WHERE m.deleted_at IS NULL
GROUP BY 1, 2, 3, 4;

CREATE OR REPLACE VIEW share_of_voice AS
SELECT day, watchlist, mentions,
       mentions::double precision / sum(mentions) OVER (PARTITION BY day) AS share
FROM (
    SELECT date_trunc('day', m.collected_at, 'UTC') AS day, mm.watchlist, count(*) AS mentions
    FROM mentions m
    JOIN mention_matches mm ON mm.mention_id = m.id
    WHERE m.deleted_at IS NULL
    GROUP BY 1, 2
) per_watchlist;

CREATE OR REPLACE VIEW spam_share AS
SELECT date_trunc('day', m.collected_at, 'UTC') AS day,
       mm.watchlist,
       count(*) AS mentions,
       count(*) FILTER (WHERE m.spam_score >= 0.5) AS spam,
       (count(*) FILTER (WHERE m.spam_score >= 0.5))::double precision / count(*) AS share
FROM mentions m
JOIN mention_matches mm ON mm.mention_id = m.id
WHERE m.deleted_at IS NULL
GROUP BY 1, 2;
