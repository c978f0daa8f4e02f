-- fleetaudit history: the X.509 certificates the processes name, and the verdicts of cluster rules (schema 5).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- A scan reads the certificate files the processes name (the API server's --kubelet-certificate-authority,
-- --client-ca-file, --tls-cert-file, etcd's, the kubelet's serving certificate, the kubeadm PKI): they are file
-- observations like any other, with the roles their certificates play on the host (`roles`). After every host of
-- a cluster is recorded, the cluster rules judge what the store holds: each certificate file's contents are parsed
-- once (x509_contents) into the certificates they hold (x509_certificates, one row per certificate however many
-- files, hosts and scans hold it), and each cluster's verdicts are cluster_results rows.
--
-- Read the views: host_x509_certificates (one row per certificate per host per scan) and cluster_findings.
--
--   -- The certificates that expire first in the latest scan, and where they are.
--   SELECT not_after, host, path, subject FROM host_x509_certificates
--    WHERE scan_id = (SELECT max(id) FROM scans) ORDER BY not_after, host, path LIMIT 10;
--
--   -- The cluster verdicts of the latest scan.
--   SELECT cluster, rule_id, status, reason FROM cluster_findings
--    WHERE scan_id = (SELECT max(id) FROM scans) ORDER BY cluster, rule_id;

-- The roles a certificate file's certificates play on the host, space-separated in name order
-- ('apiserver-client-ca kubelet-client-ca'); NULL for every other file. Part of the observation's identity.
ALTER TABLE file_observations ADD COLUMN roles TEXT NULL CHECK (roles IS NULL OR length(roles) > 0);

-- Certificates, once each.
CREATE TABLE x509_certificates (
    id           INTEGER PRIMARY KEY,
    -- SHA-256 of the DER, lowercase hex (`openssl x509 -noout -fingerprint -sha256`, without colons, lowercase).
    fingerprint  TEXT    NOT NULL UNIQUE CHECK (length(fingerprint) = 64 AND fingerprint NOT GLOB '*[^0-9a-f]*'),
    -- RFC 4514 (`CN=kubernetes`).
    subject      TEXT    NOT NULL,
    issuer       TEXT    NOT NULL,
    -- Hex, colon-separated.
    serial       TEXT    NOT NULL,
    -- RFC 3339 UTC: they sort as text and compare with strftime('%Y-%m-%dT%H:%M:%SZ', 'now').
    not_before   TEXT    NOT NULL,
    not_after    TEXT    NOT NULL,
    -- 1 for basicConstraints CA:TRUE.
    is_ca        INTEGER NOT NULL CHECK (is_ca IN (0, 1)),
    -- Key usages and extended key usages, comma-separated: 'digitalSignature,keyEncipherment,serverAuth'.
    usages       TEXT    NOT NULL,
    -- Subject alternative names: JSON arrays of strings.
    dns_names    TEXT    NOT NULL CHECK (json_valid(dns_names)),
    ip_addresses TEXT    NOT NULL CHECK (json_valid(ip_addresses)),
    der          BLOB    NOT NULL
);

-- The certificate files' contents parsed: each once. `error` says why contents hold no certificate.
CREATE TABLE x509_contents (
    content_id INTEGER PRIMARY KEY REFERENCES file_contents (id),
    error      TEXT    NULL
);

-- The certificates of each parsed contents, in file order (position 0 is a chain's leaf).
CREATE TABLE content_certificates (
    content_id     INTEGER NOT NULL REFERENCES x509_contents (content_id),
    position       INTEGER NOT NULL CHECK (position >= 0),
    certificate_id INTEGER NOT NULL REFERENCES x509_certificates (id),
    PRIMARY KEY (content_id, position)
) WITHOUT ROWID;

CREATE INDEX content_certificates_by_certificate ON content_certificates (certificate_id);

-- Cluster rules in force with each rules version ([[cluster_rule]] of the packs), as `rules` holds host rules.
CREATE TABLE cluster_rules (
    rules_version TEXT NOT NULL,
    rule_id       TEXT NOT NULL,
    -- The CIS number of the host rule it completes ('1.2.5'), or ''.
    cis           TEXT NOT NULL,
    title         TEXT NOT NULL,
    severity      TEXT NOT NULL,
    rationale     TEXT NOT NULL,
    remediation   TEXT NOT NULL,
    PRIMARY KEY (rules_version, rule_id)
) WITHOUT ROWID;

-- A cluster rule's verdict on one cluster (the inventory's `cluster`) in one scan.
CREATE TABLE cluster_results (
    scan_id     INTEGER NOT NULL REFERENCES scans (id),
    cluster     TEXT    NOT NULL,
    rule_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pass', 'fail', 'error', 'not_applicable')),
    -- One sentence saying what decided the verdict: the nodes that would break, the certificate that expires.
    reason      TEXT    NOT NULL,
    -- A JSON document: what each host contributed (certificates, whether they chain, their expiry).
    evidence_id INTEGER NULL REFERENCES evidence (id),
    PRIMARY KEY (scan_id, cluster, rule_id)
) WITHOUT ROWID;

CREATE INDEX cluster_results_by_evidence ON cluster_results (evidence_id) WHERE evidence_id IS NOT NULL;

CREATE VIEW host_x509_certificates (scan_id, host, cluster, path, roles, position, subject, issuer, serial,
                                    not_before, not_after, is_ca, usages, dns_names, ip_addresses, fingerprint) AS
SELECT sh.scan_id, h.name, h.cluster, o.path, o.roles, cc.position, c.subject, c.issuer, c.serial,
       c.not_before, c.not_after, c.is_ca, c.usages, c.dns_names, c.ip_addresses, c.fingerprint
  FROM scan_hosts sh
  JOIN hosts h ON h.id = sh.host_id
  JOIN file_set_members m ON m.set_id = sh.file_set_id
  JOIN file_observations o ON o.id = m.observation_id AND o.roles IS NOT NULL
  JOIN content_certificates cc ON cc.content_id = o.content_id
  JOIN x509_certificates c ON c.id = cc.certificate_id;

CREATE VIEW cluster_findings (scan_id, cluster, rule_id, cis, title, severity, status, reason, evidence) AS
SELECT cr.scan_id, cr.cluster, cr.rule_id, m.cis, m.title, m.severity, cr.status, cr.reason, e.body
  FROM cluster_results cr
  JOIN scans s ON s.id = cr.scan_id
  LEFT JOIN cluster_rules m ON m.rules_version = s.rules_version AND m.rule_id = cr.rule_id
  LEFT JOIN evidence e ON e.id = cr.evidence_id;
