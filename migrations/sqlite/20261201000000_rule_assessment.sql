-- fleetaudit history, schema 3: each rule's CIS assessment and the numbers it had in earlier benchmark
-- versions, and the assessment in the views people query.
-- NULL for rules stored by a fleetaudit before this migration.

-- 'automated' or 'manual': CIS marks about half its checks Manual (kube-bench reports them as WARN).
ALTER TABLE rules ADD COLUMN assessment TEXT NULL CHECK (assessment IN ('automated', 'manual'));
-- The rule's CIS numbers in earlier benchmark versions, a JSON array of {"cis": "1.2.6", "benchmarks":
-- ["cis-1.5", "cis-1.6", "cis-1.23"]} (kube-bench's cfg names), e.g.
--   SELECT rule_id FROM rules, json_each(rules.cis_previous) p WHERE json_extract(p.value, '$.cis') = '1.2.6';
ALTER TABLE rules ADD COLUMN cis_previous TEXT NULL CHECK (cis_previous IS NULL OR json_valid(cis_previous));

-- The views gain `assessment` as their last column; everything else is as in schema 1.
DROP VIEW findings;
CREATE VIEW findings (scan_id, host, cluster, rule_id, cis, title, component, severity, status, reason, evidence,
                      assessment) AS
SELECT sh.scan_id, h.name, h.cluster, r.rule_id, m.cis, m.title, m.component, m.severity, r.status, r.reason, e.body,
       m.assessment
  FROM scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN hosts h ON h.id = sh.host_id
  JOIN results r ON r.set_id = sh.result_set_id
  LEFT JOIN rules m ON m.rules_version = s.rules_version AND m.rule_id = r.rule_id
  LEFT JOIN evidence e ON e.id = r.evidence_id
 WHERE sh.outcome = 'audited'
UNION ALL
SELECT sh.scan_id, h.name, h.cluster, m.rule_id, m.cis, m.title, m.component, m.severity,
       'error', sh.error_kind || ': ' || sh.error_message, NULL, m.assessment
  FROM scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN hosts h ON h.id = sh.host_id
  JOIN rules m ON m.rules_version = s.rules_version
 WHERE sh.outcome = 'error';

DROP VIEW latest_findings;
CREATE VIEW latest_findings (scan_id, host, cluster, rule_id, cis, title, component, severity, status, reason,
                             evidence, assessment) AS
SELECT sh.scan_id, h.name, h.cluster, r.rule_id, m.cis, m.title, m.component, m.severity, r.status, r.reason, e.body,
       m.assessment
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
       'error', sh.error_kind || ': ' || sh.error_message, NULL, m.assessment
  FROM hosts h
 CROSS JOIN scan_hosts sh
  JOIN scans s ON s.id = sh.scan_id
  JOIN rules m ON m.rules_version = s.rules_version
 WHERE sh.host_id = h.id
   AND sh.scan_id = (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
                      WHERE l.host_id = h.id AND ls.id = l.scan_id AND ls.status <> 'running'
                      ORDER BY l.scan_id DESC LIMIT 1)
   AND sh.outcome = 'error';

DROP VIEW rule_compliance;
CREATE VIEW rule_compliance (scan_id, rule_id, cis, title, severity, pass, fail, error, not_applicable, compliance_pct,
                             assessment) AS
SELECT s.id, m.rule_id, m.cis, m.title, m.severity,
       coalesce(c.pass, 0), coalesce(c.fail, 0), coalesce(c.error, 0), coalesce(c.not_applicable, 0),
       100.0 * c.pass / nullif(c.pass + c.fail + c.error, 0), m.assessment
  FROM scans s
  JOIN rules m ON m.rules_version = s.rules_version
  LEFT JOIN scan_rule_counts c ON c.scan_id = s.id AND c.rule_id = m.rule_id;
