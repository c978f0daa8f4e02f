-- fleetaudit history, schema 1.
--
-- This database is an interface: people query it with sqlite3, so the table, column and view names below are
-- stable. Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
-- Example queries for every view are in the doc comment of src/store/mod.rs (and the README).
--
-- Times are RFC 3339 UTC text with milliseconds (2026-11-29T02:17:00.123Z), so they sort and compare as text.
--
-- Filter findings and changes on scan_id or host. An sqlite3 shell older than the SQLite fleetaudit embeds
-- (3.40, as in Debian 12, is) cannot push `scan_id = (SELECT ...)` into these UNION views and reads the whole
-- history; give it the scan id as a literal.
--
-- Space: a daily scan of an unchanged fleet must cost little. A host's verdicts are stored once as a result set
-- (deduplicated by hash) and a scan only points at it, so a rescan that changes nothing adds one scan_hosts row
-- (~100 bytes) per host. Evidence documents are deduplicated the same way.

-- One row per run of `fleetaudit scan` (or of the daemon's schedule).
CREATE TABLE scans (
    id                 INTEGER PRIMARY KEY,
    started_at         TEXT    NOT NULL,
    -- When the scan ended; NULL while it runs, and for a scan whose process died (status 'interrupted'
    -- set by the next scan): nobody saw it end.
    finished_at        TEXT    NULL,
    -- 'running' until the scan ends; 'complete' when every host was recorded; 'interrupted' when it was
    -- stopped (SIGTERM) or its process died. Hosts recorded by an interrupted scan are kept and valid.
    status             TEXT    NOT NULL CHECK (status IN ('running', 'complete', 'interrupted')),
    -- The inventory the scan read, as named on the command line.
    inventory          TEXT    NOT NULL,
    -- Version of the rule set in force; joins rules.rules_version.
    rules_version      TEXT    NOT NULL,
    -- Version of the fleetaudit binary that ran the scan.
    fleetaudit_version TEXT    NOT NULL,
    -- Hosts the scan meant to audit; fewer scan_hosts rows than this means the scan did not reach them all.
    hosts_total        INTEGER NOT NULL,
    -- Process id of the scanner, to find (or kill) a scan that is still running.
    pid                INTEGER NOT NULL
);

-- The metadata of every rule of every rule-set version a scan used, so old scans keep their titles even after
-- the pack changes. Written once per version: a version's rules are never updated.
CREATE TABLE rules (
    rules_version TEXT NOT NULL,
    -- Stable rule id, e.g. 'apiserver-kubelet-certificate-authority'.
    rule_id       TEXT NOT NULL,
    -- CIS benchmark control number in the pack's benchmark version, e.g. '1.2.5'.
    cis           TEXT NOT NULL,
    title         TEXT NOT NULL,
    -- The component the rule checks: 'apiserver', 'controller-manager', 'scheduler', 'etcd', 'kubelet'.
    component     TEXT NOT NULL,
    -- 'low', 'medium', 'high' or 'critical'.
    severity      TEXT NOT NULL,
    PRIMARY KEY (rules_version, rule_id)
) WITHOUT ROWID;

-- Every host ever scanned, by inventory name; updated to the inventory's current values at each scan.
CREATE TABLE hosts (
    id      INTEGER PRIMARY KEY,
    -- The host's name in the inventory (unique there too).
    name    TEXT    NOT NULL UNIQUE,
    -- The inventory cluster the host belongs to; NULL when none.
    cluster TEXT    NULL,
    -- What the scanner connected to: IPv4, IPv6 or DNS name.
    address TEXT    NOT NULL,
    -- SSH port.
    port    INTEGER NOT NULL,
    -- The host's inventory roles, comma-separated: 'control-plane', 'etcd', 'worker'.
    roles   TEXT    NOT NULL
);

-- SSH host key fingerprints seen, stored once each.
CREATE TABLE host_keys (
    id          INTEGER PRIMARY KEY,
    -- OpenSSH style, e.g. 'SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU'.
    fingerprint TEXT NOT NULL UNIQUE
);

-- Evidence documents: a JSON array of the component's processes [{pid, user, cmdline}] with secrets redacted;
-- the flag values that decided are in results.reason. Stored once each.
CREATE TABLE evidence (
    id     INTEGER PRIMARY KEY,
    -- SHA-256 of body: the deduplication key.
    sha256 BLOB NOT NULL UNIQUE,
    -- A JSON document; query it with json_extract(body, '$[0].cmdline') and friends.
    body   TEXT NOT NULL CHECK (json_valid(body))
);

-- One host's complete set of verdicts, shared by every scan (and every host) that produced exactly the same
-- verdicts. Immutable: a set's results are written with it and never change.
CREATE TABLE result_sets (
    id     INTEGER PRIMARY KEY,
    -- SHA-256 over the sorted (rule_id, status, reason, evidence sha256) list: the deduplication key.
    sha256 BLOB NOT NULL UNIQUE
);

-- The verdicts of a result set, one per rule.
CREATE TABLE results (
    set_id      INTEGER NOT NULL REFERENCES result_sets (id),
    rule_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'not_applicable')),
    -- One sentence saying what decided the verdict.
    reason      TEXT    NOT NULL,
    -- NULL when the verdict has no evidence (e.g. the component does not run on the host).
    evidence_id INTEGER NULL REFERENCES evidence (id),
    PRIMARY KEY (set_id, rule_id)
) WITHOUT ROWID;

-- What happened to each host in each scan: audited (its verdicts are result_set_id) or not (why not).
CREATE TABLE scan_hosts (
    scan_id       INTEGER NOT NULL REFERENCES scans (id),
    host_id       INTEGER NOT NULL REFERENCES hosts (id),
    -- 'audited': the host's process table was judged; 'error': it could not be (every rule is then 'error').
    outcome       TEXT    NOT NULL CHECK (outcome IN ('audited', 'error')),
    -- For outcome 'error': a short machine-readable kind ('unreachable', 'auth', 'host_key_changed', ...).
    error_kind    TEXT    NULL,
    -- For outcome 'error': what went wrong, for people.
    error_message TEXT    NULL,
    -- When the scanner started on this host.
    started_at    TEXT    NOT NULL,
    -- How long the host took, connection included.
    duration_ms   INTEGER NOT NULL,
    -- The host key the host presented; NULL when the connection failed before key exchange.
    host_key_id   INTEGER NULL REFERENCES host_keys (id),
    -- Which ps printed the table ('procps', 'busybox'); NULL unless audited.
    ps_format     TEXT    NULL,
    -- How many processes the table listed; NULL unless audited.
    processes     INTEGER NULL,
    -- The host's verdicts; NULL unless audited.
    result_set_id INTEGER NULL REFERENCES result_sets (id),
    PRIMARY KEY (scan_id, host_id),
    CHECK ((outcome = 'audited' AND result_set_id IS NOT NULL AND error_kind IS NULL)
        OR (outcome = 'error' AND result_set_id IS NULL AND error_kind IS NOT NULL AND error_message IS NOT NULL))
) WITHOUT ROWID;

-- Verdict counts per scan and rule, kept by fleetaudit in the same transaction as the hosts they count (a host
-- that could not be audited counts as error for every rule of the scan's rule set). Query rule_compliance
-- instead. It exists because the per-scan aggregate it replaces cost a second per 10,000 hosts x 56 rules, and
-- SQLite cannot narrow an aggregate view to one scan when the scan id comes from a subquery
-- (`WHERE scan_id = (SELECT max(id) FROM scans)`), so such a query would aggregate the whole history.
CREATE TABLE scan_rule_counts (
    scan_id        INTEGER NOT NULL REFERENCES scans (id),
    rule_id        TEXT    NOT NULL,
    pass           INTEGER NOT NULL,
    fail           INTEGER NOT NULL,
    error          INTEGER NOT NULL,
    not_applicable INTEGER NOT NULL,
    PRIMARY KEY (scan_id, rule_id)
) WITHOUT ROWID;

-- "This host's scans, newest first": the latest/previous scan of a host (latest_findings, host_status, changes)
-- and findings by host. Costs ~15 bytes per host per scan. No index on results.evidence_id or
-- scan_hosts.result_set_id: rows are never deleted, so foreign keys never need to search children.
CREATE INDEX scan_hosts_by_host ON scan_hosts (host_id, scan_id);

-- Every verdict of every scan: for an audited host, the rows of its result set; for a host that could not be
-- audited, one row per rule of the scan's rule set with status 'error' and reason '<error_kind>: <message>'.
-- host and cluster are the host's current inventory values. Filter on scan_id or host to stay fast.
CREATE VIEW findings (scan_id, host, cluster, rule_id, cis, title, component, severity, status, reason, evidence) AS
SELECT sh.scan_id, h.name, h.cluster, r.rule_id, m.cis, m.title, m.component, m.severity, r.status, r.reason, e.body
  FROM scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN hosts h ON h.id = sh.host_id
  JOIN results r ON r.set_id = sh.result_set_id
  LEFT JOIN rules m ON m.rules_version = s.rules_version AND m.rule_id = r.rule_id
  LEFT JOIN evidence e ON e.id = r.evidence_id
 WHERE sh.outcome = 'audited'
UNION ALL
SELECT sh.scan_id, h.name, h.cluster, m.rule_id, m.cis, m.title, m.component, m.severity,
       'error', sh.error_kind || ': ' || sh.error_message, NULL
  FROM scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN hosts h ON h.id = sh.host_id
  JOIN rules m ON m.rules_version = s.rules_version
 WHERE sh.outcome = 'error';

-- The current state of the fleet: findings of each host's most recent scan that has ended (complete or
-- interrupted; a running scan is not yet the truth). A host is listed as long as any ended scan included it.
-- `hosts h CROSS JOIN scan_hosts sh` fixes the join order: host first, then its one latest row by primary key,
-- instead of testing every scan_hosts row of the history against the subquery.
CREATE VIEW latest_findings (scan_id, host, cluster, rule_id, cis, title, component, severity, status, reason, evidence) AS
SELECT sh.scan_id, h.name, h.cluster, r.rule_id, m.cis, m.title, m.component, m.severity, r.status, r.reason, e.body
  FROM hosts h
 CROSS JOIN scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN results r ON r.set_id = sh.result_set_id
  LEFT JOIN rules m ON m.rules_version = s.rules_version AND m.rule_id = r.rule_id
  LEFT JOIN evidence e ON e.id = r.evidence_id
 WHERE sh.host_id = h.id
   AND sh.scan_id = (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
                      WHERE l.host_id = h.id AND ls.id = l.scan_id AND ls.status <> 'running'
                      ORDER BY l.scan_id DESC LIMIT 1)
   AND sh.outcome = 'audited'
UNION ALL
SELECT sh.scan_id, h.name, h.cluster, m.rule_id, m.cis, m.title, m.component, m.severity,
       'error', sh.error_kind || ': ' || sh.error_message, NULL
  FROM hosts h
 CROSS JOIN scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN rules m ON m.rules_version = s.rules_version
 WHERE sh.host_id = h.id
   AND sh.scan_id = (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
                      WHERE l.host_id = h.id AND ls.id = l.scan_id AND ls.status <> 'running'
                      ORDER BY l.scan_id DESC LIMIT 1)
   AND sh.outcome = 'error';

-- Per scan and rule of the scan's rule set: how many hosts passed, failed, could not be judged, or do not run
-- the component. compliance_pct = 100 * pass / (pass + fail + error): not_applicable hosts do not count, and a
-- host that could not be audited counts as error, against compliance. NULL when no host was judged for the rule
-- (a scan that recorded no host yet lists its rules with zero counts).
CREATE VIEW rule_compliance (scan_id, rule_id, cis, title, severity, pass, fail, error, not_applicable, compliance_pct) AS
SELECT s.id, m.rule_id, m.cis, m.title, m.severity,
       coalesce(c.pass, 0), coalesce(c.fail, 0), coalesce(c.error, 0), coalesce(c.not_applicable, 0),
       100.0 * c.pass / nullif(c.pass + c.fail + c.error, 0)
  FROM scans s
  JOIN rules m ON m.rules_version = s.rules_version
  LEFT JOIN scan_rule_counts c ON c.scan_id = s.id AND c.rule_id = m.rule_id;

-- Each host's latest outcome (same "latest" as latest_findings) with its verdict counts. A host that could not
-- be audited counts every rule of its scan's rule set as error, as in findings.
CREATE VIEW host_status (host, cluster, address, scan_id, scanned_at, outcome, error_kind, error_message,
                         pass, fail, error, not_applicable, host_key_fingerprint) AS
SELECT h.name, h.cluster, h.address, sh.scan_id, sh.started_at, sh.outcome, sh.error_kind, sh.error_message,
       (SELECT count(*) FROM results r WHERE r.set_id = sh.result_set_id AND r.status = 'pass'),
       (SELECT count(*) FROM results r WHERE r.set_id = sh.result_set_id AND r.status = 'fail'),
       CASE sh.outcome
           WHEN 'audited' THEN (SELECT count(*) FROM results r WHERE r.set_id = sh.result_set_id AND r.status = 'error')
           ELSE (SELECT count(*) FROM rules m WHERE m.rules_version = s.rules_version)
       END,
       (SELECT count(*) FROM results r WHERE r.set_id = sh.result_set_id AND r.status = 'not_applicable'),
       k.fingerprint
  FROM hosts h
 CROSS JOIN scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  LEFT JOIN host_keys k ON k.id = sh.host_key_id
 WHERE sh.host_id = h.id
   AND sh.scan_id = (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
                      WHERE l.host_id = h.id AND ls.id = l.scan_id AND ls.status <> 'running'
                      ORDER BY l.scan_id DESC LIMIT 1);

-- Drift: for each scan (a running one too, as it progresses) and each host in it, the findings whose status
-- differs from the same host and rule in previous_scan_id, the host's latest ended scan before this one. Hosts
-- new in this scan, and rules that exist in only one of the two scans' rule sets, have no previous status and
-- are not listed. Filter on scan_id to stay fast; two audited scans with the same result set cost one compare.
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
  JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
  JOIN hosts h ON h.id = c.host_id
  JOIN results rc ON rc.set_id = c.result_set_id
  JOIN results rp ON rp.set_id = p.result_set_id AND rp.rule_id = rc.rule_id
 WHERE c.outcome = 'audited' AND p.outcome = 'audited' AND c.result_set_id <> p.result_set_id
   AND rc.status <> rp.status
UNION ALL
-- Could not be audited before (every rule was error), audited now.
SELECT c.scan_id, p.scan_id, h.name, rc.rule_id, 'error', rc.status
  FROM pairs c
  JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
  JOIN scans ps ON ps.id = p.scan_id
  JOIN hosts h ON h.id = c.host_id
  JOIN results rc ON rc.set_id = c.result_set_id
  JOIN rules m ON m.rules_version = ps.rules_version AND m.rule_id = rc.rule_id
 WHERE c.outcome = 'audited' AND p.outcome = 'error' AND rc.status <> 'error'
UNION ALL
-- Audited before, could not be audited now.
SELECT c.scan_id, p.scan_id, h.name, rp.rule_id, rp.status, 'error'
  FROM pairs c
  JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
  JOIN hosts h ON h.id = c.host_id
  JOIN results rp ON rp.set_id = p.result_set_id
  JOIN rules m ON m.rules_version = c.rules_version AND m.rule_id = rp.rule_id
 WHERE c.outcome = 'error' AND p.outcome = 'audited' AND rp.status <> 'error';
