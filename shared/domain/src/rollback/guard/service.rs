//! The guard's service: one alarm state change in, decisions carried out once per incident, each recorded, audited
//! and told once (docs/guard.md, "Exactly once per target").

use super::*;

/// The adapters the guard works through.
pub struct GuardPorts<'a> {
    pub discovery: &'a dyn TargetDiscovery,
    pub actions: &'a dyn RollbackActions,
    pub store: &'a dyn RollbackStore,
    pub audit: &'a dyn AuditLog,
    pub notifier: &'a dyn Notifier,
}

/// What handling one alarm state change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GuardReport {
    /// Records created and carried out now, by outcome.
    pub rolled_back: u32,
    pub refused: u32,
    pub notified: u32,
    /// ALARMs the guard could not act on, told and recorded.
    pub unhandled: u32,
    /// Targets decided before (flaps, duplicates): nothing done again.
    pub already_handled: u32,
    /// Candidates outside the window or in no state to act on.
    pub ignored: u32,
    /// Rollbacks whose time to restore this OK recorded.
    pub restored: u32,
    /// Stages still running: the message comes back later.
    pub waiting: u32,
    /// The alarm was suppressed, in another state than ALARM/OK, or not this account's: why nothing ran.
    pub skipped: Option<String>,
}

/// A failure that a redelivery can get past (the SQS message goes back); nothing was done twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    Retry(String),
    /// Something no retry will cure (discovery refused, the store refused the record): reported, not retried.
    #[error("{0}")]
    Failed(String),
}

/// Handles one alarm state change at `now`: ALARM rolls back (unless a composite alarm's actions are suppressed), OK
/// records restores, anything else is reported.
pub async fn handle_alarm(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    now: DateTime<Utc>,
    token: &str,
) -> Result<GuardReport, GuardError> {
    match alarm.state.as_str() {
        "ALARM" => match &alarm.suppressed_by {
            Some(by) => Ok(GuardReport {
                skipped: Some(format!(
                    "alarm {} went to ALARM with its actions suppressed ({by}): nothing rolled back",
                    alarm.alarm_name
                )),
                ..GuardReport::default()
            }),
            None => on_alarm(ports, policy, alarm, now, token).await,
        },
        "OK" => on_recovery(ports, alarm).await,
        other => Ok(GuardReport {
            skipped: Some(format!("alarm {} went to {other}: nothing to do", alarm.alarm_name)),
            ..GuardReport::default()
        }),
    }
}

/// An alarm back to OK: records the time to restore of its rollbacks, undoes nothing.
pub async fn on_recovery(ports: &GuardPorts<'_>, alarm: &AlarmSignal) -> Result<GuardReport, GuardError> {
    let restored = ports
        .store
        .mark_restored(&alarm.key(), alarm.at)
        .await
        .map_err(store_failure)?;
    for r in &restored {
        tracing::info!(record = %r.id, seconds = r.time_to_restore_secs(), "service restored after rollback");
    }
    Ok(GuardReport {
        restored: restored.len() as u32,
        ..GuardReport::default()
    })
}

fn store_failure(e: StoreError) -> GuardError {
    match e {
        StoreError::Transient(m) => GuardError::Retry(m),
        StoreError::Permanent(m) => GuardError::Failed(m),
    }
}

/// An alarm went to ALARM: one decision per protected target and incident, each carried out once. What the guard
/// cannot act on is recorded and told once per alarm transition ([`unhandled`]).
pub async fn on_alarm(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    now: DateTime<Utc>,
    token: &str,
) -> Result<GuardReport, GuardError> {
    let mut report = GuardReport::default();
    if now - alarm.at > policy.max_alarm_age {
        let why = format!(
            "it went to ALARM at {} and was processed at {}, more than {} minutes later (retried past the guard's \
             limit: a stage still running, AWS unavailable, or a late delivery): nothing rolled back automatically",
            alarm.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            now.to_rfc3339_opts(SecondsFormat::Secs, true),
            policy.max_alarm_age.num_minutes()
        );
        return unhandled(ports, policy, alarm, now, token, why, report).await;
    }
    let candidates = match ports.discovery.candidates(alarm, alarm.at - policy.window).await {
        Ok(candidates) => candidates,
        Err(GuardApiError::Transient(m)) => {
            return Err(GuardError::Retry(format!(
                "finding what alarm {} protects: {m}",
                alarm.alarm_name
            )))
        }
        Err(GuardApiError::Permanent(m)) => {
            let why = format!("finding what it protects failed: {m}");
            return unhandled(ports, policy, alarm, now, token, why, report).await;
        }
    };
    if candidates.is_empty() {
        let why = "the guard found nothing it protects (no deployment group lists it, no gate watches it, nothing \
                   is tagged with it)"
            .to_string();
        return unhandled(ports, policy, alarm, now, token, why, report).await;
    }
    let mut retry = Vec::new();
    let mut ignored = Vec::new();
    for candidate in candidates {
        let decision = decide(&candidate, alarm, policy);
        let decision = match decision {
            Decision::Ignore(why) => {
                tracing::info!(target_id = %candidate.record_id(), why, "not protected now");
                report.ignored += 1;
                ignored.push(why);
                continue;
            }
            Decision::Wait(why) => {
                tracing::info!(target_id = %candidate.record_id(), why, "waiting for the stage to end");
                report.waiting += 1;
                retry.push(why);
                continue;
            }
            other => other,
        };
        match carry_out(ports, policy, alarm, &candidate, decision, now, token).await {
            Ok(Handled::New(outcome)) => count(&mut report, outcome),
            Ok(Handled::Before) => report.already_handled += 1,
            Err(GuardError::Retry(m)) => retry.push(m),
            Err(e) => return Err(e),
        }
    }
    if !retry.is_empty() {
        return Err(GuardError::Retry(retry.join("; ")));
    }
    if report
        == (GuardReport {
            ignored: report.ignored,
            ..GuardReport::default()
        })
    {
        let why = format!("nothing it protects can be rolled back now: {}", ignored.join("; "));
        return unhandled(ports, policy, alarm, now, token, why, report).await;
    }
    Ok(report)
}

fn count(report: &mut GuardReport, outcome: RollbackOutcome) {
    match outcome {
        RollbackOutcome::RolledBack => report.rolled_back += 1,
        RollbackOutcome::Refused => report.refused += 1,
        RollbackOutcome::Notified => report.notified += 1,
        RollbackOutcome::Unhandled => report.unhandled += 1,
    }
}

/// Records and tells, once per alarm transition, that the guard could not act on this ALARM, and why.
async fn unhandled(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    now: DateTime<Utc>,
    token: &str,
    why: String,
    mut report: GuardReport,
) -> Result<GuardReport, GuardError> {
    tracing::warn!(alarm = %alarm.key(), why, "ALARM not acted on: recorded and told");
    let candidate = Candidate {
        account: alarm.account.clone(),
        region: alarm.region.clone(),
        target: Target::Alarm {
            alarm_name: alarm.alarm_name.clone(),
            at: alarm.at,
        },
    };
    match carry_out(ports, policy, alarm, &candidate, Decision::Notify(why), now, token).await? {
        Handled::New(outcome) => count(&mut report, outcome),
        Handled::Before => report.already_handled += 1,
    }
    Ok(report)
}

enum Handled {
    New(RollbackOutcome),
    Before,
}

async fn carry_out(
    ports: &GuardPorts<'_>,
    policy: &GuardPolicy,
    alarm: &AlarmSignal,
    candidate: &Candidate,
    decision: Decision,
    now: DateTime<Utc>,
    token: &str,
) -> Result<Handled, GuardError> {
    let (action, why) = match &decision {
        Decision::Act(action) => (Some(action.clone()), String::new()),
        Decision::Notify(why) | Decision::AlreadyRolledBack(why) | Decision::Ignore(why) | Decision::Wait(why) => {
            (None, why.clone())
        }
    };
    let mut record = RollbackRecord {
        id: candidate.record_id(),
        account: candidate.account.clone(),
        region: candidate.region.clone(),
        target: candidate.clone(),
        alarm: alarm.key(),
        alarm_name: alarm.alarm_name.clone(),
        alarm_at: alarm.at,
        alarm_reason: alarm.reason.clone(),
        decided_at: now,
        action: action.clone(),
        outcome: None,
        acted_at: None,
        attempted_at: None,
        detail: why,
        restored_at: None,
        execution: candidate.execution(),
        claimed_by: token.to_string(),
        audited: false,
        notified: false,
    };
    let previous = match ports
        .store
        .claim(&record, token, now, now - policy.lease)
        .await
        .map_err(store_failure)?
    {
        Claim::Held => {
            return Err(GuardError::Retry(format!(
                "{} is being handled by another delivery; retried after its lease",
                record.id
            )))
        }
        Claim::Done(stored) => {
            let unfinished = !(stored.audited && stored.notified);
            if unfinished && stored.claimed_by != token && stored.decided_at >= now - policy.lease {
                return Err(GuardError::Retry(format!(
                    "{} was just decided by another delivery that is still auditing and notifying it",
                    record.id
                )));
            }
            finish_steps(ports, &stored).await?;
            return Ok(Handled::Before);
        }
        Claim::Won { previous } => previous,
    };
    // An earlier delivery of this incident released its claim, or died holding it: the incident started with its
    // alarm transition, and its request may have reached AWS.
    if let Some(previous) = &previous {
        if previous.alarm_at < record.alarm_at {
            record.alarm = previous.alarm.clone();
            record.alarm_name = previous.alarm_name.clone();
            record.alarm_at = previous.alarm_at;
            record.alarm_reason = previous.alarm_reason.clone();
        }
        // A released claim says whether it sent a request; a claim held until its lease ran out (its holder died)
        // may have sent one.
        let died_holding = !previous.claimed_by.is_empty() && previous.action.is_some();
        record.attempted_at = previous.attempted_at.or(died_holding.then_some(previous.decided_at));
    }
    record.outcome = Some(match decision {
        Decision::Act(action) => {
            match ports.actions.execute(&record.account, &record.region, &action).await {
                Ok(ActOutcome::Accepted { detail }) => {
                    record.acted_at = Some(now);
                    record.detail = detail;
                    RollbackOutcome::RolledBack
                }
                Ok(ActOutcome::Refused { code, message }) => {
                    record.detail = format!("{code}: {message}");
                    RollbackOutcome::Refused
                }
                Err(e) => {
                    // The answer is lost; the request may have reached AWS. Give the claim back with the time it
                    // was sent: the redelivery reads the target before sending again.
                    if matches!(e, GuardApiError::Transient(_)) {
                        record.attempted_at = Some(now);
                    }
                    record.detail = format!("{action}: {e}");
                    // Released: no holder.
                    record.claimed_by.clear();
                    if let Err(release) = ports.store.release(&record, token).await {
                        tracing::warn!(record = %record.id, error = %release, "claim not released; taken over after its lease");
                    }
                    let text = format!("{action} for {}: {e}", record.id);
                    return Err(match e {
                        GuardApiError::Transient(_) => GuardError::Retry(text),
                        GuardApiError::Permanent(_) => GuardError::Failed(text),
                    });
                }
            }
        }
        Decision::AlreadyRolledBack(what) => match record.attempted_at {
            // The lost answer's request took effect: the guard's rollback, timed from when it was sent.
            Some(sent) => {
                record.acted_at = Some(sent);
                record.action = previous.as_ref().and_then(|p| p.action.clone());
                record.detail = format!(
                    "the request sent at {} lost its answer but took effect: {what}",
                    sent.to_rfc3339_opts(SecondsFormat::Secs, true)
                );
                RollbackOutcome::RolledBack
            }
            None => {
                record.detail = format!("{what}, before the guard acted: nothing sent");
                RollbackOutcome::Notified
            }
        },
        _ if matches!(candidate.target, Target::Alarm { .. }) => RollbackOutcome::Unhandled,
        _ => RollbackOutcome::Notified,
    });
    tracing::info!(
        record = %record.id,
        outcome = record.outcome.map(RollbackOutcome::as_str),
        alarm = %record.alarm,
        "rollback decision carried out"
    );
    if !ports.store.finish(&record, token).await.map_err(store_failure)? {
        tracing::warn!(record = %record.id, "claim taken over before the outcome was stored");
    }
    finish_steps(ports, &record).await?;
    Ok(Handled::New(record.outcome.unwrap_or(RollbackOutcome::Notified)))
}

/// The audit entry and the notification of a finished record, each once.
async fn finish_steps(ports: &GuardPorts<'_>, record: &RollbackRecord) -> Result<(), GuardError> {
    if record.outcome.is_none() {
        return Ok(());
    }
    if !record.audited {
        ports
            .audit
            .append(audit_entry(record))
            .await
            .map_err(|e| GuardError::Retry(format!("audit entry of {}: {e}", record.id)))?;
        ports
            .store
            .mark(&record.id, Step::Audited)
            .await
            .map_err(store_failure)?;
    }
    if !record.notified {
        ports
            .notifier
            .publish(&rollback_notification(record))
            .await
            .map_err(|e| GuardError::Retry(format!("notification of {}: {e}", record.id)))?;
        ports
            .store
            .mark(&record.id, Step::Notified)
            .await
            .map_err(store_failure)?;
    }
    Ok(())
}

/// The audit entry of a decision: `rollback.*`, by [`GUARD_PRINCIPAL`], in the target's scope.
pub fn audit_entry(record: &RollbackRecord) -> NewAuditEntry {
    let action = match (record.outcome, &record.action) {
        (Some(RollbackOutcome::Refused), _) => action::REFUSED,
        (Some(RollbackOutcome::Unhandled), _) => action::UNHANDLED,
        (_, Some(a)) => a.audit_action(),
        (_, None) => action::NOTIFIED,
    };
    NewAuditEntry {
        scope: record.target.audit_scope(),
        at: record.decided_at,
        actor: GUARD_PRINCIPAL.to_string(),
        action: action.to_string(),
        subject: record.target.incident(),
        detail: json!({
            "record": record.id,
            "alarm": record.alarm,
            "alarm_at": record.alarm_at,
            // From the alarm to this decision: the automation-health latency of the `rollback` family.
            "started_at": record.alarm_at,
            "target": record.target.target_name(),
            "request": record.action.as_ref().map(ToString::to_string),
            "outcome": record.outcome.map(RollbackOutcome::as_str),
            "detail": record.detail,
        }),
    }
}

/// The chat and email message of a decision: what fired, what was done, AWS's answer.
pub fn rollback_notification(record: &RollbackRecord) -> Notification {
    let target = record.target.target_name();
    let (kind, pipeline) = match &record.target.target {
        Target::Deployment { .. } => (NotificationKind::DeploymentFailed, None),
        Target::Stage { pipeline, .. } => (NotificationKind::StageFailed, Some(pipeline.clone())),
        Target::Stack { .. } => (NotificationKind::StackRollback, None),
        Target::Alarm { .. } => (NotificationKind::DeploymentFailed, None),
    };
    let (severity, title, next) = match record.outcome {
        Some(RollbackOutcome::RolledBack) => (
            Severity::Critical,
            format!(":rewind: Alarm {} fired: rolled back {target}", record.alarm_name),
            "Watch the alarm return to OK, then find the cause before deploying again",
        ),
        Some(RollbackOutcome::Refused) => (
            Severity::Critical,
            format!(
                ":rotating_light: Alarm {} fired: AWS refused to roll back {target}",
                record.alarm_name
            ),
            "Roll back by hand: AWS's reason is above",
        ),
        Some(RollbackOutcome::Unhandled) => (
            Severity::Critical,
            format!(
                ":rotating_light: Alarm {} fired: the guard could not act on it",
                record.alarm_name
            ),
            "Check what the alarm protects and roll back by hand if a recent change is the cause",
        ),
        _ => (
            Severity::Warning,
            format!(
                ":warning: Alarm {} fired on {target}: not rolled back automatically",
                record.alarm_name
            ),
            "Decide whether to roll back by hand",
        ),
    };
    let mut lines = vec![format!(
        "Alarm *{}* went to ALARM at {}{}",
        record.alarm_name,
        record.alarm_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        record
            .alarm_reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    )];
    if let Some(action) = &record.action {
        lines.push(format!("Request: {action}"));
    }
    lines.push(format!(
        "{}: {}",
        match record.outcome {
            Some(RollbackOutcome::RolledBack) => "AWS accepted",
            Some(RollbackOutcome::Refused) => "AWS refused",
            Some(RollbackOutcome::Unhandled) => "Not acted on, because",
            _ => "Not acted on",
        },
        record.detail
    ));
    Notification {
        key: format!("rollback:{}", record.id),
        kind,
        severity,
        account: record.account.clone(),
        region: record.region.clone(),
        pipeline,
        thread: match &record.execution {
            Some(e) => format!("{}/{}", e.pipeline, e.execution_id),
            None => target.clone(),
        },
        title,
        lines,
        next_steps: vec![next.to_string()],
        link: None,
        resources: vec![format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{}",
            record.region, record.account, record.alarm_name
        )],
    }
}
