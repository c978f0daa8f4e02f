-- fleetaudit history: scans that several scanners share, and the host keys they accept (schema 7).
--
-- Never edit this file once released (sqlx records its checksum); change the schema in a new migration.
--
-- Several `fleetaudit scan` or `daemon` processes with the same inventory and one PostgreSQL database share
-- one scan: the first to start creates it with a row per host here, and each scanner claims hosts in batches
-- under a lease its heartbeat extends. A scanner that dies stops extending its leases; when they run out,
-- another scanner claims its hosts. An SQLite database has one scanner at a time and leaves both tables empty;
-- they exist here too so that the two schemas stay the same.

-- One row per host of a shared scan: who holds it and until when.
CREATE TABLE scan_work (
    scan_id     INTEGER NOT NULL REFERENCES scans (id),
    -- The host's inventory name.
    host        TEXT    NOT NULL,
    -- Its zone (the inventory's `zone`): claimed by scanners started with that `--zone` or with none. NULL:
    -- by any scanner.
    zone        TEXT    NULL,
    -- The scanner holding it ("hostname pid 4242"), NULL when nobody does.
    claimed_by  TEXT    NULL,
    -- The claim's end, in milliseconds since 1970 by the database's clock: past it, any scanner may claim it.
    lease_until INTEGER NULL,
    -- 1 once the host is recorded in scan_hosts; it is then never claimed again.
    done        INTEGER NOT NULL DEFAULT 0 CHECK (done IN (0, 1)),
    PRIMARY KEY (scan_id, host)
);

-- One row per scanner that joined a shared scan.
CREATE TABLE scanners (
    scan_id      INTEGER NOT NULL REFERENCES scans (id),
    scanner      TEXT    NOT NULL,
    zone         TEXT    NULL,
    -- When it joined (RFC 3339 UTC).
    joined_at    TEXT    NOT NULL,
    -- Until when it is alive, in milliseconds since 1970 by the database's clock: its heartbeat moves this on;
    -- a running scan none of whose scanners is alive is ended as interrupted by the next scanner to start.
    alive_until  INTEGER NOT NULL,
    -- SHA-256 of its inventory's hosts and zones: a scanner whose inventory differs from the first one's is
    -- refused, as it would claim hosts it cannot reach.
    inventory_sha256 TEXT NOT NULL,
    -- 1 for the one scanner that judged the cluster rules, ended the scan and rendered its report.
    finished     INTEGER NOT NULL DEFAULT 0 CHECK (finished IN (0, 1)),
    PRIMARY KEY (scan_id, scanner)
);

-- Host keys accepted on first use (`host_key_policy = "accept-new"`) by any scanner of a shared history, so that
-- every scanner trusts the key the first one saw (each scanner also keeps its own `accepted_hosts` file).
CREATE TABLE accepted_host_keys (
    -- The host as known_hosts names it: `10.0.0.1`, or `[10.0.0.1]:2222` on another port.
    host        TEXT NOT NULL PRIMARY KEY,
    -- The known_hosts line: host, key type, key.
    line        TEXT NOT NULL,
    -- When and by which scanner it was first seen (RFC 3339 UTC, "hostname pid 4242").
    accepted_at TEXT NOT NULL,
    scanner     TEXT NOT NULL
);
