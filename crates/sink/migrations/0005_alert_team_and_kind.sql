-- Earshot sink schema, version 5: the team an alert's route sends it to (router.teams) and
-- what raised it (a mention, or a watchlist's spike). Rows written by earlier versions keep
-- team NULL and kind 'mention'.
ALTER TABLE alerts ADD COLUMN team text;
ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'mention';

-- An alert's team is the team its route names; an alert routed to plain receivers counts
-- for each receiver it was delivered to, as before.
CREATE OR REPLACE VIEW alert_teams AS
SELECT DISTINCT a.id AS alert_id, coalesce(a.team, d.receiver, '(none)') AS team
FROM alerts a
LEFT JOIN deliveries d ON d.alert_id = a.id AND a.team IS NULL;

-- Alerts per team and route, with how many reached the team: for a team's alert, any
-- delivered notification (to whoever was on call); otherwise a delivery to that receiver.
CREATE OR REPLACE VIEW alerts_by_team AS
SELECT t.team, a.route,
       count(*) AS alerts,
       count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM deliveries d
           WHERE d.alert_id = a.id AND d.status = 'delivered'
             AND (a.team IS NOT NULL OR d.receiver = t.team)
       )) AS delivered
FROM alerts a
JOIN alert_teams t ON t.alert_id = a.id
GROUP BY 1, 2;
