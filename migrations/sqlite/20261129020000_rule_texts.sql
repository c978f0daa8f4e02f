-- fleetaudit history, schema 2: the texts of each rule, so a report can be rendered from the database alone.
-- NULL for rules stored by a fleetaudit before this migration.

-- Why the rule matters (the pack's `rationale`).
ALTER TABLE rules ADD COLUMN rationale TEXT NULL;
-- How to fix a failing host (the pack's `remediation`).
ALTER TABLE rules ADD COLUMN remediation TEXT NULL;
-- The test the rule applies, described for people (e.g. "--kubelet-certificate-authority is set").
ALTER TABLE rules ADD COLUMN test TEXT NULL;
