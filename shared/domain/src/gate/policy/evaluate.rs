//! Evaluating a policy against gathered facts into an explained decision.
//!
//! Every configured check is evaluated and explained, not only the first that blocks. Each says what it observed,
//! what it requires, and when it would pass; times are shown in the policy's zone, with its name.
//!
//! The outcome: **Fail** if any check fails (or cannot be evaluated and fails closed); else **Wait** if any check
//! waits, with a recheck at the earliest time one of them could pass (or in a minute when that is unknown); else
//! **Pass**. A wait turns into a failure once the gate has waited `max_wait` in total, and at once when a check
//! cannot pass before then: a window that opens, a freeze or a bake that ends, after the gate would have given up.

use std::fmt::Write as _;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::{OffsetName, Tz};
use serde::{Deserialize, Serialize};

use super::approvers::{authorise_approver, who_may_approve};
use super::model::{
    compact_secs, AlarmsCheck, ApprovalCheck, BakeCheck, ConcurrencyCheck, Freeze, FreezeBound, OnError, Policy,
    UpstreamCheck, Window,
};
use super::window::{freeze_span, freezes_at, is_ambiguous, is_open, next_closing, next_freeze, next_opening};

/// What the gate learned before evaluating. Each fact may be unavailable (`Err`, with why); a fact the policy does
/// not need may be left `None`. A fact the policy needs but that was not gathered (`None`) is a bug in the gate and
/// always fails closed.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub now: DateTime<Utc>,
    /// When this job was first evaluated (carried in the continuation token).
    pub first_evaluated_at: DateTime<Utc>,
    /// The named alarms and those carrying the policy's tags.
    pub alarms: Result<Vec<AlarmFact>, String>,
    /// When `bake.after_stage` last succeeded (in this execution, or in `bake.pipeline`); `Ok(None)`: not yet.
    pub bake_stage_succeeded_at: Option<Result<Option<DateTime<Utc>>, String>>,
    /// `bake.min_requests`'s metric, totalled from the stage's success to now.
    pub bake_requests: Option<Result<f64, String>>,
    /// When the upstream pipeline (or stage) last failed, if no success has followed that failure.
    pub upstream_unrestored_failure_at: Option<Result<Option<DateTime<Utc>>, String>>,
    /// The latest approval decision recorded for this execution and gate.
    pub approval: Option<Result<Option<ApprovalFact>, String>>,
    /// Other executions deploying to the same environment (and wave).
    pub deployments_in_progress: Option<Result<Vec<String>, String>>,
}

impl Facts {
    /// Facts with nothing gathered yet (no alarms, every optional fact `None`).
    pub fn new(now: DateTime<Utc>, first_evaluated_at: DateTime<Utc>) -> Facts {
        Facts {
            now,
            first_evaluated_at,
            alarms: Ok(Vec::new()),
            bake_stage_succeeded_at: None,
            bake_requests: None,
            upstream_unrestored_failure_at: None,
            approval: None,
            deployments_in_progress: None,
        }
    }
}

/// A CloudWatch alarm's current state and when it entered it (`StateUpdatedTimestamp`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmFact {
    pub name: String,
    pub state: AlarmState,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    Ok,
    Alarm,
    /// Counted as "not in ALARM", as CloudWatch's own composite alarms do.
    InsufficientData,
}

impl AlarmState {
    /// CloudWatch's `StateValue` text.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

impl std::str::FromStr for AlarmState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "OK" => Ok(AlarmState::Ok),
            "ALARM" => Ok(AlarmState::Alarm),
            "INSUFFICIENT_DATA" => Ok(AlarmState::InsufficientData),
            other => Err(format!("unknown alarm state {other:?}")),
        }
    }
}

/// A recorded approval or rejection. The principal comes from the authenticated caller, never from a request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalFact {
    pub principal_arn: String,
    /// The groups the principal belongs to.
    pub groups: Vec<String>,
    pub decision: ApprovalDecision,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    Approve,
    Reject,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Pass,
    /// Not yet: evaluate again at `recheck_at` (never later than when the gate gives up).
    Wait {
        recheck_at: DateTime<Utc>,
    },
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Window,
    Freeze,
    Alarms,
    Bake,
    Upstream,
    Approval,
    Concurrency,
    MaxWait,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Window => "window",
            CheckKind::Freeze => "freeze",
            CheckKind::Alarms => "alarms",
            CheckKind::Bake => "bake",
            CheckKind::Upstream => "upstream",
            CheckKind::Approval => "approval",
            CheckKind::Concurrency => "concurrency",
            CheckKind::MaxWait => "max_wait",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Pass,
    Wait,
    Fail,
    /// Could not be evaluated; blocks under `fail_closed`, is ignored under `fail_open` (the message says which).
    Error,
}

/// How one check stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub check: CheckKind,
    pub status: CheckStatus,
    pub observed: String,
    pub required: String,
    /// When the check would pass if nothing else changes (waiting checks), when known.
    pub earliest_pass: Option<DateTime<Utc>>,
    /// One line for an engineer: "bake time 1h12m of 2h; earliest 15:40 Europe/Berlin".
    pub message: String,
}

/// The outcome and every check's explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub checks: Vec<CheckResult>,
    /// One line: what the gate decided and why (the failure message of a failed job).
    pub summary: String,
}

impl Decision {
    /// One line per check, with ✓ (pass), … (wait), ✗ (fail) or ! (could not be evaluated), under a line with the
    /// outcome. For `tollgate gate explain` and chat.
    pub fn explain(&self) -> String {
        let word = match self.outcome {
            Outcome::Pass => "PASS",
            Outcome::Wait { .. } => "WAIT",
            Outcome::Fail => "FAIL",
        };
        let mut out = format!("{word}: {}\n", self.summary);
        for c in &self.checks {
            let symbol = match c.status {
                CheckStatus::Pass => "✓",
                CheckStatus::Wait => "…",
                CheckStatus::Fail => "✗",
                CheckStatus::Error => "!",
            };
            let _ = writeln!(out, "  {symbol} {:<12} {}", c.check.as_str(), c.message);
        }
        out
    }

    /// The result of one check, if the policy has it.
    pub fn check(&self, kind: CheckKind) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.check == kind)
    }
}

/// A check's result with what the outcome needs to know about it.
struct Eval {
    result: CheckResult,
    on_error: OnError,
    /// `earliest_pass` is a lower bound: the check cannot pass before it, whatever happens.
    certain: bool,
}

struct Ctx<'a> {
    policy: &'a Policy,
    tz: Tz,
    now: DateTime<Utc>,
}

/// When a check would be rechecked if it cannot say when it will pass.
const DEFAULT_RECHECK: TimeDelta = TimeDelta::minutes(1);

/// Evaluates every check of `policy` against `facts`.
pub fn evaluate(policy: &Policy, facts: &Facts) -> Decision {
    let ctx = Ctx {
        policy,
        tz: policy.zone(),
        now: facts.now,
    };
    let mut evals: Vec<Eval> = Vec::new();
    if let Some(windows) = &policy.windows {
        evals.push(window_check(&ctx, windows));
    }
    if let Some(freezes) = &policy.freezes {
        evals.push(freeze_check(&ctx, freezes));
    }
    if let Some(alarms) = &policy.alarms {
        evals.push(alarms_check(&ctx, alarms, &facts.alarms));
    }
    if let Some(bake) = &policy.bake {
        evals.push(bake_check(&ctx, bake, facts));
    }
    if let Some(upstream) = &policy.upstream {
        evals.push(upstream_check(&ctx, upstream, &facts.upstream_unrestored_failure_at));
    }
    if let Some(approval) = &policy.approval {
        evals.push(approval_check(&ctx, approval, &facts.approval));
    }
    if let Some(concurrency) = &policy.concurrency {
        evals.push(concurrency_check(&ctx, concurrency, &facts.deployments_in_progress));
    }

    let max_wait = policy.max_wait;
    let deadline = facts.first_evaluated_at + max_wait.to_chrono();
    let waited = (facts.now - facts.first_evaluated_at).max(TimeDelta::zero());

    // A wait that cannot end before the gate gives up is a failure now, not in `max_wait`.
    for e in &mut evals {
        let r = &mut e.result;
        if r.status == CheckStatus::Wait && e.certain && r.earliest_pass.is_some_and(|t| t > deadline) {
            r.status = CheckStatus::Fail;
            let _ = write!(
                r.message,
                "; that is after the gate gives up at {} (max_wait {max_wait})",
                ctx.at(deadline)
            );
        }
    }

    let waiting: Vec<&Eval> = evals.iter().filter(|e| e.result.status == CheckStatus::Wait).collect();
    let timed_out = !waiting.is_empty() && waited >= max_wait.to_chrono();
    let waited_text = elapsed(waited);
    let max_wait_result = if timed_out {
        CheckResult {
            check: CheckKind::MaxWait,
            status: CheckStatus::Fail,
            observed: format!("waited {waited_text} since {}", ctx.at(facts.first_evaluated_at)),
            required: format!("at most {max_wait}"),
            earliest_pass: None,
            message: format!(
                "gave up after waiting {waited_text} (max_wait {max_wait}); still waiting for {}",
                list_with_messages(&waiting)
            ),
        }
    } else {
        CheckResult {
            check: CheckKind::MaxWait,
            status: CheckStatus::Pass,
            observed: format!("waited {waited_text}"),
            required: format!("at most {max_wait}"),
            earliest_pass: None,
            message: format!("waited {waited_text} of {max_wait}; gives up at {}", ctx.at(deadline)),
        }
    };

    let blocking: Vec<&Eval> = evals
        .iter()
        .filter(|e| match e.result.status {
            CheckStatus::Fail => true,
            CheckStatus::Error => e.on_error == OnError::FailClosed,
            _ => false,
        })
        .collect();
    let ignored: Vec<&Eval> = evals
        .iter()
        .filter(|e| e.result.status == CheckStatus::Error && e.on_error == OnError::FailOpen)
        .collect();

    let (outcome, summary) = if !blocking.is_empty() || timed_out {
        let mut summary = String::from("failed: ");
        let mut parts = Vec::new();
        if !blocking.is_empty() {
            parts.push(list_with_messages(&blocking));
        }
        if timed_out {
            parts.push(format!("max_wait ({})", max_wait_result.message));
        } else if !waiting.is_empty() {
            parts.push(format!("also waiting for {}", list_kinds(&waiting)));
        }
        summary.push_str(&parts.join("; "));
        (Outcome::Fail, summary)
    } else if !waiting.is_empty() {
        let recheck_at = waiting
            .iter()
            .map(|e| e.result.earliest_pass.unwrap_or(ctx.now + DEFAULT_RECHECK))
            .min()
            .unwrap_or(ctx.now + DEFAULT_RECHECK)
            .min(deadline);
        let summary = format!(
            "waiting for {}; recheck at {}",
            list_with_messages(&waiting),
            ctx.at(recheck_at)
        );
        (Outcome::Wait { recheck_at }, summary)
    } else {
        let total = evals.len() + 1;
        let summary = if ignored.is_empty() {
            format!("passed: all {total} checks pass")
        } else {
            format!(
                "passed: {} of {total} checks pass; {} could not be evaluated and {} ignored (on_error: fail_open)",
                total - ignored.len(),
                list_kinds(&ignored),
                if ignored.len() == 1 { "is" } else { "are" }
            )
        };
        (Outcome::Pass, summary)
    };

    let mut checks: Vec<CheckResult> = evals.into_iter().map(|e| e.result).collect();
    checks.push(max_wait_result);
    Decision {
        outcome,
        checks,
        summary,
    }
}

fn list_kinds(evals: &[&Eval]) -> String {
    join_and(evals.iter().map(|e| e.result.check.as_str().to_string()).collect())
}

fn list_with_messages(evals: &[&Eval]) -> String {
    join_and(
        evals
            .iter()
            .map(|e| format!("{} ({})", e.result.check.as_str(), e.result.message))
            .collect(),
    )
}

fn join_and(mut items: Vec<String>) -> String {
    match items.len() {
        0 => String::new(),
        1 => items.remove(0),
        _ => {
            let last = items.pop().unwrap_or_default();
            format!("{} and {last}", items.join(", "))
        }
    }
}

// -------------------------------------------------------------------------------------------------------------------
// Formatting.

/// An elapsed time the way the policy writes durations, to the minute once it is a minute or more: `1h12m`, `45s`.
fn elapsed(d: TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    if secs >= 60 {
        compact_secs(secs - secs % 60)
    } else {
        format!("{secs}s")
    }
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n:.2}")
    }
}

impl Ctx<'_> {
    /// `15:40 Europe/Berlin` today, `Mon 09:00 Europe/Berlin` within a week, else with the date. A wall time that
    /// happens twice (the autumn hour) also shows its abbreviation.
    fn at(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        let days = (local.date_naive() - self.now.with_timezone(&self.tz).date_naive()).num_days();
        let format = match days {
            0 => "%H:%M",
            -6..=6 => "%a %H:%M",
            _ => "%Y-%m-%d %H:%M",
        };
        self.stamp(t, format)
    }

    /// Like [`Ctx::at`], rounded up to the minute: an "earliest" time is never shown before it is true.
    fn at_ceil(&self, t: DateTime<Utc>) -> String {
        let secs = t.timestamp().rem_euclid(60);
        let nanos = t.timestamp_subsec_nanos();
        if secs == 0 && nanos == 0 {
            return self.at(t);
        }
        let up = t + TimeDelta::seconds(60 - secs) - TimeDelta::nanoseconds(i64::from(nanos));
        self.at(up)
    }

    /// Always with the date: `2027-01-04 23:59 Europe/Berlin`.
    fn at_full(&self, t: DateTime<Utc>) -> String {
        self.stamp(t, "%Y-%m-%d %H:%M")
    }

    fn stamp(&self, t: DateTime<Utc>, format: &str) -> String {
        let local = t.with_timezone(&self.tz);
        let mut out = format!("{} {}", local.format(format), self.tz.name());
        if is_ambiguous(self.tz, t) {
            if let Some(abbreviation) = local.offset().abbreviation() {
                let _ = write!(out, " ({abbreviation})");
            }
        }
        out
    }

    fn eval(&self, check: CheckKind, status: CheckStatus, observed: String, required: String, message: String) -> Eval {
        Eval {
            result: CheckResult {
                check,
                status,
                observed,
                required,
                earliest_pass: None,
                message,
            },
            on_error: self.policy.on_error,
            certain: false,
        }
    }

    /// A check that could not be evaluated, resolved by its `on_error`.
    fn error(&self, check: CheckKind, on_error: OnError, required: String, why: String) -> Eval {
        let message = match on_error {
            OnError::FailClosed => format!("could not evaluate: {why}; failing closed (on_error: fail_closed)"),
            OnError::FailOpen => format!("could not evaluate: {why}; ignored (on_error: fail_open)"),
        };
        let mut e = self.eval(check, CheckStatus::Error, "unknown".into(), required, message);
        e.on_error = on_error;
        e
    }

    /// A fact the policy needs was not gathered: a bug in the gate, which never opens it.
    fn not_gathered(&self, check: CheckKind, required: String, fact: &str) -> Eval {
        let mut e = self.eval(
            check,
            CheckStatus::Error,
            "unknown".into(),
            required,
            format!(
                "could not evaluate: the gate did not gather {fact} (a bug); failing closed whatever on_error says"
            ),
        );
        e.on_error = OnError::FailClosed;
        e
    }
}

// -------------------------------------------------------------------------------------------------------------------
// The checks.

fn describe_windows(windows: &[Window]) -> String {
    windows
        .iter()
        .map(|w| {
            let days: Vec<String> = w.days.iter().map(|d| d.0.to_string()).collect();
            format!("{} {}–{}", days.join(" "), w.from, w.to)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn window_check(ctx: &Ctx, windows: &[Window]) -> Eval {
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

fn freeze_name(f: &Freeze) -> String {
    match &f.reason {
        Some(reason) if !reason.trim().is_empty() => format!("{} ({})", f.name, reason.trim()),
        _ => f.name.clone(),
    }
}

/// The end of a freeze as written: a date `to` includes its whole day, shown as 23:59.
fn freeze_end(ctx: &Ctx, f: &Freeze) -> String {
    match (&f.to, freeze_span(f, ctx.tz)) {
        (FreezeBound::Date(d), _) => format!("{} 23:59 {}", d.format("%Y-%m-%d"), ctx.tz.name()),
        (_, Some((_, end))) => ctx.at_full(end),
        (_, None) => f.to.to_string(),
    }
}

fn freeze_check(ctx: &Ctx, freezes: &[Freeze]) -> Eval {
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
struct AlarmStanding {
    status: CheckStatus,
    message: String,
    earliest: Option<DateTime<Utc>>,
}

fn alarms_check(ctx: &Ctx, check: &AlarmsCheck, facts: &Result<Vec<AlarmFact>, String>) -> Eval {
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

fn bake_check(ctx: &Ctx, check: &BakeCheck, facts: &Facts) -> Eval {
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

fn upstream_check(ctx: &Ctx, check: &UpstreamCheck, fact: &Option<Result<Option<DateTime<Utc>>, String>>) -> Eval {
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

fn approval_check(ctx: &Ctx, check: &ApprovalCheck, fact: &Option<Result<Option<ApprovalFact>, String>>) -> Eval {
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

fn concurrency_check(ctx: &Ctx, check: &ConcurrencyCheck, fact: &Option<Result<Vec<String>, String>>) -> Eval {
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
