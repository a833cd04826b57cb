//! The `changeset` action's domain: a CloudFormation change set reviewed before it runs.
//!
//! - [`parse_params`]: the action's UserParameters, validated into [`ChangesetParams`] (stack, template file,
//!   parameters file, capabilities, and the [`RiskPolicy`]: what to do with each [`RiskClass`]);
//! - [`ResourceChange`]: the typed change list, read from DescribeChangeSet (the adapter converts the SDK's types; the
//!   API's own JSON shape is read by [`parse_describe_change_set`], which the fixtures use);
//! - [`Template`]: the template artifact parsed (YAML with CloudFormation's short-form tags, or JSON), because a change
//!   set says *that* a security group's ingress changes, never *to what*;
//! - [`classify`] and [`review`]: every change into its risk classes, then one [`Verdict`] under the policy;
//! - [`Review::report`]: the risk report as engineers read it (chat, email, the failure message);
//! - [`ChangesetToken`]: the continuation token between invocations; the [`ChangeSets`] port.
//!
//! Everything here is pure except the port: the classifier is tested on realistic DescribeChangeSet responses.

mod classify;
mod describe;
mod policy;
mod review;

pub use classify::*;
pub use describe::*;
pub use policy::*;
pub use review::*;
