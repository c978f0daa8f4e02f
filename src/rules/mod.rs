//! The rule engine: given a parsed process table (and the host's roles), decides which rules pass or fail.
//!
//! Owns: the rule-pack format and the embedded CIS pack ([`pack`]), finding components in a table by the program
//! executed ([`detect`]), the operators ([`test`]) and verdicts with redacted evidence ([`judge`]).
//! Must not touch: SSH, the database or HTML. It sees only a [`ProcessTable`], so `fleetaudit eval` can judge a
//! captured `ps -ef` offline with exactly the code a scan uses.

pub mod detect;
pub mod judge;
pub mod pack;
pub mod settings;
pub mod test;

pub use detect::Detector;
pub use judge::{Evidence, Finding};
pub use pack::{PackError, Rule, RuleSet};

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

    /// Judges one host's process table against every rule.
    pub fn judge(&self, table: &ProcessTable, roles: &[Role]) -> Vec<Finding> {
        judge::judge(&self.rules, &self.detector, table, roles)
    }
}
