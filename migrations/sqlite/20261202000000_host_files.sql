-- fleetaudit history: the files each scan read on each host (schema 4).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- After `ps -ef`, a scan stats, reads or lists the files the host's processes name (the kubelet's config and
-- drop-ins, manifests, the PKI tree; kubeconfigs and private keys stat'ed only) over SFTP. What it saw of each path
-- is an *observation*: type, mode, owner, size, the SHA-256 and contents it kept (secrets already redacted before
-- they reach the store), or why the path could not be learned. A host's observations in one scan are a *file set*.
-- Both are deduplicated as result sets and evidence are, so a rescan of an unchanged host adds only the
-- file_set_id of its scan_hosts row and its index entry (~15 bytes; the whole unchanged rescan, verdicts
-- included, is measured under 200 bytes per host by `an_unchanged_rescan_reuses_result_sets_and_costs_little`).
-- Contents are stored once each, however many hosts and scans saw them.
--
-- Read the views, not the tables: host_files, latest_host_files, file_changes (and file_attributes, which they
-- are built on). Filter them on scan_id or host. Example queries:
--
--   -- Every file not 600 in each host's latest scan.
--   SELECT host, path, mode, permissions, owner FROM latest_host_files
--    WHERE kind = 'file' AND mode <> '600' ORDER BY host, path;
--
--   -- What changed in the kubelet's config on cp-1, scan by scan.
--   SELECT scan_id, previous_scan_id, change, previous_mode, mode, previous_sha256, sha256
--     FROM file_changes WHERE host = 'cp-1' AND path = '/var/lib/kubelet/config.yaml' ORDER BY scan_id;
--
--   -- Paths a host's latest scan could not learn, by problem.
--   SELECT problem, count(*) AS paths, count(DISTINCT host) AS hosts, min(problem_message) AS for_example
--     FROM latest_host_files WHERE problem IS NOT NULL GROUP BY problem ORDER BY paths DESC;
--
--   -- The kubelet config a host had in scan 12 (redacted where it held secrets).
--   SELECT c.body FROM host_files f JOIN file_contents c ON c.sha256 = f.sha256
--    WHERE f.scan_id = 12 AND f.host = 'cp-1' AND f.path = '/var/lib/kubelet/config.yaml';

-- File contents as kept (secrets redacted), once each.
CREATE TABLE file_contents (
    id     INTEGER PRIMARY KEY,
    -- The contents' SHA-256 as the scan recorded it (file_observations.content_sha256, lowercase hex as sha256sum
    -- prints it): the deduplication key, so `JOIN file_contents c ON c.sha256 = host_files.sha256` finds them.
    sha256 TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    body   BLOB    NOT NULL
);

-- What a scan saw of one path of a host: its inode, or why it could not be learned. Immutable, stored once per
-- distinct observation, shared by every host and scan that saw exactly this.
CREATE TABLE file_observations (
    id              INTEGER PRIMARY KEY,
    -- SHA-256 over every field below (and the contents' hash): the deduplication key.
    sha256          BLOB    NOT NULL UNIQUE,
    -- The absolute path as the process or the pack named it; any bytes a path may hold, stored as given.
    path            TEXT    NOT NULL,
    -- 'file', 'dir', 'symlink' or 'other' (a device, FIFO or socket); NULL when the path could not be learned.
    kind            TEXT    NULL CHECK (kind IN ('file', 'dir', 'symlink', 'other')),
    -- Permission bits, setuid/setgid/sticky included (0 to 0o7777); host_files shows them as '600' and '-rw-------'.
    mode            INTEGER NULL CHECK (mode BETWEEN 0 AND 4095),
    uid             INTEGER NULL CHECK (uid BETWEEN 0 AND 4294967295),
    gid             INTEGER NULL CHECK (gid BETWEEN 0 AND 4294967295),
    -- 'root:root' by the host's own /etc/passwd and /etc/group (a number where the host has no name).
    owner           TEXT    NULL,
    -- Bytes, as stat reports them (a size past 2^63 - 1, which only a lying server sends, is stored as that).
    size            INTEGER NULL CHECK (size >= 0),
    -- SHA-256 (lowercase hex) of the contents, for a file read; NULL for a path only stat'ed.
    content_sha256  TEXT    NULL CHECK (length(content_sha256) = 64 AND content_sha256 NOT GLOB '*[^0-9a-f]*'),
    -- 1 when secrets were redacted from the contents kept.
    redacted        INTEGER NOT NULL CHECK (redacted IN (0, 1)),
    -- The contents kept; NULL when none were.
    content_id      INTEGER NULL REFERENCES file_contents (id) CHECK (content_id IS NULL OR content_sha256 IS NOT NULL),
    -- Why the path could not be learned: 'missing' (no such file or directory), 'denied' (the audit login may not
    -- read it), 'too_large', 'over_budget' (max_files or file_budget ran out), 'unavailable' (no SFTP on the
    -- host), 'failed' (anything else the SFTP server answered), 'not_in_snapshot' (an offline tar without it).
    problem         TEXT    NULL CHECK (problem IN ('missing', 'denied', 'too_large', 'over_budget', 'unavailable',
                                                    'failed', 'not_in_snapshot')),
    -- For a problem: what happened and what to do, for people.
    problem_message TEXT    NULL,
    -- Exactly one of: the path's inode (complete: a default would be a lie), or a problem with its message.
    CHECK ((kind IS NOT NULL AND problem IS NULL AND problem_message IS NULL
            AND mode IS NOT NULL AND uid IS NOT NULL AND gid IS NOT NULL AND size IS NOT NULL)
        OR (kind IS NULL AND problem IS NOT NULL AND problem_message IS NOT NULL
            AND mode IS NULL AND uid IS NULL AND gid IS NULL AND owner IS NULL AND size IS NULL
            AND content_sha256 IS NULL AND redacted = 0 AND content_id IS NULL))
);

-- One host's complete set of observations in a scan, shared by every scan and host with exactly the same set.
-- Immutable: its members are written with it. A host audited without files has the empty set (no members).
CREATE TABLE file_sets (
    id     INTEGER PRIMARY KEY,
    -- SHA-256 over the members' own keys, in path order: the deduplication key.
    sha256 BLOB    NOT NULL UNIQUE
);

-- The observations of a file set, one per path.
CREATE TABLE file_set_members (
    set_id         INTEGER NOT NULL REFERENCES file_sets (id),
    observation_id INTEGER NOT NULL REFERENCES file_observations (id),
    PRIMARY KEY (set_id, observation_id)
) WITHOUT ROWID;

-- The host's files in this scan; NULL for a host that could not be audited, and for scans stored before this
-- migration (the first scan after it has no previous files to compare with in file_changes).
ALTER TABLE scan_hosts ADD COLUMN file_set_id INTEGER NULL REFERENCES file_sets (id)
    CHECK (file_set_id IS NULL OR outcome = 'audited');

-- For Store::prune, as in 20261129010000_prune_indexes.sql: deleting a set, an observation or contents looks for a
-- row still pointing at it, and `NOT IN (SELECT ...)` finds what nothing kept points at. Only the first costs a
-- rescan anything (~12 bytes per host); the others grow only with new sets and new observations.
CREATE INDEX scan_hosts_by_file_set ON scan_hosts (file_set_id) WHERE file_set_id IS NOT NULL;

CREATE INDEX file_set_members_by_observation ON file_set_members (observation_id);

CREATE INDEX file_observations_by_content ON file_observations (content_id) WHERE content_id IS NOT NULL;

-- Each stored observation as people read it: mode as `stat -c %a` prints it ('600', '1777'), permissions as
-- `ls -l` does ('-rw-------', 'drwx------', 'lrwxrwxrwx', 's'/'S'/'t'/'T' for setuid, setgid and sticky; '?'
-- for 'other', whose exact type is not recorded), sha256 the contents' hash. NULLs for a path with a problem.
CREATE VIEW file_attributes (observation_id, path, kind, mode, permissions, uid, gid, owner, size, sha256, redacted,
                             problem, problem_message) AS
SELECT o.id, o.path, o.kind,
       CASE WHEN o.mode IS NOT NULL THEN printf('%o', o.mode) END,
       CASE WHEN o.kind IS NOT NULL THEN
              CASE o.kind WHEN 'file' THEN '-' WHEN 'dir' THEN 'd' WHEN 'symlink' THEN 'l' ELSE '?' END
           || CASE WHEN o.mode & 256 THEN 'r' ELSE '-' END
           || CASE WHEN o.mode & 128 THEN 'w' ELSE '-' END
           || CASE o.mode & 2112 WHEN 2112 THEN 's' WHEN 2048 THEN 'S' WHEN 64 THEN 'x' ELSE '-' END
           || CASE WHEN o.mode & 32 THEN 'r' ELSE '-' END
           || CASE WHEN o.mode & 16 THEN 'w' ELSE '-' END
           || CASE o.mode & 1032 WHEN 1032 THEN 's' WHEN 1024 THEN 'S' WHEN 8 THEN 'x' ELSE '-' END
           || CASE WHEN o.mode & 4 THEN 'r' ELSE '-' END
           || CASE WHEN o.mode & 2 THEN 'w' ELSE '-' END
           || CASE o.mode & 513 WHEN 513 THEN 't' WHEN 512 THEN 'T' WHEN 1 THEN 'x' ELSE '-' END
       END,
       o.uid, o.gid, o.owner, o.size, o.content_sha256, o.redacted, o.problem, o.problem_message
  FROM file_observations o;

-- Every path of every host of every scan, as the scan saw it. A host that could not be audited has no rows.
-- host and cluster are the host's current inventory values. Filter on scan_id or host to stay fast.
CREATE VIEW host_files (scan_id, host, cluster, path, kind, mode, permissions, owner, size, sha256, redacted, problem,
                        problem_message) AS
SELECT sh.scan_id, h.name, h.cluster, a.path, a.kind, a.mode, a.permissions, a.owner, a.size, a.sha256, a.redacted,
       a.problem, a.problem_message
  FROM scan_hosts sh
  JOIN hosts h ON h.id = sh.host_id
  JOIN file_set_members m ON m.set_id = sh.file_set_id
  JOIN file_attributes a ON a.observation_id = m.observation_id;

-- host_files of each host's latest ended scan (the same "latest" as latest_findings: a running scan is not yet the
-- truth). A host whose latest ended scan could not audit it has no rows here; host_status says why.
-- `hosts h CROSS JOIN scan_hosts sh` fixes the join order, as in latest_findings.
CREATE VIEW latest_host_files (scan_id, host, cluster, path, kind, mode, permissions, owner, size, sha256, redacted,
                               problem, problem_message) AS
SELECT sh.scan_id, h.name, h.cluster, a.path, a.kind, a.mode, a.permissions, a.owner, a.size, a.sha256, a.redacted,
       a.problem, a.problem_message
  FROM hosts h
 CROSS JOIN scan_hosts sh
  JOIN file_set_members m ON m.set_id = sh.file_set_id
  JOIN file_attributes a ON a.observation_id = m.observation_id
 WHERE sh.host_id = h.id
   AND sh.scan_id = (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
                      WHERE l.host_id = h.id AND ls.id = l.scan_id AND ls.status <> 'running'
                      ORDER BY l.scan_id DESC LIMIT 1);

-- File drift: for each scan (a running one too, as it progresses) and host, the paths that differ from the host's
-- previous_scan_id, its latest ended scan before this one that recorded files. Unlike `changes`, a scan that could
-- not audit the host is skipped, so a mode changed while the host was unreachable still shows. `change` is
-- 'added' (the path is in this scan's files, not in the previous scan's), 'removed' (the reverse), or a
-- comma-separated list, in this order, of what differs for a path in both:
--   'problem'  the path's problem differs: it went missing, became unreadable, or can be read again (the columns
--              of the side with a problem are NULL);
--   'kind'     its type ('file', 'dir', ...);
--   'mode'     its permission bits;
--   'owner'    its owner (names, uid or gid);
--   'content'  the contents' SHA-256, when both scans read it; for a file only stat'ed both times (a private
--              key, a kubeconfig), its size.
-- Test one with instr(change, 'mode') > 0. A path whose problem message alone changed is not listed. Hosts new
-- in this scan, and the first scan after this migration, have nothing to compare with. Filter on scan_id to stay
-- fast; two scans with the same file set cost one compare.
CREATE VIEW file_changes (scan_id, previous_scan_id, host, path, change, previous_mode, mode, previous_owner, owner,
                          previous_sha256, sha256, previous_problem, problem, previous_permissions, permissions) AS
WITH pairs (scan_id, host_id, set_id, previous_scan_id) AS NOT MATERIALIZED (
    SELECT c.scan_id, c.host_id, c.file_set_id,
           (SELECT l.scan_id FROM scan_hosts l CROSS JOIN scans ls
             WHERE l.host_id = c.host_id AND l.scan_id < c.scan_id AND l.file_set_id IS NOT NULL
               AND ls.id = l.scan_id AND ls.status <> 'running'
             ORDER BY l.scan_id DESC LIMIT 1)
      FROM scan_hosts c
     WHERE c.file_set_id IS NOT NULL
),
sets (scan_id, previous_scan_id, host_id, set_id, previous_set_id) AS NOT MATERIALIZED (
    SELECT c.scan_id, p.scan_id, c.host_id, c.set_id, p.file_set_id
      FROM pairs c
      JOIN scan_hosts p ON p.scan_id = c.previous_scan_id AND p.host_id = c.host_id
     WHERE p.file_set_id <> c.set_id
)
-- A path of this scan whose observation the previous set does not share: changed, or added. The previous
-- observation of the same path is searched among the previous set's members only for those.
SELECT * FROM (
    SELECT s.scan_id, s.previous_scan_id, h.name AS host, c.path,
           CASE WHEN p.observation_id IS NULL THEN 'added'
                WHEN p.kind IS NULL OR c.kind IS NULL THEN CASE WHEN p.problem IS NOT c.problem THEN 'problem' ELSE '' END
                ELSE ltrim(
                       CASE WHEN p.kind <> c.kind THEN ',kind' ELSE '' END
                    || CASE WHEN p.mode <> c.mode THEN ',mode' ELSE '' END
                    || CASE WHEN p.owner IS NOT c.owner OR p.uid <> c.uid OR p.gid <> c.gid THEN ',owner' ELSE '' END
                    || CASE WHEN p.sha256 <> c.sha256
                              OR (p.sha256 IS NULL AND c.sha256 IS NULL AND p.kind = 'file' AND c.kind = 'file'
                                  AND p.size <> c.size) THEN ',content' ELSE '' END, ',')
           END AS change,
           p.mode AS previous_mode, c.mode, p.owner AS previous_owner, c.owner, p.sha256 AS previous_sha256, c.sha256,
           p.problem AS previous_problem, c.problem, p.permissions AS previous_permissions, c.permissions
      FROM sets s
      JOIN hosts h ON h.id = s.host_id
      JOIN file_set_members cm ON cm.set_id = s.set_id
      JOIN file_attributes c ON c.observation_id = cm.observation_id
      LEFT JOIN file_attributes p ON p.observation_id =
           (SELECT pm.observation_id FROM file_set_members pm JOIN file_observations po ON po.id = pm.observation_id
             WHERE pm.set_id = s.previous_set_id AND po.path = c.path)
     WHERE NOT EXISTS (SELECT 1 FROM file_set_members x
                        WHERE x.set_id = s.previous_set_id AND x.observation_id = cm.observation_id)
) WHERE change <> ''
UNION ALL
-- A path of the previous scan that this scan's set does not hold.
SELECT s.scan_id, s.previous_scan_id, h.name, p.path, 'removed', p.mode, NULL, p.owner, NULL, p.sha256, NULL,
       p.problem, NULL, p.permissions, NULL
  FROM sets s
  JOIN hosts h ON h.id = s.host_id
  JOIN file_set_members pm ON pm.set_id = s.previous_set_id
  JOIN file_attributes p ON p.observation_id = pm.observation_id
 WHERE NOT EXISTS (SELECT 1 FROM file_set_members x WHERE x.set_id = s.set_id AND x.observation_id = pm.observation_id)
   AND NOT EXISTS (SELECT 1 FROM file_set_members cm JOIN file_observations co ON co.id = cm.observation_id
                    WHERE cm.set_id = s.set_id AND co.path = p.path);
