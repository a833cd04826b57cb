//! The checks of a policy, each evaluated and explained: windows, freezes, alarms, bake time, upstream stages,
//! approvals, concurrency.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};

use super::approvers::{authorise_approver, who_may_approve};
use super::model::{
    AlarmsCheck, ApprovalCheck, BakeCheck, ConcurrencyCheck, Freeze, FreezeBound, OnError, UpstreamCheck, Window,
};
use super::window::{freeze_span, freezes_at, is_open, next_closing, next_freeze, next_opening};

use super::evaluate::*;

// -------------------------------------------------------------------------------------------------------------------
// The checks.

pub(super) fn describe_windows(windows: &[Window]) -> String {
    windows
        .iter()
        .map(|w| {
            let days: Vec<String> = w.days.iter().map(|d| d.0.to_string()).collect();
            format!("{} {}–{}", days.join(" "), w.from, w.to)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub(super) fn window_check(ctx: &Ctx, windows: &[Window]) -> Eval {
    let observed = ctx.stamp(ctx.now, "%a %H:%M");
    let required = format!("inside a window: {}", describe_windows(windows));
    if is_open(windows, ctx.tz, ctx.now) {
        let message = match next_closing(windows, ctx.tz, ctx.now) {
            Some(close) => format!("window open until {}", ctx.at(close)),
            None => "window open (the windows cover the whole week)".into(),
        };
        return ctx.eval(CheckKind::Window, CheckStatus::Pass, observed, required, message);
    }
    match next_opening(windows, ctx.tz, ctx.now) {
        Some(open) => {
            let mut e = ctx.eval(
                CheckKind::Window,
                CheckStatus::Wait,
                observed,
                required,
                format!("window closed: next opens {}", ctx.at(open)),
            );
            e.result.earliest_pass = Some(open);
            e.certain = true;
            e
        }
        None => ctx.eval(
            CheckKind::Window,
            CheckStatus::Fail,
            observed,
            required,
            "window closed, and no window opens in the next two weeks".into(),
        ),
    }
}

pub(super) fn freeze_name(f: &Freeze) -> String {
    match &f.reason {
        Some(reason) if !reason.trim().is_empty() => format!("{} ({})", f.name, reason.trim()),
        _ => f.name.clone(),
    }
}

/// The end of a freeze as written: a date `to` includes its whole day, shown as 23:59.
pub(super) fn freeze_end(ctx: &Ctx, f: &Freeze) -> String {
    match (&f.to, freeze_span(f, ctx.tz)) {
        (FreezeBound::Date(d), _) => format!("{} 23:59 {}", d.format("%Y-%m-%d"), ctx.tz.name()),
        (_, Some((_, end))) => ctx.at_full(end),
        (_, None) => f.to.to_string(),
    }
}

pub(super) fn freeze_check(ctx: &Ctx, freezes: &[Freeze]) -> Eval {
    let observed = ctx.at_full(ctx.now);
    let required = if freezes.is_empty() {
        "outside every freeze (none listed)".to_string()
    } else {
        format!(
            "outside every freeze: {}",
            freezes
                .iter()
                .map(|f| format!("{} {} to {}", f.name, f.from, f.to))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    match freezes_at(freezes, ctx.tz, ctx.now) {
        Some((chain, end)) => {
            let parts: Vec<String> = chain
                .iter()
                .map(|f| format!("freeze {} until {}", freeze_name(f), freeze_end(ctx, f)))
                .collect();
            let mut e = ctx.eval(
                CheckKind::Freeze,
                CheckStatus::Wait,
                observed,
                required,
                parts.join(", then "),
            );
            e.result.earliest_pass = Some(end);
            e.certain = true;
            e
        }
        None => {
            let mut message = String::from("no freeze in effect");
            if let Some((f, start)) = next_freeze(freezes, ctx.tz, ctx.now) {
                let _ = write!(message, "; next: {} from {}", f.name, ctx.at_full(start));
            }
            ctx.eval(CheckKind::Freeze, CheckStatus::Pass, observed, required, message)
        }
    }
}

/// One alarm's standing.
pub(super) struct AlarmStanding {
    pub(super) status: CheckStatus,
    pub(super) message: String,
    pub(super) earliest: Option<DateTime<Utc>>,
}

pub(super) fn alarms_check(ctx: &Ctx, check: &AlarmsCheck, facts: &Result<Vec<AlarmFact>, String>) -> Eval {
    let on_error = check.on_error.unwrap_or(ctx.policy.on_error);
    let mut required = String::from("not in ALARM");
    if let Some(ok_for) = check.ok_for {
        let _ = write!(required, ", and out of ALARM for at least {ok_for}");
    }
    match check.wait {
        Some(wait) => {
            let _ = write!(required, "; an alarm in ALARM may wait {wait}");
        }
        None => required.push_str("; an alarm in ALARM fails at once"),
    }
    let facts = match facts {
        Ok(f) => f,
        Err(why) => {
            return ctx.error(
                CheckKind::Alarms,
                on_error,
                required,
                format!("cannot read alarms: {why}"),
            )
        }
    };

    let mut standings: Vec<AlarmStanding> = Vec::new();
    for name in &check.names {
        if !facts.iter().any(|a| &a.name == name) {
            standings.push(AlarmStanding {
                status: CheckStatus::Error,
                message: format!("alarm {name} not found"),
                earliest: None,
            });
        }
    }
    if check.names.is_empty() && facts.is_empty() {
        let tags: Vec<String> = check.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        standings.push(AlarmStanding {
            status: CheckStatus::Error,
            message: format!("no alarm carries the tags {}", tags.join(", ")),
            earliest: None,
        });
    }
    let mut observed: Vec<String> = Vec::new();
    for alarm in facts {
        let held = (ctx.now - alarm.since).max(TimeDelta::zero());
        observed.push(format!(
            "{}: {} for {}",
            alarm.name,
            alarm.state.as_str(),
            elapsed(held)
        ));
        let since = ctx.at(alarm.since);
        let standing = match alarm.state {
            AlarmState::Alarm => match check.wait {
                Some(wait) if held < wait.to_chrono() => AlarmStanding {
                    status: CheckStatus::Wait,
                    message: format!(
                        "alarm {} in ALARM since {since} ({} of {wait} allowed)",
                        alarm.name,
                        elapsed(held)
                    ),
                    earliest: None,
                },
                Some(wait) => AlarmStanding {
                    status: CheckStatus::Fail,
                    message: format!(
                        "alarm {} in ALARM since {since} ({}, longer than the {wait} allowed)",
                        alarm.name,
                        elapsed(held)
                    ),
                    earliest: None,
                },
                None => AlarmStanding {
                    status: CheckStatus::Fail,
                    message: format!("alarm {} in ALARM since {since}", alarm.name),
                    earliest: None,
                },
            },
            AlarmState::Ok | AlarmState::InsufficientData => match check.ok_for {
                Some(ok_for) if held < ok_for.to_chrono() => {
                    let earliest = alarm.since + ok_for.to_chrono();
                    AlarmStanding {
                        status: CheckStatus::Wait,
                        message: format!(
                            "alarm {} {} since {since} ({} of the {ok_for} required); earliest {}",
                            alarm.name,
                            alarm.state.as_str(),
                            elapsed(held),
                            ctx.at_ceil(earliest)
                        ),
                        earliest: Some(earliest),
                    }
                }
                _ => AlarmStanding {
                    status: CheckStatus::Pass,
                    message: String::new(),
                    earliest: None,
                },
            },
        };
        standings.push(standing);
    }

    let count = |s: CheckStatus| standings.iter().filter(|a| a.status == s).count();
    let status = if count(CheckStatus::Fail) > 0 {
        CheckStatus::Fail
    } else if count(CheckStatus::Error) > 0 && on_error == OnError::FailClosed {
        CheckStatus::Error
    } else if count(CheckStatus::Wait) > 0 {
        CheckStatus::Wait
    } else if count(CheckStatus::Error) > 0 {
        CheckStatus::Error
    } else {
        CheckStatus::Pass
    };
    let problems: Vec<&str> = standings
        .iter()
        .filter(|a| a.status != CheckStatus::Pass)
        .map(|a| a.message.as_str())
        .collect();
    let mut message = if problems.is_empty() {
        let names: Vec<&str> = facts.iter().map(|a| a.name.as_str()).collect();
        let mut m = format!(
            "{} alarm{} out of ALARM",
            facts.len(),
            if facts.len() == 1 { "" } else { "s" }
        );
        if let Some(ok_for) = check.ok_for {
            let _ = write!(m, " for at least {ok_for}");
        }
        let _ = write!(m, ": {}", names.join(", "));
        m
    } else {
        problems.join("; ")
    };
    if status == CheckStatus::Error || (count(CheckStatus::Error) > 0 && on_error == OnError::FailOpen) {
        let suffix = match on_error {
            OnError::FailClosed => "; failing closed (on_error: fail_closed)",
            OnError::FailOpen => "; missing alarms ignored (on_error: fail_open)",
        };
        message.push_str(suffix);
    }
    // The check passes when every waiting alarm does; known only if each waiting alarm's time is.
    let waits: Vec<Option<DateTime<Utc>>> = standings
        .iter()
        .filter(|a| a.status == CheckStatus::Wait)
        .map(|a| a.earliest)
        .collect();
    let earliest = if status == CheckStatus::Wait && waits.iter().all(Option::is_some) {
        waits.into_iter().flatten().max()
    } else {
        None
    };
    let observed = if observed.is_empty() {
        "no alarms".to_string()
    } else {
        observed.join("; ")
    };
    let mut e = ctx.eval(CheckKind::Alarms, status, observed, required, message);
    e.on_error = on_error;
    e.result.earliest_pass = earliest;
    e.certain = earliest.is_some();
    e
}

pub(super) fn bake_check(ctx: &Ctx, check: &BakeCheck, facts: &Facts) -> Eval {
    let on_error = check.on_error.unwrap_or(ctx.policy.on_error);
    let stage = match &check.pipeline {
        Some(p) => format!("stage {} of {p}", check.after_stage),
        None => format!("stage {}", check.after_stage),
    };
    let duration = check.duration;
    let mut required = format!("{duration} since {stage} succeeded");
    if let Some(m) = &check.min_requests {
        let _ = write!(
            required,
            ", with at least {} {} ({} {})",
            number(m.at_least),
            m.metric,
            m.statistic.as_str(),
            m.namespace
        );
    }
    let succeeded = match &facts.bake_stage_succeeded_at {
        None => return ctx.not_gathered(CheckKind::Bake, required, "when the bake stage succeeded"),
        Some(Err(why)) => {
            return ctx.error(
                CheckKind::Bake,
                on_error,
                required,
                format!("cannot tell when {stage} succeeded: {why}"),
            )
        }
        Some(Ok(None)) => {
            let earliest = ctx.now + duration.to_chrono();
            let mut e = ctx.eval(
                CheckKind::Bake,
                CheckStatus::Wait,
                format!("{stage} has not succeeded"),
                required,
                format!(
                    "{stage} has not succeeded yet; the {duration} bake starts when it does (earliest {})",
                    ctx.at_ceil(earliest)
                ),
            );
            e.on_error = on_error;
            e.result.earliest_pass = Some(earliest);
            e.certain = true;
            return e;
        }
        Some(Ok(Some(t))) => *t,
    };
    let baked = (ctx.now - succeeded).max(TimeDelta::zero());
    let observed = format!("{} since {stage} succeeded at {}", elapsed(baked), ctx.at(succeeded));
    if baked < duration.to_chrono() {
        let earliest = succeeded + duration.to_chrono();
        let mut e = ctx.eval(
            CheckKind::Bake,
            CheckStatus::Wait,
            observed,
            required,
            format!(
                "bake time {} of {duration}; earliest {}",
                elapsed(baked),
                ctx.at_ceil(earliest)
            ),
        );
        e.on_error = on_error;
        e.result.earliest_pass = Some(earliest);
        e.certain = true;
        return e;
    }
    let Some(m) = &check.min_requests else {
        let mut e = ctx.eval(
            CheckKind::Bake,
            CheckStatus::Pass,
            observed,
            required,
            format!("bake time {} of {duration}", elapsed(baked)),
        );
        e.on_error = on_error;
        return e;
    };
    let requests = match &facts.bake_requests {
        None => return ctx.not_gathered(CheckKind::Bake, required, "the bake's request count"),
        Some(Err(why)) => {
            return ctx.error(
                CheckKind::Bake,
                on_error,
                required,
                format!("cannot read {} {}: {why}", m.namespace, m.metric),
            )
        }
        Some(Ok(n)) if !n.is_finite() || *n < 0.0 => {
            return ctx.error(
                CheckKind::Bake,
                on_error,
                required,
                format!("{} {} returned {n}", m.namespace, m.metric),
            )
        }
        Some(Ok(n)) => *n,
    };
    let observed = format!("{observed}; {} {}", number(requests), m.metric);
    let mut e = if requests >= m.at_least {
        ctx.eval(
            CheckKind::Bake,
            CheckStatus::Pass,
            observed,
            required,
            format!(
                "bake time {} of {duration} with {} {} (at least {})",
                elapsed(baked),
                number(requests),
                m.metric,
                number(m.at_least)
            ),
        )
    } else {
        ctx.eval(
            CheckKind::Bake,
            CheckStatus::Fail,
            observed,
            required,
            format!(
                "bake time {} of {duration} but only {} {} during it (at least {} required): too little traffic \
                 for the bake to count",
                elapsed(baked),
                number(requests),
                m.metric,
                number(m.at_least)
            ),
        )
    };
    e.on_error = on_error;
    e
}

pub(super) fn upstream_check(
    ctx: &Ctx,
    check: &UpstreamCheck,
    fact: &Option<Result<Option<DateTime<Utc>>, String>>,
) -> Eval {
    let on_error = check.on_error.unwrap_or(ctx.policy.on_error);
    let what = match &check.stage {
        Some(stage) => format!("{} / {stage}", check.pipeline),
        None => check.pipeline.clone(),
    };
    let window = check.no_unrestored_failure_for;
    let required = format!("no unrestored failure of {what} in the last {window}");
    let failed_at = match fact {
        None => return ctx.not_gathered(CheckKind::Upstream, required, "the upstream's failures"),
        Some(Err(why)) => {
            return ctx.error(
                CheckKind::Upstream,
                on_error,
                required,
                format!("cannot read {what}'s executions: {why}"),
            )
        }
        Some(Ok(t)) => *t,
    };
    let mut e = match failed_at {
        None => ctx.eval(
            CheckKind::Upstream,
            CheckStatus::Pass,
            "no unrestored failure".into(),
            required,
            format!("{what} has no unrestored failure"),
        ),
        Some(t) => {
            let ago = (ctx.now - t).max(TimeDelta::zero());
            let observed = format!("failed at {}, not restored ({} ago)", ctx.at(t), elapsed(ago));
            if ago < window.to_chrono() {
                // A fix upstream restores it sooner; otherwise the failure leaves the look-back window.
                let mut e = ctx.eval(
                    CheckKind::Upstream,
                    CheckStatus::Wait,
                    observed,
                    required,
                    format!(
                        "{what} failed at {} and is not restored ({} ago; a failure blocks for {window} unless \
                         restored)",
                        ctx.at(t),
                        elapsed(ago)
                    ),
                );
                e.result.earliest_pass = Some(t + window.to_chrono());
                e
            } else {
                ctx.eval(
                    CheckKind::Upstream,
                    CheckStatus::Pass,
                    observed,
                    required,
                    format!(
                        "{what} failed at {} and is not restored, but that is {} ago, more than {window}",
                        ctx.at(t),
                        elapsed(ago)
                    ),
                )
            }
        }
    };
    e.on_error = on_error;
    e
}

pub(super) fn approval_check(
    ctx: &Ctx,
    check: &ApprovalCheck,
    fact: &Option<Result<Option<ApprovalFact>, String>>,
) -> Eval {
    let on_error = check.on_error.unwrap_or(ctx.policy.on_error);
    let who = who_may_approve(ctx.policy).unwrap_or_default();
    let required = if check.reason_required {
        format!("an approval with a reason by {who}")
    } else {
        format!("an approval by {who}")
    };
    let approval = match fact {
        None => return ctx.not_gathered(CheckKind::Approval, required, "the approval"),
        Some(Err(why)) => {
            return ctx.error(
                CheckKind::Approval,
                on_error,
                required,
                format!("cannot read approvals: {why}"),
            )
        }
        Some(Ok(a)) => a,
    };
    let reason = |a: &ApprovalFact| {
        a.reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
    };
    let (status, observed, message) = match approval {
        None => (
            CheckStatus::Wait,
            "no decision yet".to_string(),
            format!("waiting for {required}"),
        ),
        Some(a) => {
            let by = format!("{} at {}", a.principal_arn, ctx.at(a.at));
            match a.decision {
                ApprovalDecision::Reject => (
                    CheckStatus::Fail,
                    format!("rejected by {by}"),
                    format!(
                        "rejected by {by}: {}",
                        reason(a).unwrap_or_else(|| "no reason given".into())
                    ),
                ),
                ApprovalDecision::Approve => {
                    let observed = format!("approved by {by}");
                    // Membership is the policy's, resolved now: the groups stored with the approval are a record of
                    // what was resolved when it was made, not a claim the gate trusts.
                    let authorised = authorise_approver(ctx.policy, &a.principal_arn);
                    let authorised_by = authorised.as_ref().ok().map(|how| how.to_string());
                    match (authorised_by, reason(a)) {
                        (None, _) => {
                            let message = authorised.err().map(|r| r.message).unwrap_or_default();
                            (CheckStatus::Fail, observed, message)
                        }
                        (Some(_), None) if check.reason_required => (
                            CheckStatus::Fail,
                            observed,
                            format!(
                                "approval by {by} has no reason; this policy requires one (approve again \
                                 with a reason)"
                            ),
                        ),
                        (Some(how), Some(r)) => (CheckStatus::Pass, observed, format!("approved by {by} ({how}): {r}")),
                        (Some(how), None) => (CheckStatus::Pass, observed, format!("approved by {by} ({how})")),
                    }
                }
            }
        }
    };
    let mut e = ctx.eval(CheckKind::Approval, status, observed, required, message);
    e.on_error = on_error;
    e
}

pub(super) fn concurrency_check(
    ctx: &Ctx,
    check: &ConcurrencyCheck,
    fact: &Option<Result<Vec<String>, String>>,
) -> Eval {
    let on_error = check.on_error.unwrap_or(ctx.policy.on_error);
    let target = match &check.wave {
        Some(wave) => format!("{} wave {wave}", check.environment),
        None => check.environment.clone(),
    };
    let required = format!("no other deployment to {target} in progress");
    let others = match fact {
        None => return ctx.not_gathered(CheckKind::Concurrency, required, "the deployments in progress"),
        Some(Err(why)) => {
            return ctx.error(
                CheckKind::Concurrency,
                on_error,
                required,
                format!("cannot list deployments in progress: {why}"),
            )
        }
        Some(Ok(others)) => others,
    };
    let mut e = if others.is_empty() {
        ctx.eval(
            CheckKind::Concurrency,
            CheckStatus::Pass,
            "none in progress".into(),
            required,
            format!("no other deployment to {target} in progress"),
        )
    } else {
        let n = others.len();
        ctx.eval(
            CheckKind::Concurrency,
            CheckStatus::Wait,
            others.join(", "),
            required,
            format!(
                "{n} other deployment{} to {target} in progress: {}",
                if n == 1 { "" } else { "s" },
                others.join(", ")
            ),
        )
    };
    e.on_error = on_error;
    e
}
