//! The `tollgate` command-line tool's library: local runs against a local AWS endpoint, template reading, and
//! rendering for engineers. The binary (`main.rs`) only parses arguments and calls in here.

pub mod audit;
pub mod decide;
pub mod demo;
pub mod dlq;
pub mod local;
pub mod policy_cmd;
pub mod render;
pub mod replay;
pub mod report;
pub mod simulate;
pub mod table;
pub mod template;

pub(crate) fn is_failure_state(s: &str) -> bool {
    tollgate_domain::record::timeline::is_failure(s)
}
