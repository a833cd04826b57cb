//! Deployment leases: one execution deploying to an environment (or wave) at a time.

use super::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::gate::policy::Policy;
use crate::record::keys::ExecutionKey;
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::query::execution_timeline;

// ---------------------------------------------------------------------------------------------------------------
// Deployment leases: the concurrency check.

/// `LEASE#<environment>` or `LEASE#<environment>#WAVE#<wave>`: one lease per environment (and wave), shared by every
/// pipeline whose policy names it.
pub fn lease_pk(environment: &str, wave: Option<&str>) -> String {
    match wave {
        Some(w) => format!("LEASE#{environment}#WAVE#{w}"),
        None => format!("LEASE#{environment}"),
    }
}

/// The right of one pipeline execution to deploy to an environment (and wave), taken by its gate when it passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentLease {
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    /// The execution that holds it.
    pub holder: ExecutionKey,
    /// The gated stage of the holder.
    pub stage: String,
    /// The gate decision that took it.
    pub decision_id: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl DeploymentLease {
    pub fn pk(&self) -> String {
        lease_pk(&self.environment, self.wave.as_deref())
    }

    /// `<account>/<region>/<pipeline>/<execution id>`: the holder as one value, for conditional writes.
    pub fn holder_id(&self) -> String {
        holder_id(&self.holder)
    }

    /// How the holder reads in a decision: `payments execution 7f3a… (Production, since 2026-11-20 14:02 UTC)`.
    pub fn describe(&self) -> String {
        format!(
            "{} execution {} ({}, since {} UTC)",
            self.holder.pipeline,
            self.holder.execution_id,
            self.stage,
            self.acquired_at.format("%Y-%m-%d %H:%M")
        )
    }
}

/// `<account>/<region>/<pipeline>/<execution id>`.
pub fn holder_id(k: &ExecutionKey) -> String {
    format!("{}/{}/{}/{}", k.account, k.region, k.pipeline, k.execution_id)
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseClaim {
    /// The lease is now (still) the claimant's.
    Acquired,
    /// Another execution holds it: the lease as stored.
    HeldBy(Box<DeploymentLease>),
}

/// Where deployment leases are kept.
#[async_trait]
pub trait DeploymentLeases: Send + Sync {
    /// The lease of an environment (and wave), if any.
    async fn lease(&self, environment: &str, wave: Option<&str>) -> Result<Option<DeploymentLease>, StoreError>;
    /// Takes the lease for `lease.holder` with one conditional write, which succeeds only when no lease exists, when
    /// the same execution holds it (a re-evaluation keeps it), or when the stored lease is still exactly `replacing`
    /// (the holder the caller found finished or expired). Otherwise answers with the lease that holds it, so of two
    /// gates racing for one lease exactly one wins.
    async fn claim_lease(
        &self,
        lease: &DeploymentLease,
        replacing: Option<&DeploymentLease>,
    ) -> Result<LeaseClaim, StoreError>;
}

/// Where a lease stands for the execution in `ctx`.
pub(super) enum LeaseStanding {
    /// Nobody holds it, or this execution does.
    Free,
    /// Its holder has finished (or the lease expired): it may be replaced, exactly as read.
    Stale(DeploymentLease),
    /// Another execution is deploying.
    Held(DeploymentLease),
}

/// Whether `lease` still excludes the execution in `ctx`: held by another execution that has not ended (by its
/// recorded timeline) and has not expired. An execution with no recorded events yet counts as in progress: the
/// holder took the lease, so it exists, and its events may simply not have arrived.
pub(super) async fn standing<Q: TimelineQueries + ?Sized>(
    timelines: &Q,
    ctx: &JobContext,
    lease: Option<DeploymentLease>,
    now: DateTime<Utc>,
) -> Result<LeaseStanding, String> {
    let Some(lease) = lease else {
        return Ok(LeaseStanding::Free);
    };
    if lease.holder == ctx.execution_key() {
        return Ok(LeaseStanding::Free);
    }
    if lease.expires_at <= now {
        return Ok(LeaseStanding::Stale(lease));
    }
    let timeline = execution_timeline(timelines, &lease.holder).await.map_err(|e| {
        format!(
            "cannot read the timeline of {} execution {}, which holds the lease: {e}",
            lease.holder.pipeline, lease.holder.execution_id
        )
    })?;
    match timeline {
        Some(t) if crate::record::timeline::is_terminal(&t.state) => Ok(LeaseStanding::Stale(lease)),
        _ => Ok(LeaseStanding::Held(lease)),
    }
}

/// The concurrency fact: the other execution deploying to the policy's environment (and wave), if any.
pub(super) async fn deployments_in_progress<L, Q>(
    leases: &L,
    timelines: &Q,
    ctx: &JobContext,
    environment: &str,
    wave: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<String>, String>
where
    L: DeploymentLeases + ?Sized,
    Q: TimelineQueries + ?Sized,
{
    let lease = leases
        .lease(environment, wave)
        .await
        .map_err(|e| format!("cannot read the deployment lease: {e}"))?;
    Ok(match standing(timelines, ctx, lease, now).await? {
        LeaseStanding::Held(l) => vec![l.describe()],
        LeaseStanding::Free | LeaseStanding::Stale(_) => Vec::new(),
    })
}

/// What claiming the lease after a passing evaluation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseResult {
    /// The policy has no concurrency check: nothing to claim.
    NotNeeded,
    Acquired,
    /// Another execution took it first (a concurrent gate): who, for the concurrency check.
    HeldBy(Vec<String>),
    /// The lease could not be read or written.
    Error(String),
}

/// Takes the policy's deployment lease for the execution in `ctx`, once its gate has passed: read it, and write it
/// conditionally unless another execution in progress holds it. Of two gates that both evaluated the lease free,
/// the conditional write lets exactly one through; the other gets [`LeaseResult::HeldBy`] and must wait.
pub async fn claim_deployment_lease<L, Q>(
    policy: &Policy,
    ctx: &JobContext,
    decision_id: &str,
    leases: &L,
    timelines: &Q,
    now: DateTime<Utc>,
) -> LeaseResult
where
    L: DeploymentLeases + ?Sized,
    Q: TimelineQueries + ?Sized,
{
    let Some(check) = &policy.concurrency else {
        return LeaseResult::NotNeeded;
    };
    let wave = check.wave.as_deref();
    let current = match leases.lease(&check.environment, wave).await {
        Ok(l) => l,
        Err(e) => return LeaseResult::Error(format!("cannot read the deployment lease: {e}")),
    };
    let replacing = match standing(timelines, ctx, current.clone(), now).await {
        Err(why) => return LeaseResult::Error(why),
        Ok(LeaseStanding::Held(l)) => return LeaseResult::HeldBy(vec![l.describe()]),
        Ok(LeaseStanding::Stale(l)) => Some(l),
        // Ours already: claiming again renews it and keeps the first acquisition time.
        Ok(LeaseStanding::Free) => current.filter(|l| l.holder == ctx.execution_key()),
    };
    let acquired_at = replacing
        .as_ref()
        .filter(|l| l.holder == ctx.execution_key())
        .map(|l| l.acquired_at)
        .unwrap_or(now);
    let lease = DeploymentLease {
        environment: check.environment.clone(),
        wave: check.wave.clone(),
        holder: ctx.execution_key(),
        stage: ctx.stage.clone(),
        decision_id: decision_id.to_string(),
        acquired_at,
        expires_at: now + LEASE_EXPIRY,
    };
    match leases.claim_lease(&lease, replacing.as_ref()).await {
        Ok(LeaseClaim::Acquired) => LeaseResult::Acquired,
        Ok(LeaseClaim::HeldBy(other)) => LeaseResult::HeldBy(vec![other.describe()]),
        Err(e) => LeaseResult::Error(format!("cannot take the deployment lease: {e}")),
    }
}
