//! The gate's policy-as-code: reading and validating policies, and evaluating their checks against gathered facts
//! into an explained decision. Pure domain code: the `gate` function gathers the facts (CloudWatch, CodePipeline,
//! the store) and answers CodePipeline; everything decided is decided here.
//!
//! - [`parse_policy`] / [`validate_file`]: text to a validated [`Policy`], or a [`PolicyError`] naming the file,
//!   line, column and field (`policies/production.yaml:11:11: windows[0].from: "9am" is not a time ...`);
//! - [`parse_user_parameters`] and [`Policy::with_overrides`]: which policy the action uses, with which overrides;
//! - [`authorise_approver`]: whether a principal may approve or override a gate, and if not, who may;
//! - [`evaluate`]: a [`Decision`] from a policy and [`Facts`]; [`Decision::explain`] for people.
//!
//! The format is documented in `docs/policy.md`; `policies/production.yaml` uses every feature.

mod approvers;
mod baseline;
mod baseline_store;
mod checks;
mod error;
mod evaluate;
mod model;
mod overrides;
mod parse;
mod tighten;
pub mod window;

pub use approvers::{
    authorise_approver, authorise_by_check, groups_of, who_may_approve, Authorisation, AuthorisedBy, Refusal,
};
pub use baseline::{
    is_production_stage, parse_baseline, Applicable, Baseline, BaselineRule, ErrorCheck, StageMatch, StageRef,
};
pub use baseline_store::{
    apply_baseline, baseline_pk, BaselineSource, GateSite, MemoryBaselines, MemoryPipelineTags, PipelineTags,
    PublishedBaseline, WithBaseline, DEFAULT_BASELINE_NAME,
};
pub use error::{Location, PolicyError, PolicyErrorKind};
pub use evaluate::{
    evaluate, AlarmFact, AlarmState, ApprovalDecision, ApprovalFact, CheckKind, CheckResult, CheckStatus, Decision,
    Facts, Outcome,
};
pub use model::{
    AlarmsCheck, ApprovalCheck, ArnPattern, BakeCheck, ConcurrencyCheck, Duration, Freeze, FreezeBound, GroupMember,
    Groups, MinRequests, OnError, Policy, Statistic, TimeOfDay, TimeZone, UpstreamCheck, Weekday, Window,
    POLICY_VERSION,
};
pub use overrides::{parse_user_parameters, UserParameters, OVERRIDE_PATHS, USER_PARAMETERS};
pub use parse::{parse_policy, validate_file, MAX_POLICY_BYTES};
pub use tighten::{effective, effective_policy, Loosening};
