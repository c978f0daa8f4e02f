//! The rule engine: given a parsed process table (and the host's roles), decides which rules pass or fail.
//!
//! Owns: the rule-pack format and the embedded CIS pack ([`pack`]), finding components in a table by the program
//! executed ([`detect`]), the operators ([`test`]), verdicts with redacted evidence ([`judge`]), and the format of
//! the rules' texts ([`prose`]).
//! Must not touch: SSH, the database or HTML. It sees only a [`ProcessTable`], so `fleetaudit eval` can judge a
//! captured `ps -ef` offline with exactly the code a scan uses.

pub mod detect;
pub mod doc;
pub mod filecheck;
pub mod judge;
pub mod layers;
pub mod pack;
pub mod plan;
pub mod prose;
pub mod settings;
pub mod test;

pub use detect::Detector;
pub use judge::{Evidence, Finding};
pub use pack::{CertClass, ClusterCheck, ClusterRule, PackError, Rule, RuleSet};

use crate::files::FileSet;
use crate::model::Role;
use crate::ps::ProcessTable;

/// The most batches of file requests a host is asked: the first from the process table, then what the
/// answers name (a config's staticPodPath, a listed drop-in directory's files, a subdirectory). Defaults are
/// asked in the first batch, so a kubeadm node needs one; a drop-in directory two.
pub const MAX_ROUNDS: usize = 4;

/// A host's certificate files (path as the host sees it) and the roles their certificates play there
/// (`kubelet-serving`, `apiserver-kubelet-ca`; pack `[[file]] certificate`): what cluster rules select by.
pub type CertRoles = std::collections::BTreeMap<String, std::collections::BTreeSet<String>>;

/// A rule set ready to judge many hosts: the rules plus the index used to find components.
#[derive(Debug, Clone)]
pub struct Engine {
    pub rules: RuleSet,
    detector: Detector,
    /// The environment variables some source reads (`ETCD_CLIENT_CERT_AUTH`, `ETCD_CONFIG_FILE`): all that is
    /// kept of a process's environment.
    env_read: std::collections::BTreeSet<String>,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Engine {
        let detector = Detector::new(&rules.components, &rules.embeddings);
        let env_read = env_read(&rules);
        Engine { rules, detector, env_read }
    }

    /// A file's contents as the host sent them, made safe to keep: see [`crate::files::redact::admit`].
    pub fn admit(&self, path: &str, raw: Vec<u8>) -> crate::files::Content {
        crate::files::redact::admit(path, raw, &|name| self.env_read.contains(name))
    }

    /// Judges one host's process table against every rule, with no files: every setting a file holds is
    /// `error` ("not read").
    pub fn judge(&self, table: &ProcessTable, roles: &[Role]) -> Vec<Finding> {
        judge::judge(&self.rules, &self.detector, table, &FileSet::none(), roles)
    }

    /// The paths the host's processes name that `files` does not hold yet: the next batch to read. Empty when
    /// every file the rules need has been read (or failed).
    pub fn plan(&self, table: &ProcessTable, files: &FileSet) -> Vec<crate::files::Request> {
        plan::plan(&self.rules, &self.detector, table, files)
    }

    /// Reads what the host's processes name, batch after batch: plans, has `fetch` answer the batch (over SFTP,
    /// or from a snapshot), admits every content read ([`Engine::admit`]: secrets redacted before anything
    /// keeps them), and plans again with the answers, until nothing new is asked or [`MAX_ROUNDS`] batches
    /// have gone (what is still unasked then stays "not read", an error where a rule needs it). Returns the
    /// files and the number of batches.
    pub async fn gather(&self, table: &ProcessTable, fetch: &mut impl crate::files::Fetch) -> (FileSet, usize) {
        let found = self.detector.find(table, &self.rules.embeddings);
        let procs = judge::Unloaded::all(&self.rules, &found, false);
        let (files, rounds, _) = self.gather_procs(&procs, fetch, None).await;
        (files, rounds)
    }

    /// [`Engine::gather`] then [`Engine::judge_with_files`], finding and parsing the host's component processes
    /// once for every batch and the verdicts (a scan's CPU goes to planning and judging: `benches/peers.sh`).
    pub async fn audit(
        &self,
        table: &ProcessTable,
        fetch: &mut impl crate::files::Fetch,
        roles: &[Role],
    ) -> (FileSet, usize, Vec<Finding>, CertRoles) {
        let found = self.detector.find(table, &self.rules.embeddings);
        let procs = judge::Unloaded::all(&self.rules, &found, true);
        let (files, rounds, judged) = self.gather_procs(&procs, fetch, Some(roles)).await;
        let (findings, certs) = judged.unwrap_or_else(|| {
            let parsed = judge::Parsed::load_all(&procs, &files);
            (
                judge::judge_parsed(&self.rules, &parsed, &files, roles),
                judge::certificate_roles(&self.rules, &parsed, &files),
            )
        });
        (files, rounds, findings, certs)
    }

    /// The certificate files of a host's processes and their roles (see [`CertRoles`]), from its table and the
    /// files read: what `fleetaudit eval` and a snapshot give the cluster rules.
    pub fn certificate_roles(&self, table: &ProcessTable, files: &FileSet) -> CertRoles {
        let found = self.detector.find(table, &self.rules.embeddings);
        let procs = judge::Unloaded::all(&self.rules, &found, false);
        judge::certificate_roles(&self.rules, &judge::Parsed::load_all(&procs, files), files)
    }

    /// Plans, fetches and admits until nothing more is asked; with `roles`, also judges the host from the
    /// last round's loaded sources (the files do not change after it).
    async fn gather_procs(
        &self,
        procs: &[judge::Unloaded<'_>],
        fetch: &mut impl crate::files::Fetch,
        roles: Option<&[Role]>,
    ) -> (FileSet, usize, Option<(Vec<Finding>, CertRoles)>) {
        let mut files = FileSet::default();
        let mut rounds = 0;
        let mut findings = None;
        while rounds < MAX_ROUNDS {
            let parsed = judge::Parsed::load_all(procs, &files);
            let batch = plan::plan_parsed(&self.rules, &parsed, plan::source_requests(procs, &files), &files);
            if batch.is_empty() {
                findings = roles.map(|roles| {
                    let certs = judge::certificate_roles(&self.rules, &parsed, &files);
                    (judge::judge_parsed(&self.rules, &parsed, &files, roles), certs)
                });
                break;
            }
            drop(parsed);
            rounds += 1;
            tracing::trace!(round = rounds, requests = ?batch, "files asked");
            for (path, entry) in fetch.fetch(&batch).await {
                // A bare stat (a listing's entry) never replaces what is known of a path: its contents or names.
                if matches!(&entry, crate::files::Entry::Found { content: None, names: None, .. })
                    && files.get(&path).is_some()
                {
                    continue;
                }
                let entry = match entry {
                    crate::files::Entry::Found { meta, content: Some(c), names } => {
                        let content = Some(self.admit(&path, c.bytes));
                        crate::files::Entry::Found { meta, content, names }
                    }
                    other => other,
                };
                files.insert(path, entry);
            }
        }
        // Nothing fetched (no component here): still "looked", so sources are missing rather than not read (a
        // new set is not `not_read`, so a judgement made in the loop saw the same).
        files.not_read = false;
        (files, rounds, findings)
    }

    /// Judges one host's process table and the files read from it (admitted with [`Engine::admit`]) against
    /// every rule.
    pub fn judge_with_files(&self, table: &ProcessTable, files: &FileSet, roles: &[Role]) -> Vec<Finding> {
        judge::judge(&self.rules, &self.detector, table, files, roles)
    }
}

/// Every variable an environment source of the rule set can read: its prefix and each declared flag of the
/// component (`ETCD_` + `CLIENT_CERT_AUTH`), and each variable a file source is named by (`ETCD_CONFIG_FILE`).
fn env_read(rules: &RuleSet) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let sources = rules.components.iter().flat_map(|c| c.sources.iter().map(move |s| (c, s))).chain(
        rules.embeddings.iter().flat_map(|e| {
            e.runs.iter().flat_map(move |r| r.sources.iter().map(move |s| (&rules.components[r.component], s)))
        }),
    );
    for (component, source) in sources {
        if let Some(var) = &source.env {
            names.insert(var.clone());
        }
        if let (settings::SourceKind::Environment, Some(prefix)) = (source.kind, &source.prefix) {
            for flag in component.flags.keys() {
                names.insert(format!("{prefix}{}", flag.to_ascii_uppercase().replace('-', "_")));
            }
        }
    }
    names
}
