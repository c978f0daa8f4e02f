-- fleetaudit history, schema 2: indexes for `Store::prune` (retention).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- Until pruning, rows were never deleted, so foreign keys never had to search a child table for a parent
-- (see scan_hosts_by_host in the initial migration). Pruning deletes result sets, evidence and host keys that no
-- kept scan references, and SQLite then looks, for every deleted row, for a child row still pointing at it.
-- Without these indexes each of those look-ups reads the whole child table: at 10,000 hosts x 50 scans,
-- pruning the oldest scan did not finish in two minutes (51 s for its 1,000 result sets alone, each one a scan of
-- 490,000 scan_hosts rows); with them it takes 1.5 s, or 3.5 s with one evidence document per verdict (48,000 of
-- them deleted; `prune_stays_fast_at_ten_thousand_hosts_and_fifty_scans`). The same indexes serve the
-- `NOT IN (SELECT ...)` subqueries that find what no kept scan references.
--
-- Partial (NOT NULL only): a host that could not be audited has no result set, a failed connection no host key,
-- a not_applicable verdict no evidence, and prune never looks those up. Cost: about 12 bytes per host per scan
-- for each index on scan_hosts (an unchanged rescan of 2,000 hosts added 86 bytes per host before them, 110
-- with them), and about 20 bytes per verdict with evidence in a new result set. The views' query plans are
-- unchanged (compared with EXPLAIN QUERY PLAN at 10,000 hosts x 50 scans).

CREATE INDEX scan_hosts_by_result_set ON scan_hosts (result_set_id) WHERE result_set_id IS NOT NULL;

CREATE INDEX scan_hosts_by_host_key ON scan_hosts (host_key_id) WHERE host_key_id IS NOT NULL;

CREATE INDEX results_by_evidence ON results (evidence_id) WHERE evidence_id IS NOT NULL;
