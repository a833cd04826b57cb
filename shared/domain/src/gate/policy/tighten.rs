//! The effective policy: the organisation baseline merged with a pipeline's own policy, which may only add checks or
//! tighten them. Every loosening is refused with the field it is in (docs/policy.md, "The organisation baseline").
//!
//! The rule for each field: a field the pipeline's policy does not write takes the baseline's value; a field it
//! writes must be at least as strict as the baseline's, and then its value is the effective one.

use std::collections::BTreeMap;

use chrono::Weekday as ChronoWeekday;

use super::baseline::{Applicable, ErrorCheck};
use super::error::{PolicyError, PolicyErrorKind};
use super::model::{
    AlarmsCheck, ApprovalCheck, ArnPattern, BakeCheck, ConcurrencyCheck, Freeze, FreezeBound, GroupMember, Groups,
    OnError, Policy, UpstreamCheck, Window,
};
use super::parse::{locate, render_path, Seg, Target};
use super::window::freeze_span;

/// One way the pipeline's policy loosens the baseline: the field (in the pipeline's policy) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loosening {
    pub(crate) path: Vec<Seg>,
    pub message: String,
}

impl Loosening {
    /// The field path, as `approval.on_error`.
    pub fn field(&self) -> String {
        render_path(&self.path).unwrap_or_default()
    }
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn at(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| key(k)).collect()
}

struct Merge<'a> {
    base: &'a Applicable<'a>,
    out: Vec<Loosening>,
}

impl Merge<'_> {
    fn refuse(&mut self, path: Vec<Seg>, message: String) {
        self.out.push(Loosening {
            path,
            message: format!("{message} (required by {})", self.base.describe()),
        });
    }
}

/// The effective policy of a stage, or every loosening (each naming its field). The effective policy keeps the
/// pipeline policy's name; each check carries its `on_error` explicitly.
pub fn effective_policy(base: &Applicable<'_>, pipeline: &Policy) -> Result<Policy, Vec<Loosening>> {
    let b = base.policy;
    let p = pipeline;
    let mut m = Merge { base, out: Vec::new() };

    // max_wait: a longer wait lets a deployment through later than the baseline allows.
    if p.max_wait > b.max_wait {
        m.refuse(
            at(&["max_wait"]),
            format!(
                "{} is longer than the baseline's {}: a gate may give up sooner, never later",
                p.max_wait, b.max_wait
            ),
        );
    }

    // on_error: the policy's default for its checks.
    let top_loosened = p.on_error == OnError::FailOpen
        && b.on_error == OnError::FailClosed
        && !ErrorCheck::ALL.iter().all(|c| base.allows_fail_open(*c));
    if top_loosened {
        m.refuse(
            at(&["on_error"]),
            format!(
                "fail_open, but the baseline fails closed; set `<check>.on_error: fail_open` only on the checks the \
                 baseline allows ({})",
                allowed_list(base)
            ),
        );
    }
    let on_error = if p.on_error == OnError::FailOpen && b.on_error == OnError::FailOpen {
        OnError::FailOpen
    } else {
        OnError::FailClosed
    };

    // The zone: the baseline's windows stay in the baseline's zone; both sets of windows must share one.
    let (zone, timezone) = match (&b.windows, &p.windows) {
        (Some(_), Some(_)) if b.zone() != p.zone() => {
            m.refuse(
                at(&["timezone"]),
                format!(
                    "{} differs from the baseline's {}: windows can only be narrowed in the baseline's zone",
                    p.zone().name(),
                    b.zone().name()
                ),
            );
            (b.zone(), b.timezone)
        }
        (Some(_), _) => (b.zone(), b.timezone),
        (None, Some(_)) => (p.zone(), p.timezone),
        (None, None) => match (p.timezone, b.timezone) {
            (Some(t), _) => (t.0, Some(t)),
            (None, t) => (b.zone(), t),
        },
    };

    let windows = match (&b.windows, &p.windows) {
        (None, w) => w.clone(),
        (Some(bw), None) => Some(bw.clone()),
        (Some(bw), Some(pw)) => {
            for (i, w) in pw.iter().enumerate() {
                for day in &w.days {
                    if !inside(bw, day.0, w.from.minutes(), w.to.minutes()) {
                        m.refuse(
                            vec![key("windows"), Seg::Index(i)],
                            format!(
                                "opens {day} {}–{}, outside the baseline's windows ({}): a policy may only narrow \
                                 them",
                                w.from,
                                w.to,
                                describe_windows(bw)
                            ),
                        );
                        break;
                    }
                }
            }
            Some(pw.clone())
        }
    };

    // Freezes add up; a freeze written in another zone than the effective one keeps its instants.
    let mut freezes: Vec<Freeze> = Vec::new();
    for (policy, list) in [(b, &b.freezes), (p, &p.freezes)] {
        for f in list.iter().flatten() {
            let f = if policy.zone() == zone {
                f.clone()
            } else {
                in_instants(f, policy.zone())
            };
            // The baseline's freeze restated in the policy (or in an effective policy merged again) counts once.
            if !freezes.contains(&f) {
                freezes.push(f);
            }
        }
    }
    let freezes = (b.freezes.is_some() || p.freezes.is_some()).then_some(freezes);

    let alarms = match (&b.alarms, &p.alarms) {
        (None, None) => None,
        (Some(ba), None) => Some(with_on_error(ba.clone(), ba.on_error.unwrap_or(b.on_error))),
        (None, Some(pa)) => Some(AlarmsCheck {
            on_error: Some(pa.on_error.unwrap_or(p.on_error)),
            ..pa.clone()
        }),
        (Some(ba), Some(pa)) => Some(merge_alarms(&mut m, b, p, ba, pa, top_loosened)),
    };

    let bake = match (&b.bake, &p.bake) {
        (None, None) => None,
        (Some(bb), None) => Some(BakeCheck {
            on_error: Some(bb.on_error.unwrap_or(b.on_error)),
            ..bb.clone()
        }),
        (None, Some(pb)) => Some(BakeCheck {
            on_error: Some(pb.on_error.unwrap_or(p.on_error)),
            ..pb.clone()
        }),
        (Some(bb), Some(pb)) => {
            if pb.after_stage != bb.after_stage {
                m.refuse(
                    at(&["bake", "after_stage"]),
                    format!(
                        "{:?} is not the baseline's bake stage {:?}: a policy may lengthen the baseline's bake, not \
                         move it",
                        pb.after_stage, bb.after_stage
                    ),
                );
            }
            if pb.pipeline != bb.pipeline {
                m.refuse(
                    at(&["bake", "pipeline"]),
                    format!(
                        "{} is not the baseline's bake pipeline {}",
                        pb.pipeline.as_deref().unwrap_or("(this pipeline)"),
                        bb.pipeline.as_deref().unwrap_or("(this pipeline)")
                    ),
                );
            }
            if pb.duration < bb.duration {
                m.refuse(
                    at(&["bake", "duration"]),
                    format!(
                        "{} is shorter than the baseline's {}: a bake may only be longer",
                        pb.duration, bb.duration
                    ),
                );
            }
            let min_requests = match (&bb.min_requests, &pb.min_requests) {
                (None, r) => r.clone(),
                (Some(br), None) => Some(br.clone()),
                (Some(br), Some(pr)) => {
                    let same_metric = pr.namespace == br.namespace
                        && pr.metric == br.metric
                        && pr.dimensions == br.dimensions
                        && pr.statistic == br.statistic;
                    if !same_metric {
                        m.refuse(
                            at(&["bake", "min_requests"]),
                            format!(
                                "measures {} {}, not the baseline's {} {} (with the same dimensions and statistic): \
                                 a policy may raise the baseline's floor, not measure something else",
                                pr.namespace, pr.metric, br.namespace, br.metric
                            ),
                        );
                    } else if pr.at_least < br.at_least {
                        m.refuse(
                            at(&["bake", "min_requests", "at_least"]),
                            format!(
                                "{} is lower than the baseline's {}: the request floor may only be raised",
                                pr.at_least, br.at_least
                            ),
                        );
                    }
                    Some(pr.clone())
                }
            };
            let on_error = check_on_error(&mut m, ErrorCheck::Bake, b, p, bb.on_error, pb.on_error, top_loosened);
            Some(BakeCheck {
                after_stage: pb.after_stage.clone(),
                pipeline: pb.pipeline.clone(),
                duration: pb.duration.max(bb.duration),
                min_requests,
                on_error: Some(on_error),
            })
        }
    };

    let upstream = match (&b.upstream, &p.upstream) {
        (None, None) => None,
        (Some(bu), None) => Some(UpstreamCheck {
            on_error: Some(bu.on_error.unwrap_or(b.on_error)),
            ..bu.clone()
        }),
        (None, Some(pu)) => Some(UpstreamCheck {
            on_error: Some(pu.on_error.unwrap_or(p.on_error)),
            ..pu.clone()
        }),
        (Some(bu), Some(pu)) => {
            if pu.pipeline != bu.pipeline {
                m.refuse(
                    at(&["upstream", "pipeline"]),
                    format!(
                        "{} is not the baseline's upstream pipeline {}: a policy may lengthen the look-back, not \
                         watch another pipeline instead",
                        pu.pipeline, bu.pipeline
                    ),
                );
            }
            if pu.stage != bu.stage {
                m.refuse(
                    at(&["upstream", "stage"]),
                    format!(
                        "{} is not the baseline's upstream stage {}",
                        pu.stage.as_deref().unwrap_or("(the whole pipeline)"),
                        bu.stage.as_deref().unwrap_or("(the whole pipeline)")
                    ),
                );
            }
            if pu.no_unrestored_failure_for < bu.no_unrestored_failure_for {
                m.refuse(
                    at(&["upstream", "no_unrestored_failure_for"]),
                    format!(
                        "{} is shorter than the baseline's {}: the look-back may only be longer",
                        pu.no_unrestored_failure_for, bu.no_unrestored_failure_for
                    ),
                );
            }
            let on_error = check_on_error(
                &mut m,
                ErrorCheck::Upstream,
                b,
                p,
                bu.on_error,
                pu.on_error,
                top_loosened,
            );
            Some(UpstreamCheck {
                on_error: Some(on_error),
                ..pu.clone()
            })
        }
    };

    let (approval, groups) = match (&b.approval, &p.approval) {
        (None, None) => (None, p.groups.clone().or_else(|| b.groups.clone())),
        (Some(ba), None) => (
            Some(ApprovalCheck {
                on_error: Some(ba.on_error.unwrap_or(b.on_error)),
                ..ba.clone()
            }),
            b.groups.clone(),
        ),
        (None, Some(pa)) => (
            Some(ApprovalCheck {
                on_error: Some(pa.on_error.unwrap_or(p.on_error)),
                ..pa.clone()
            }),
            p.groups.clone(),
        ),
        (Some(ba), Some(pa)) => {
            let who = Approvers::of(ba, b.groups.as_ref());
            for (i, a) in pa.approvers.iter().enumerate() {
                if !who.covers_arn(a) {
                    m.refuse(
                        vec![key("approval"), key("approvers"), Seg::Index(i)],
                        format!(
                            "{a} may approve, but the baseline does not let it: approvers may only be a subset of the \
                             baseline's ({})",
                            who.describe()
                        ),
                    );
                }
            }
            for (i, g) in pa.groups.iter().enumerate() {
                let members = p.groups.as_ref().and_then(|d| d.get(g)).unwrap_or_default();
                for member in members {
                    if !who.covers_member(member) {
                        m.refuse(
                            vec![key("approval"), key("groups"), Seg::Index(i)],
                            format!(
                                "group {g} lets {member} approve, but the baseline does not: approvers may only be a \
                                 subset of the baseline's ({})",
                                who.describe()
                            ),
                        );
                        break;
                    }
                }
            }
            if ba.reason_required && !pa.reason_required {
                m.refuse(
                    at(&["approval", "reason_required"]),
                    "false, but the baseline requires a reason with every approval".into(),
                );
            }
            let on_error = check_on_error(
                &mut m,
                ErrorCheck::Approval,
                b,
                p,
                ba.on_error,
                pa.on_error,
                top_loosened,
            );
            (
                Some(ApprovalCheck {
                    approvers: pa.approvers.clone(),
                    groups: pa.groups.clone(),
                    reason_required: true,
                    on_error: Some(on_error),
                }),
                p.groups.clone(),
            )
        }
    };

    let concurrency = match (&b.concurrency, &p.concurrency) {
        (None, None) => None,
        (Some(bc), None) => Some(ConcurrencyCheck {
            on_error: Some(bc.on_error.unwrap_or(b.on_error)),
            ..bc.clone()
        }),
        (None, Some(pc)) => Some(ConcurrencyCheck {
            on_error: Some(pc.on_error.unwrap_or(p.on_error)),
            ..pc.clone()
        }),
        (Some(bc), Some(pc)) => {
            if pc.environment != bc.environment {
                m.refuse(
                    at(&["concurrency", "environment"]),
                    format!(
                        "{} is not the baseline's environment {}: deployments would no longer exclude each other",
                        pc.environment, bc.environment
                    ),
                );
            }
            if pc.wave != bc.wave {
                m.refuse(
                    at(&["concurrency", "wave"]),
                    format!(
                        "{} is not the baseline's wave {}",
                        pc.wave.as_deref().unwrap_or("(none)"),
                        bc.wave.as_deref().unwrap_or("(none)")
                    ),
                );
            }
            let on_error = check_on_error(
                &mut m,
                ErrorCheck::Concurrency,
                b,
                p,
                bc.on_error,
                pc.on_error,
                top_loosened,
            );
            Some(ConcurrencyCheck {
                on_error: Some(on_error),
                ..pc.clone()
            })
        }
    };

    if !m.out.is_empty() {
        return Err(m.out);
    }
    Ok(Policy {
        version: p.version,
        name: p.name.clone(),
        timezone: if windows.is_some() || freezes.is_some() {
            timezone.or(Some(super::model::TimeZone(zone)))
        } else {
            timezone
        },
        max_wait: p.max_wait.min(b.max_wait),
        on_error,
        windows,
        freezes,
        alarms,
        bake,
        upstream,
        approval,
        concurrency,
        groups,
    })
}

fn allowed_list(base: &Applicable<'_>) -> String {
    if base.allow_fail_open.is_empty() {
        "none".into()
    } else {
        base.allow_fail_open
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A check both policies have: its effective `on_error`, refusing a fail_open the baseline does not allow.
fn check_on_error(
    m: &mut Merge<'_>,
    check: ErrorCheck,
    b: &Policy,
    p: &Policy,
    b_own: Option<OnError>,
    p_own: Option<OnError>,
    top_loosened: bool,
) -> OnError {
    let b_eff = b_own.unwrap_or(b.on_error);
    let p_eff = p_own.unwrap_or(p.on_error);
    if p_eff == OnError::FailOpen && b_eff == OnError::FailClosed && !m.base.allows_fail_open(check) {
        // A fail_open inherited from the policy's own `on_error` was refused there already.
        if p_own.is_some() || !top_loosened {
            let path = if p_own.is_some() {
                vec![key(check.as_str()), key("on_error")]
            } else {
                at(&["on_error"])
            };
            let allowed = allowed_list(m.base);
            m.refuse(
                path,
                format!(
                    "{} may not fail open: the baseline fails it closed and allows fail_open only for {allowed}",
                    check.as_str()
                ),
            );
        }
        return OnError::FailClosed;
    }
    p_eff
}

fn with_on_error(mut a: AlarmsCheck, on_error: OnError) -> AlarmsCheck {
    a.on_error = Some(on_error);
    a
}

fn merge_alarms(
    m: &mut Merge<'_>,
    b: &Policy,
    p: &Policy,
    ba: &AlarmsCheck,
    pa: &AlarmsCheck,
    top_loosened: bool,
) -> AlarmsCheck {
    let mut names = ba.names.clone();
    for n in &pa.names {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    // Every tag narrows the selection: a policy may select by fewer of the baseline's tags, not by others.
    let tags: BTreeMap<String, String> = if pa.tags.is_empty() {
        ba.tags.clone()
    } else {
        let extra: Vec<String> = pa
            .tags
            .iter()
            .filter(|(k, v)| ba.tags.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !extra.is_empty() {
            m.refuse(
                at(&["alarms", "tags"]),
                format!(
                    "selects alarms by {} too, which the baseline's tags ({}) do not: that could leave out the \
                     baseline's alarms; select by the baseline's tags or fewer of them, and name other alarms in \
                     `names`",
                    extra.join(", "),
                    if ba.tags.is_empty() {
                        "none: it names its alarms".to_string()
                    } else {
                        ba.tags
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            );
        }
        pa.tags.clone()
    };
    let ok_for = match (ba.ok_for, pa.ok_for) {
        (Some(bo), Some(po)) if po < bo => {
            m.refuse(
                at(&["alarms", "ok_for"]),
                format!("{po} is shorter than the baseline's {bo}: alarms must stay quiet at least as long"),
            );
            Some(bo)
        }
        (bo, po) => po.or(bo),
    };
    let wait = match (ba.wait, pa.wait) {
        (None, Some(pw)) => {
            m.refuse(
                at(&["alarms", "wait"]),
                format!("{pw}, but the baseline fails at once on an alarm in ALARM: a policy may not wait for it"),
            );
            None
        }
        (Some(bw), Some(pw)) if pw > bw => {
            m.refuse(
                at(&["alarms", "wait"]),
                format!("{pw} is longer than the baseline's {bw}: an alarm may hold the gate only as long"),
            );
            Some(bw)
        }
        (bw, pw) => pw.or(bw),
    };
    let on_error = check_on_error(m, ErrorCheck::Alarms, b, p, ba.on_error, pa.on_error, top_loosened);
    AlarmsCheck {
        names,
        tags,
        ok_for,
        wait,
        on_error: Some(on_error),
    }
}

/// Whether the window `from`–`to` (minutes) on `day` lies inside the baseline's windows (adjacent ones joined).
fn inside(windows: &[Window], day: ChronoWeekday, from: u32, to: u32) -> bool {
    let mut spans: Vec<(u32, u32)> = windows
        .iter()
        .filter(|w| w.days.iter().any(|d| d.0 == day))
        .map(|w| (w.from.minutes(), w.to.minutes()))
        .collect();
    spans.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (f, t) in spans {
        match merged.last_mut() {
            Some(last) if f <= last.1 => last.1 = last.1.max(t),
            _ => merged.push((f, t)),
        }
    }
    merged.iter().any(|(f, t)| *f <= from && to <= *t)
}

fn describe_windows(windows: &[Window]) -> String {
    windows
        .iter()
        .map(|w| {
            let days: Vec<String> = w.days.iter().map(|d| d.to_string()).collect();
            format!("{} {}–{}", days.join(","), w.from, w.to)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A freeze with its bounds as instants, so that it means the same in another zone.
fn in_instants(f: &Freeze, zone: chrono_tz::Tz) -> Freeze {
    match freeze_span(f, zone) {
        Some((start, end)) => Freeze {
            name: f.name.clone(),
            from: FreezeBound::Instant(start.fixed_offset()),
            to: FreezeBound::Instant(end.fixed_offset()),
            reason: f.reason.clone(),
        },
        None => f.clone(),
    }
}

/// Who the baseline lets approve: its approver patterns and the members of the groups its approval names.
struct Approvers<'a> {
    patterns: Vec<&'a ArnPattern>,
    members: Vec<&'a GroupMember>,
    text: Vec<String>,
}

impl<'a> Approvers<'a> {
    fn of(a: &'a ApprovalCheck, groups: Option<&'a Groups>) -> Approvers<'a> {
        let mut patterns: Vec<&ArnPattern> = a.approvers.iter().collect();
        let mut members: Vec<&GroupMember> = Vec::new();
        let mut text: Vec<String> = a.approvers.iter().map(|p| p.to_string()).collect();
        for g in &a.groups {
            text.push(format!("group {g}"));
            for member in groups.and_then(|d| d.get(g)).unwrap_or_default() {
                match member {
                    GroupMember::Arn(p) => patterns.push(p),
                    other => members.push(other),
                }
            }
        }
        Approvers {
            patterns,
            members,
            text,
        }
    }

    fn describe(&self) -> String {
        self.text.join(", ")
    }

    /// Every ARN the pattern `p` matches is matched by one of the baseline's patterns (decided conservatively: the
    /// same pattern, a literal ARN the baseline matches, or a pattern that starts with a baseline `prefix*`).
    fn covers_arn(&self, p: &ArnPattern) -> bool {
        self.patterns.iter().any(|b| pattern_covers(b.as_str(), p.as_str()))
    }

    fn covers_member(&self, member: &GroupMember) -> bool {
        match member {
            GroupMember::Arn(p) => self.covers_arn(p),
            GroupMember::SsoPermissionSet {
                account,
                permission_set,
            } => {
                self.members.contains(&member)
                    || self.patterns.iter().any(|b| {
                        pattern_covers(
                            b.as_str(),
                            &format!("arn:aws:sts::{account}:assumed-role/AWSReservedSSO_{permission_set}_*"),
                        )
                    })
            }
        }
    }
}

fn pattern_covers(base: &str, narrower: &str) -> bool {
    if base == narrower {
        return true;
    }
    if !narrower.contains('*') {
        return ArnPattern::parse(base).is_ok_and(|b| b.matches(narrower));
    }
    match base.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => narrower.starts_with(prefix),
        _ => false,
    }
}

/// [`effective_policy`] with each loosening as a [`PolicyError`] naming the pipeline policy's file, line and
/// column (found in `text`, the policy's source) and its field.
pub fn effective(file: &str, text: &str, base: &Applicable<'_>, pipeline: &Policy) -> Result<Policy, Vec<PolicyError>> {
    effective_policy(base, pipeline).map_err(|loosenings| {
        loosenings
            .into_iter()
            .map(|l| {
                PolicyError::new(file, PolicyErrorKind::Loosens, render_path(&l.path), l.message).at(locate(
                    text,
                    &l.path,
                    &Target::Value,
                ))
            })
            .collect()
    })
}
