-- fleetaudit history: host certificates (OpenSSH `@cert-authority`).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- A host trusted through a CA rather than a known_hosts line proves its key with a certificate; the scan keeps
-- which one, so "which CA vouched for this host, with which certificate" has an answer for every scan.
-- scan_hosts.host_key_id still names the host's key (the key inside the certificate). Stored once per
-- certificate, so a rescan of an unchanged fleet adds only the id (and ~12 bytes of index) per host.
--
--   -- Each host's identity in the latest scan.
--   SELECT h.name, k.fingerprint, c.description
--     FROM scan_hosts sh JOIN hosts h ON h.id = sh.host_id
--     LEFT JOIN host_keys k ON k.id = sh.host_key_id
--     LEFT JOIN host_certificates c ON c.id = sh.host_certificate_id
--    WHERE sh.scan_id = (SELECT max(id) FROM scans) ORDER BY h.name;

-- Host certificates seen, one row per certificate.
CREATE TABLE host_certificates (
    id             INTEGER PRIMARY KEY,
    -- SHA-256 of the certificate as the host sent it (hex): the deduplication key.
    sha256         TEXT    NOT NULL UNIQUE,
    -- The CA that signed it, OpenSSH style: 'SHA256:...'.
    ca_fingerprint TEXT    NOT NULL,
    -- The certificate's serial (ssh-keygen -z), as decimal text: it is unsigned 64-bit, SQLite's INTEGER signed.
    serial         TEXT    NOT NULL,
    -- The certificate's key id (ssh-keygen -I).
    key_id         TEXT    NOT NULL,
    -- The principals it is valid for, comma-separated (ssh-keygen -n).
    principals     TEXT    NOT NULL,
    -- Its validity window, RFC 3339 UTC, or 'always' / 'forever'.
    valid_after    TEXT    NOT NULL,
    valid_before   TEXT    NOT NULL,
    -- For people: 'certificate signed by CA SHA256:..., serial 42, key id "node-1"'.
    description    TEXT    NOT NULL
);

-- The certificate the host proved its key with; NULL for a host trusted by its key (or not reached).
ALTER TABLE scan_hosts ADD COLUMN host_certificate_id INTEGER NULL REFERENCES host_certificates (id);

-- For Store::prune, as scan_hosts_by_host_key (20261129010000_prune_indexes.sql).
CREATE INDEX scan_hosts_by_host_certificate ON scan_hosts (host_certificate_id) WHERE host_certificate_id IS NOT NULL;
