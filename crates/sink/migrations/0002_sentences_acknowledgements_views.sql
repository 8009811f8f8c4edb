-- Earshot sink schema, version 2: the sentence-level sentiment of a mention, when an alert was
-- acknowledged and resolved, and the analytics views. Columns are added with defaults (or
-- nullable), so rows written by version 1 stay valid and a version-1 sink can still insert.

-- EnrichedMention.sentences: the text scored sentence by sentence (0 sentences: all zero, '').
ALTER TABLE mentions
    ADD COLUMN sentences_count          integer          NOT NULL DEFAULT 0,
    ADD COLUMN sentences_mean_compound  double precision NOT NULL DEFAULT 0,
    ADD COLUMN sentences_min_compound   double precision NOT NULL DEFAULT 0,
    ADD COLUMN sentences_max_compound   double precision NOT NULL DEFAULT 0,
    ADD COLUMN sentences_most_negative  text             NOT NULL DEFAULT '';

-- Filled by the router once it tracks acknowledgements (NULL: not yet acknowledged/resolved).
-- The sink never writes them, and a replayed alert (ON CONFLICT DO NOTHING) never clears them.
ALTER TABLE alerts
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN resolved_at     timestamptz;

-- Mentions per watchlist, UTC hour, sentiment bucket and intent. A mention counts once per
-- watchlist it matched. Buckets on the VADER compound score, as VADER's authors recommend:
-- negative <= -0.05 < neutral < 0.05 <= positive.
CREATE VIEW mentions_hourly AS
SELECT mm.watchlist,
       date_trunc('hour', m.collected_at, 'UTC') AS hour,
       CASE WHEN m.sentiment_compound <= -0.05 THEN 'negative'
            WHEN m.sentiment_compound >= 0.05 THEN 'positive'
            ELSE 'neutral' END AS sentiment,
       m.intent,
       count(*) AS mentions
FROM mentions m
JOIN mention_matches mm ON mm.mention_id = m.id
GROUP BY 1, 2, 3, 4;

-- Share of voice: each watchlist's mentions as a fraction of all matched mentions, per UTC day.
-- A mention matching two watchlists counts for both (the shares of a day then sum to 1 over
-- matches, not over distinct mentions).
CREATE VIEW share_of_voice AS
SELECT day, watchlist, mentions,
       mentions::double precision / sum(mentions) OVER (PARTITION BY day) AS share
FROM (
    SELECT date_trunc('day', m.collected_at, 'UTC') AS day, mm.watchlist, count(*) AS mentions
    FROM mentions m
    JOIN mention_matches mm ON mm.mention_id = m.id
    GROUP BY 1, 2
) per_watchlist;

-- Spam share per watchlist and UTC day: mentions whose spam_score is at least 0.5.
CREATE VIEW spam_share AS
SELECT date_trunc('day', m.collected_at, 'UTC') AS day,
       mm.watchlist,
       count(*) AS mentions,
       count(*) FILTER (WHERE m.spam_score >= 0.5) AS spam,
       (count(*) FILTER (WHERE m.spam_score >= 0.5))::double precision / count(*) AS share
FROM mentions m
JOIN mention_matches mm ON mm.mention_id = m.id
GROUP BY 1, 2;

-- The team an alert went to. Alerts carry their route, deliveries their receiver; until the
-- routing tree names teams, a receiver is a team. An alert delivered to two receivers belongs
-- to both; one with no delivery row belongs to '(none)'.
CREATE VIEW alert_teams AS
SELECT DISTINCT a.id AS alert_id, coalesce(d.receiver, '(none)') AS team
FROM alerts a
LEFT JOIN deliveries d ON d.alert_id = a.id;

-- Alerts per team and route, with how many reached the team.
CREATE VIEW alerts_by_team AS
SELECT t.team, a.route,
       count(*) AS alerts,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM deliveries d
           WHERE d.alert_id = a.id AND d.receiver = t.team AND d.status = 'delivered'
       )) AS delivered
FROM alerts a
JOIN alert_teams t ON t.alert_id = a.id
GROUP BY 1, 2;

-- Response time (alert created -> acknowledged) per team, in seconds, over acknowledged
-- alerts; percentiles interpolate (percentile_cont).
CREATE VIEW response_times AS
SELECT t.team,
       count(*) AS alerts,
       count(a.acknowledged_at) AS acknowledged,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.created_at)::double precision) AS p50_secs,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.created_at)::double precision) AS p90_secs,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM a.acknowledged_at - a.created_at)::double precision) AS p99_secs
FROM alerts a
JOIN alert_teams t ON t.alert_id = a.id
GROUP BY 1;
