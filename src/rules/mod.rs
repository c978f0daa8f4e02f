//! The rule engine: given a parsed process table (and the host's roles), decides which rules pass or fail.
//!
//! Owns: the rule-pack format and the embedded CIS pack ([`pack`]), finding components in a table by the program
//! executed ([`detect`]), the operators ([`test`]) and verdicts with redacted evidence ([`judge`]).
//! Must not touch: SSH, the database or HTML. It sees only a [`ProcessTable`], so `fleetaudit eval` can judge a
//! captured `ps -ef` offline with exactly the code a scan uses.

pub mod detect;
pub mod doc;
pub mod filecheck;
pub mod judge;
pub mod layers;
pub mod pack;
pub mod plan;
pub mod settings;
pub mod test;

pub use detect::Detector;
pub use judge::{Evidence, Finding};
pub use pack::{PackError, Rule, RuleSet};

use crate::files::FileSet;
use crate::model::Role;
use crate::ps::ProcessTable;

/// A rule set ready to judge many hosts: the rules plus the index used to find components.
#[derive(Debug, Clone)]
pub struct Engine {
    pub rules: RuleSet,
    detector: Detector,
}

impl Engine {
    pub fn new(rules: RuleSet) -> Engine {
        let detector = Detector::new(&rules.components, &rules.embeddings);
        Engine { rules, detector }
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

    /// Judges one host's process table and the files read from it against every rule.
    pub fn judge_with_files(&self, table: &ProcessTable, files: &FileSet, roles: &[Role]) -> Vec<Finding> {
        judge::judge(&self.rules, &self.detector, table, files, roles)
    }
}
