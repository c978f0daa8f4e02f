//! fleetaudit: agentless CIS compliance auditing of Kubernetes nodes over SSH.
//!
//! The pipeline, one module per stage, data flowing one way:
//! [`inventory`] → [`scan`] (scheduler) → [`ssh`] → [`ps`] parser and [`files`] → [`rules`] → [`store`] →
//! [`cluster`] rules → report.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod demo;
pub mod files;
pub mod import;
pub mod inventory;
pub mod metrics;
pub mod model;
pub mod output;
pub mod ps;
pub mod report;
pub mod rules;
pub mod scan;
pub mod sim;
pub mod source;
pub mod ssh;
pub mod store;
