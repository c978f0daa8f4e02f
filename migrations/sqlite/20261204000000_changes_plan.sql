-- fleetaudit history: the `changes` view, same rows, read in an order that stays fast (schema 6).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- The view of the first migration lets SQLite start from `results` and look up each result's hosts, computing
-- every host's previous scan hundreds of times: `SELECT ... FROM changes WHERE scan_id = ?` took 1.1 s on a
-- database of one 10,000-host scan (11 result sets shared by all the hosts, as the simulator's are; one per host
-- on a real fleet is as bad: 910,000 results read) and was a third of rendering that scan's report. The joins
-- below are CROSS JOINs, which SQLite never reorders: the scan's hosts first (by the primary key), each host's
-- previous row, then only those hosts' results. The columns, rows and meaning are unchanged. Measured on that
-- database: 1.1 s before, 0.01 s after.
DROP VIEW changes;

-- Drift: for each scan (a running one too, as it progresses) and each host in it, the findings whose status
-- differs from the same host and rule in previous_scan_id, the host's latest ended scan before this one. Hosts
-- new in this scan, and rules that exist in only one of the two scans' rule sets, have no previous status and
-- are not listed. Filter on scan_id to stay fast.
CREATE VIEW changes (scan_id, previous_scan_id, host, rule_id, previous_status, status) AS
WITH pairs (scan_id, host_id, outcome, result_set_id, rules_version, previous_scan_id) AS NOT MATERIALIZED (
    SELECT c.scan_id, c.host_id, c.outcome, c.result_set_id, cs.rules_version,
           (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
             WHERE l.host_id = c.host_id AND l.scan_id < c.scan_id AND ls.id = l.scan_id AND ls.status <> 'running'
             ORDER BY l.scan_id DESC LIMIT 1)
      FROM scan_hosts c
      JOIN scans cs ON cs.id = c.scan_id
)
-- Audited both times, with different verdicts.
SELECT c.scan_id, p.scan_id, h.name, rc.rule_id, rp.status, rc.status
  FROM pairs c
 CROSS JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
 CROSS JOIN results rc ON rc.set_id = c.result_set_id
 CROSS JOIN results rp ON rp.set_id = p.result_set_id AND rp.rule_id = rc.rule_id
  JOIN hosts h ON h.id = c.host_id
 WHERE c.outcome = 'audited' AND p.outcome = 'audited' AND c.result_set_id <> p.result_set_id
   AND rc.status <> rp.status
UNION ALL
-- Could not be audited before (every rule was error), audited now.
SELECT c.scan_id, p.scan_id, h.name, rc.rule_id, 'error', rc.status
  FROM pairs c
 CROSS JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
 CROSS JOIN scans ps ON ps.id = p.scan_id
 CROSS JOIN results rc ON rc.set_id = c.result_set_id
  JOIN rules m ON m.rules_version = ps.rules_version AND m.rule_id = rc.rule_id
  JOIN hosts h ON h.id = c.host_id
 WHERE c.outcome = 'audited' AND p.outcome = 'error' AND rc.status <> 'error'
UNION ALL
-- Audited before, could not be audited now.
SELECT c.scan_id, p.scan_id, h.name, rp.rule_id, rp.status, 'error'
  FROM pairs c
 CROSS JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
 CROSS JOIN results rp ON rp.set_id = p.result_set_id
  JOIN rules m ON m.rules_version = c.rules_version AND m.rule_id = rp.rule_id
  JOIN hosts h ON h.id = c.host_id
 WHERE c.outcome = 'error' AND p.outcome = 'audited' AND rp.status <> 'error';
