//! Evaluating policies: each check alone (pass, wait, fail, error under fail_closed and fail_open), their
//! combinations, the max_wait rules and the explanation engineers read.

use chrono::{DateTime, Duration, Utc};
use tollgate_domain::gate::policy::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Wednesday 2026-11-18, 14:00 in Berlin (CET, UTC+1).
fn now() -> DateTime<Utc> {
    t("2026-11-18T13:00:00Z")
}

/// A policy with `body`, in Berlin time, waiting at most 6h unless `body` says otherwise.
fn policy(body: &str) -> Policy {
    let max_wait = if body.contains("max_wait:") {
        ""
    } else {
        "max_wait: 6h\n"
    };
    let text = format!("version: 1\nname: t\ntimezone: Europe/Berlin\n{max_wait}{body}");
    parse_policy("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn facts() -> Facts {
    Facts::new(now(), now())
}

fn alarm(name: &str, state: AlarmState, since: DateTime<Utc>) -> AlarmFact {
    AlarmFact {
        name: name.into(),
        state,
        since,
    }
}

fn approval(arn: &str, groups: &[&str], decision: ApprovalDecision, reason: Option<&str>) -> ApprovalFact {
    ApprovalFact {
        principal_arn: arn.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        decision,
        reason: reason.map(str::to_string),
        at: now() - Duration::minutes(5),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    Pass,
    Wait,
    Fail,
}

fn out(d: &Decision) -> Out {
    match d.outcome {
        Outcome::Pass => Out::Pass,
        Outcome::Wait { .. } => Out::Wait,
        Outcome::Fail => Out::Fail,
    }
}

struct Row {
    name: &'static str,
    body: &'static str,
    facts: Box<dyn Fn(&mut Facts)>,
    check: CheckKind,
    status: CheckStatus,
    outcome: Out,
    says: &'static str,
    earliest: Option<DateTime<Utc>>,
}

/// `expect`: the check, its status and the gate's outcome.
fn row(
    name: &'static str,
    body: &'static str,
    facts: impl Fn(&mut Facts) + 'static,
    expect: (CheckKind, CheckStatus, Out),
    says: &'static str,
    earliest: Option<&str>,
) -> Row {
    let (check, status, outcome) = expect;
    Row {
        name,
        body,
        facts: Box::new(facts),
        check,
        status,
        outcome,
        says,
        earliest: earliest.map(t),
    }
}

fn run(rows: Vec<Row>) {
    let mut failures = Vec::new();
    for r in &rows {
        let p = policy(r.body);
        let mut f = facts();
        (r.facts)(&mut f);
        let d = evaluate(&p, &f);
        let c = d
            .check(r.check)
            .unwrap_or_else(|| panic!("{}: no {:?} check", r.name, r.check));
        let ok =
            c.status == r.status && out(&d) == r.outcome && c.message.contains(r.says) && c.earliest_pass == r.earliest;
        if !ok {
            failures.push(format!(
                "{}: got {:?}/{:?} earliest {:?}: {}",
                r.name,
                c.status,
                out(&d),
                c.earliest_pass,
                c.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

use AlarmState::{Alarm, InsufficientData, Ok as AlarmOk};
use CheckKind as K;
use CheckStatus as S;

const ALARMS: &str = "alarms:\n  names: [checkout-service-5xx]\n  ok_for: 10m\n  wait: 30m\n";
const ALARMS_OPEN: &str = "on_error: fail_open\nalarms:\n  names: [checkout-service-5xx]\n  ok_for: 10m\n  wait: 30m\n";
const ALARMS_NO_WAIT: &str = "alarms:\n  names: [checkout-service-5xx]\n";
const ALARMS_TAGS: &str = "alarms:\n  tags: {service: checkout}\n";
const ALARMS_TWO_OPEN: &str = "alarms:\n  names: [a, b]\n  wait: 30m\n  on_error: fail_open\n";

#[test]
fn alarms_check_alone() {
    let since = |m: i64| now() - Duration::minutes(m);
    run(vec![
        row("ok long enough", ALARMS, move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", AlarmOk, since(60))]), (K::Alarms, S::Pass, Out::Pass), "1 alarm out of ALARM for at least 10m: checkout-service-5xx", None),
        row(
            "ok, not yet for ok_for",
            ALARMS,
            move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", AlarmOk, since(4))]),
            (K::Alarms, S::Wait, Out::Wait),
            "alarm checkout-service-5xx OK since 13:56 Europe/Berlin (4m of the 10m required); earliest 14:06 Europe/Berlin",
            Some("2026-11-18T13:06:00Z"),
        ),
        row(
            "insufficient data counts as out of ALARM",
            ALARMS,
            move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", InsufficientData, since(60))]),
            (K::Alarms, S::Pass, Out::Pass),
            "out of ALARM",
            None,
        ),
        row(
            "in ALARM within wait",
            ALARMS,
            move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", Alarm, since(18))]),
            (K::Alarms, S::Wait, Out::Wait),
            "alarm checkout-service-5xx in ALARM since 13:42 Europe/Berlin (18m of 30m allowed)",
            None,
        ),
        row(
            "in ALARM past wait",
            ALARMS,
            move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", Alarm, since(40))]),
            (K::Alarms, S::Fail, Out::Fail),
            "in ALARM since 13:20 Europe/Berlin (40m, longer than the 30m allowed)",
            None,
        ),
        row(
            "in ALARM exactly at wait",
            ALARMS,
            move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", Alarm, since(30))]),
            (K::Alarms, S::Fail, Out::Fail),
            "longer than the 30m allowed",
            None,
        ),
        row("in ALARM, no wait set", ALARMS_NO_WAIT, move |f| f.alarms = Ok(vec![alarm("checkout-service-5xx", Alarm, since(1))]), (K::Alarms, S::Fail, Out::Fail), "in ALARM since 13:59", None),
        row("missing alarm, fail_closed", ALARMS, |f| f.alarms = Ok(vec![]), (K::Alarms, S::Error, Out::Fail), "alarm checkout-service-5xx not found; failing closed", None),
        row("missing alarm, fail_open", ALARMS_OPEN, |f| f.alarms = Ok(vec![]), (K::Alarms, S::Error, Out::Pass), "not found; missing alarms ignored (on_error: fail_open)", None),
        row("read error, fail_closed", ALARMS, |f| f.alarms = Err("ThrottlingException".into()), (K::Alarms, S::Error, Out::Fail), "could not evaluate: cannot read alarms: ThrottlingException; failing closed", None),
        row("read error, fail_open", ALARMS_OPEN, |f| f.alarms = Err("AccessDenied".into()), (K::Alarms, S::Error, Out::Pass), "ignored (on_error: fail_open)", None),
        row("tags that match nothing", ALARMS_TAGS, |f| f.alarms = Ok(vec![]), (K::Alarms, S::Error, Out::Fail), "no alarm carries the tags service=checkout", None),
        row(
            "tag-matched alarm in ALARM",
            ALARMS_TAGS,
            move |f| f.alarms = Ok(vec![alarm("checkout-db-cpu", Alarm, since(2))]),
            (K::Alarms, S::Fail, Out::Fail),
            "alarm checkout-db-cpu in ALARM",
            None,
        ),
        row(
            "one missing (fail_open) and one waiting: waits",
            ALARMS_TWO_OPEN,
            move |f| f.alarms = Ok(vec![alarm("b", Alarm, since(5))]),
            (K::Alarms, S::Wait, Out::Wait),
            "alarm a not found; alarm b in ALARM since 13:55 Europe/Berlin (5m of 30m allowed); missing alarms ignored",
            None,
        ),
        row(
            "one failing beats one missing",
            ALARMS_TWO_OPEN,
            move |f| f.alarms = Ok(vec![alarm("b", Alarm, since(45))]),
            (K::Alarms, S::Fail, Out::Fail),
            "alarm b in ALARM",
            None,
        ),
    ]);
}

const BAKE: &str = "bake:\n  after_stage: Staging\n  duration: 2h\n";
const BAKE_OPEN: &str = "bake:\n  after_stage: Staging\n  duration: 2h\n  on_error: fail_open\n";
const BAKE_UPSTREAM: &str = "bake:\n  after_stage: Staging\n  pipeline: checkout-service-staging\n  duration: 2h\n";
const BAKE_TRAFFIC: &str = "bake:\n  after_stage: Staging\n  duration: 2h\n  min_requests:\n    namespace: AWS/ApplicationELB\n    metric: RequestCount\n    at_least: 1000\n";

#[test]
fn bake_check_alone() {
    let ago = |m: i64| Some(Ok(Some(now() - Duration::minutes(m))));
    run(vec![
        row("baked", BAKE, move |f| f.bake_stage_succeeded_at = ago(125), (K::Bake, S::Pass, Out::Pass), "bake time 2h5m of 2h", None),
        row(
            "still baking",
            BAKE,
            move |f| f.bake_stage_succeeded_at = ago(72),
            (K::Bake, S::Wait, Out::Wait),
            "bake time 1h12m of 2h; earliest 14:48 Europe/Berlin",
            Some("2026-11-18T13:48:00Z"),
        ),
        row(
            "stage not succeeded yet",
            BAKE_UPSTREAM,
            |f| f.bake_stage_succeeded_at = Some(Ok(None)),
            (K::Bake, S::Wait, Out::Wait),
            "stage Staging of checkout-service-staging has not succeeded yet; the 2h bake starts when it does (earliest 16:00 Europe/Berlin)",
            Some("2026-11-18T15:00:00Z"),
        ),
        row("exactly baked", BAKE, move |f| f.bake_stage_succeeded_at = ago(120), (K::Bake, S::Pass, Out::Pass), "bake time 2h of 2h", None),
        row("read error, fail_closed", BAKE, |f| f.bake_stage_succeeded_at = Some(Err("pipeline not found".into())), (K::Bake, S::Error, Out::Fail), "cannot tell when stage Staging succeeded: pipeline not found; failing closed", None),
        row("read error, fail_open", BAKE_OPEN, |f| f.bake_stage_succeeded_at = Some(Err("timeout".into())), (K::Bake, S::Error, Out::Pass), "ignored (on_error: fail_open)", None),
        row("not gathered fails closed even when fail_open", BAKE_OPEN, |f| f.bake_stage_succeeded_at = None, (K::Bake, S::Error, Out::Fail), "the gate did not gather when the bake stage succeeded (a bug); failing closed whatever on_error says", None),
        row(
            "enough traffic",
            BAKE_TRAFFIC,
            move |f| {
                f.bake_stage_succeeded_at = ago(130);
                f.bake_requests = Some(Ok(1520.0));
            },
            (K::Bake, S::Pass, Out::Pass),
            "bake time 2h10m of 2h with 1520 RequestCount (at least 1000)",
            None,
        ),
        row(
            "a quiet night does not count",
            BAKE_TRAFFIC,
            move |f| {
                f.bake_stage_succeeded_at = ago(130);
                f.bake_requests = Some(Ok(340.0));
            },
            (K::Bake, S::Fail, Out::Fail),
            "bake time 2h10m of 2h but only 340 RequestCount during it (at least 1000 required)",
            None,
        ),
        row(
            "traffic is not read while baking",
            BAKE_TRAFFIC,
            move |f| f.bake_stage_succeeded_at = ago(30),
            (K::Bake, S::Wait, Out::Wait),
            "bake time 30m of 2h",
            Some("2026-11-18T14:30:00Z"),
        ),
        row(
            "metric error",
            BAKE_TRAFFIC,
            move |f| {
                f.bake_stage_succeeded_at = ago(130);
                f.bake_requests = Some(Err("no datapoints".into()));
            },
            (K::Bake, S::Error, Out::Fail),
            "cannot read AWS/ApplicationELB RequestCount: no datapoints",
            None,
        ),
    ]);
}

const UPSTREAM: &str =
    "upstream:\n  pipeline: checkout-service-staging\n  stage: Integration\n  no_unrestored_failure_for: 60m\n";
const UPSTREAM_OPEN: &str =
    "upstream:\n  pipeline: checkout-service-staging\n  no_unrestored_failure_for: 60m\n  on_error: fail_open\n";

#[test]
fn upstream_check_alone() {
    run(vec![
        row("healthy", UPSTREAM, |f| f.upstream_unrestored_failure_at = Some(Ok(None)), (K::Upstream, S::Pass, Out::Pass), "checkout-service-staging / Integration has no unrestored failure", None),
        row(
            "recent unrestored failure",
            UPSTREAM,
            |f| f.upstream_unrestored_failure_at = Some(Ok(Some(now() - Duration::minutes(18)))),
            (K::Upstream, S::Wait, Out::Wait),
            "checkout-service-staging / Integration failed at 13:42 Europe/Berlin and is not restored (18m ago; a failure blocks for 1h unless restored)",
            Some("2026-11-18T13:42:00Z"),
        ),
        row(
            "old unrestored failure is outside the look-back",
            UPSTREAM,
            |f| f.upstream_unrestored_failure_at = Some(Ok(Some(now() - Duration::minutes(90)))),
            (K::Upstream, S::Pass, Out::Pass),
            "but that is 1h30m ago, more than 1h",
            None,
        ),
        row("read error, fail_open", UPSTREAM_OPEN, |f| f.upstream_unrestored_failure_at = Some(Err("throttled".into())), (K::Upstream, S::Error, Out::Pass), "cannot read checkout-service-staging's executions: throttled; ignored", None),
        row("read error, fail_closed", UPSTREAM, |f| f.upstream_unrestored_failure_at = Some(Err("throttled".into())), (K::Upstream, S::Error, Out::Fail), "failing closed", None),
    ]);
}

const APPROVAL: &str = "approval:\n  approvers: [\"arn:aws:iam::111122223333:role/ReleaseManager*\", \"arn:aws:sts::111122223333:assumed-role/ReleaseManager/*\"]\n  groups: [release-managers]\ngroups:\n  release-managers: [\"arn:aws:iam::111122223333:user/release/*\", \"sso:111122223333:ReleaseManager\"]\n  developers: [\"arn:aws:sts::111122223333:assumed-role/Developer/*\"]\n";
const APPROVAL_NO_REASON: &str = "approval:\n  groups: [release-managers]\n  reason_required: false\ngroups:\n  release-managers: [\"sso:111122223333:ReleaseManager\"]\n";
/// Groups named but declared nowhere: they have no members.
const APPROVAL_UNDECLARED: &str = "approval:\n  groups: [release-managers]\n";
const MANAGER: &str = "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice";
const DEVELOPER: &str = "arn:aws:sts::111122223333:assumed-role/Developer/bob";
const SSO_MANAGER: &str = "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_0a1b2c3d4e5f6789/carol";
const SSO_OTHER_ACCOUNT: &str =
    "arn:aws:sts::444455556666:assumed-role/AWSReservedSSO_ReleaseManager_0a1b2c3d4e5f6789/mallory";
const IAM_RELEASE_USER: &str = "arn:aws:iam::111122223333:user/release/dave";

#[test]
fn approval_check_alone() {
    use ApprovalDecision::{Approve, Reject};
    run(vec![
        row("no decision yet", APPROVAL, |f| f.approval = Some(Ok(None)), (K::Approval, S::Wait, Out::Wait), "waiting for an approval with a reason by arn:aws:iam::111122223333:role/ReleaseManager* or", None),
        row(
            "approved by pattern",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(MANAGER, &[], Approve, Some("CHG-42 reviewed"))))),
            (K::Approval, S::Pass, Out::Pass),
            "approved by arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice at 13:55 Europe/Berlin (matches arn:aws:sts::111122223333:assumed-role/ReleaseManager/*): CHG-42 reviewed",
            None,
        ),
        row(
            "approved by a member of a group through its permission set",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, Some("ok"))))),
            (K::Approval, S::Pass, Out::Pass),
            "(group release-managers): ok",
            None,
        ),
        row(
            "approved by a member of a group through an ARN pattern",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(IAM_RELEASE_USER, &[], Approve, Some("ok"))))),
            (K::Approval, S::Pass, Out::Pass),
            "approved by arn:aws:iam::111122223333:user/release/dave at 13:55 Europe/Berlin (group release-managers): ok",
            None,
        ),
        row(
            "the same permission set in another account is not a member",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(SSO_OTHER_ACCOUNT, &[], Approve, Some("ok"))))),
            (K::Approval, S::Fail, Out::Fail),
            "arn:aws:sts::444455556666:assumed-role/AWSReservedSSO_ReleaseManager_0a1b2c3d4e5f6789/mallory is not an authorised approver",
            None,
        ),
        row(
            "groups recorded with an approval are not trusted",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(DEVELOPER, &["release-managers"], Approve, Some("ok"))))),
            (K::Approval, S::Fail, Out::Fail),
            "arn:aws:sts::111122223333:assumed-role/Developer/bob is not an authorised approver: approvers are arn:aws:iam::111122223333:role/ReleaseManager* or arn:aws:sts::111122223333:assumed-role/ReleaseManager/* or group release-managers (release-managers = arn:aws:iam::111122223333:user/release/*, sso:111122223333:ReleaseManager)",
            None,
        ),
        row(
            "a member of a declared group that may not approve is refused",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(DEVELOPER, &[], Approve, Some("lgtm"))))),
            (K::Approval, S::Fail, Out::Fail),
            "is not an authorised approver",
            None,
        ),
        row(
            "rejected names who and why",
            APPROVAL,
            |f| f.approval = Some(Ok(Some(approval(MANAGER, &[], Reject, Some("error budget spent"))))),
            (K::Approval, S::Fail, Out::Fail),
            "rejected by arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice at 13:55 Europe/Berlin: error budget spent",
            None,
        ),
        row("approval without a reason", APPROVAL, |f| f.approval = Some(Ok(Some(approval(MANAGER, &[], Approve, Some("  "))))), (K::Approval, S::Fail, Out::Fail), "has no reason; this policy requires one", None),
        row(
            "reason not required",
            APPROVAL_NO_REASON,
            |f| f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, None)))),
            (K::Approval, S::Pass, Out::Pass),
            "approved by arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_0a1b2c3d4e5f6789/carol at 13:55 Europe/Berlin (group release-managers)",
            None,
        ),
        row(
            "an undeclared group has no members and says so",
            APPROVAL_UNDECLARED,
            |f| f.approval = Some(Ok(Some(approval(MANAGER, &["release-managers"], Approve, Some("ok"))))),
            (K::Approval, S::Fail, Out::Fail),
            "approvers are group release-managers (release-managers is not declared under the policy's `groups`, so it has no members)",
            None,
        ),
        row("read error", APPROVAL, |f| f.approval = Some(Err("table missing".into())), (K::Approval, S::Error, Out::Fail), "cannot read approvals: table missing", None),
    ]);
}

#[test]
fn authorise_approver_says_how_or_who_may() {
    let p = policy(APPROVAL);
    let ok = authorise_approver(&p, MANAGER).unwrap();
    assert_eq!(
        ok.how,
        Authorisation::Approver {
            pattern: "arn:aws:sts::111122223333:assumed-role/ReleaseManager/*".into()
        }
    );
    assert_eq!(
        ok.to_string(),
        "matches arn:aws:sts::111122223333:assumed-role/ReleaseManager/*"
    );
    let ok = authorise_approver(&p, &format!("  {SSO_MANAGER} ")).unwrap();
    assert_eq!(ok.principal_arn, SSO_MANAGER);
    assert_eq!(
        ok.how,
        Authorisation::Group {
            group: "release-managers".into(),
            member: "sso:111122223333:ReleaseManager".into()
        }
    );
    assert_eq!(ok.groups, ["release-managers"]);
    // A member of a declared group that the approval section does not name: refused, its groups still resolved.
    assert_eq!(groups_of(&p, DEVELOPER), ["developers"]);
    let no = authorise_approver(&p, DEVELOPER).unwrap_err();
    assert_eq!(no.principal_arn, DEVELOPER);
    assert!(
        no.message
            .contains("approvers are arn:aws:iam::111122223333:role/ReleaseManager* or"),
        "{no}"
    );
    assert!(
        no.message
            .contains("release-managers = arn:aws:iam::111122223333:user/release/*, sso:111122223333:ReleaseManager"),
        "{no}"
    );
    assert!(authorise_approver(&p, "").is_err(), "an empty principal is nobody");
    let none = policy("alarms:\n  names: [a]\n");
    let no = authorise_approver(&none, MANAGER).unwrap_err();
    assert!(
        no.message
            .ends_with("policy t has no approval section, so no one may approve or override its gate"),
        "{no}"
    );
    // The chat endpoint's own approvers, with the declarations they refer to.
    let check = p.approval.clone().unwrap();
    assert!(authorise_by_check(&check, p.groups.as_ref(), IAM_RELEASE_USER).is_ok());
    assert!(
        authorise_by_check(&check, None, IAM_RELEASE_USER).is_err(),
        "without declarations a group has no members"
    );
}

const CONCURRENCY: &str = "concurrency:\n  environment: production\n  wave: 1\n";

#[test]
fn concurrency_check_alone() {
    run(vec![
        row(
            "alone",
            CONCURRENCY,
            |f| f.deployments_in_progress = Some(Ok(vec![])),
            (K::Concurrency, S::Pass, Out::Pass),
            "no other deployment to production wave 1 in progress",
            None,
        ),
        row(
            "others deploying",
            CONCURRENCY,
            |f| f.deployments_in_progress = Some(Ok(vec!["payments/7f3a".into(), "search/11c2".into()])),
            (K::Concurrency, S::Wait, Out::Wait),
            "2 other deployments to production wave 1 in progress: payments/7f3a, search/11c2",
            None,
        ),
        row(
            "read error",
            CONCURRENCY,
            |f| f.deployments_in_progress = Some(Err("boom".into())),
            (K::Concurrency, S::Error, Out::Fail),
            "cannot list deployments in progress: boom",
            None,
        ),
    ]);
}

const WINDOW: &str = "windows:\n  - days: [mon, tue, wed, thu]\n    from: \"09:00\"\n    to: \"16:00\"\n  - days: [fri]\n    from: \"09:00\"\n    to: \"12:00\"\n";
const WINDOW_1D: &str = "max_wait: 1d\nwindows:\n  - days: [mon, tue, wed, thu]\n    from: \"09:00\"\n    to: \"16:00\"\n  - days: [fri]\n    from: \"09:00\"\n    to: \"12:00\"\n";
const FREEZE: &str = "freezes:\n  - name: year-end\n    from: 2026-12-20\n    to: 2027-01-04\n    reason: Year-end change freeze\n  - name: deploy-day\n    from: 2026-11-18T15:00\n    to: 2026-11-18T17:30\n";

#[test]
fn window_and_freeze_checks_alone() {
    let at = |s: &'static str| {
        move |f: &mut Facts| {
            f.now = t(s);
            f.first_evaluated_at = t(s);
        }
    };
    run(vec![
        row("open", WINDOW, at("2026-11-18T13:00:00Z"), (K::Window, S::Pass, Out::Pass), "window open until 16:00 Europe/Berlin", None),
        row("closed in the evening", WINDOW_1D, at("2026-11-18T16:00:00Z"), (K::Window, S::Wait, Out::Wait), "window closed: next opens Thu 09:00 Europe/Berlin", Some("2026-11-19T08:00:00Z")),
        row("at the opening minute", WINDOW, at("2026-11-19T08:00:00Z"), (K::Window, S::Pass, Out::Pass), "window open until 16:00", None),
        row(
            "closed in the evening, opening after a 6h max_wait",
            WINDOW,
            at("2026-11-18T16:00:00Z"),
            (K::Window, S::Fail, Out::Fail),
            "window closed: next opens Thu 09:00 Europe/Berlin; that is after the gate gives up at 23:00 Europe/Berlin (max_wait 6h)",
            Some("2026-11-19T08:00:00Z"),
        ),
        row("one second before opening", WINDOW, at("2026-11-19T07:59:59Z"), (K::Window, S::Wait, Out::Wait), "next opens 09:00 Europe/Berlin", Some("2026-11-19T08:00:00Z")),
        row("at the closing minute", WINDOW_1D, at("2026-11-18T15:00:00Z"), (K::Window, S::Wait, Out::Wait), "next opens Thu 09:00", Some("2026-11-19T08:00:00Z")),
        row(
            "friday afternoon: the next opening is beyond max_wait",
            WINDOW,
            at("2026-11-20T12:00:00Z"),
            (K::Window, S::Fail, Out::Fail),
            "window closed: next opens Mon 09:00 Europe/Berlin; that is after the gate gives up at 19:00 Europe/Berlin (max_wait 6h)",
            Some("2026-11-23T08:00:00Z"),
        ),
        row("no freeze", FREEZE, at("2026-11-18T13:00:00Z"), (K::Freeze, S::Pass, Out::Pass), "no freeze in effect; next: deploy-day from 2026-11-18 15:00 Europe/Berlin", None),
        row("short freeze waits", FREEZE, at("2026-11-18T15:00:00Z"), (K::Freeze, S::Wait, Out::Wait), "freeze deploy-day until 2026-11-18 17:30 Europe/Berlin", Some("2026-11-18T16:30:00Z")),
        row(
            "long freeze fails",
            FREEZE,
            at("2026-12-24T10:00:00Z"),
            (K::Freeze, S::Fail, Out::Fail),
            "freeze year-end (Year-end change freeze) until 2027-01-04 23:59 Europe/Berlin; that is after the gate gives up",
            Some("2027-01-04T23:00:00Z"),
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------------------------
// Combinations.

#[test]
fn every_check_is_explained_not_only_the_first_blocking_one() {
    let p = policy(&format!("{WINDOW_1D}{ALARMS}{CONCURRENCY}"));
    let mut f = facts();
    f.now = t("2026-11-18T16:00:00Z"); // Wednesday 17:00: closed
    f.first_evaluated_at = f.now;
    f.alarms = Ok(vec![alarm(
        "checkout-service-5xx",
        Alarm,
        f.now - Duration::minutes(18),
    )]);
    f.deployments_in_progress = Some(Ok(vec![]));
    let d = evaluate(&p, &f);
    let kinds: Vec<(CheckKind, CheckStatus)> = d.checks.iter().map(|c| (c.check, c.status)).collect();
    assert_eq!(
        kinds,
        [
            (K::Window, S::Wait),
            (K::Alarms, S::Wait),
            (K::Concurrency, S::Pass),
            (K::MaxWait, S::Pass)
        ]
    );
    // The alarm cannot say when it clears: recheck in a minute, not at the window's opening.
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: f.now + Duration::minutes(1)
        }
    );
    assert!(
        d.summary
            .starts_with("waiting for window (window closed: next opens Thu 09:00 Europe/Berlin) and alarms"),
        "{}",
        d.summary
    );
}

#[test]
fn a_failing_check_wins_over_waiting_ones_and_both_are_explained() {
    let p = policy(&format!("{WINDOW_1D}{ALARMS}"));
    let mut f = facts();
    f.now = t("2026-11-18T16:00:00Z");
    f.first_evaluated_at = f.now;
    f.alarms = Ok(vec![alarm(
        "checkout-service-5xx",
        Alarm,
        f.now - Duration::minutes(45),
    )]);
    let d = evaluate(&p, &f);
    assert_eq!(d.outcome, Outcome::Fail);
    assert_eq!(d.check(K::Window).unwrap().status, S::Wait);
    assert_eq!(d.check(K::Alarms).unwrap().status, S::Fail);
    assert!(
        d.summary
            .starts_with("failed: alarms (alarm checkout-service-5xx in ALARM"),
        "{}",
        d.summary
    );
    assert!(d.summary.ends_with("; also waiting for window"), "{}", d.summary);
}

#[test]
fn recheck_is_the_earliest_known_pass_among_waiting_checks() {
    let p = policy(&format!("{WINDOW_1D}{BAKE}"));
    let mut f = facts();
    f.now = t("2026-11-18T14:30:00Z"); // Wednesday 15:30, window open until 16:00
    f.first_evaluated_at = f.now;
    f.bake_stage_succeeded_at = Some(Ok(Some(f.now - Duration::minutes(100))));
    let d = evaluate(&p, &f);
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: t("2026-11-18T14:50:00Z")
        }
    );
    // Closed and baking: the bake ends first.
    f.now = t("2026-11-18T16:10:00Z");
    f.first_evaluated_at = f.now;
    f.bake_stage_succeeded_at = Some(Ok(Some(f.now - Duration::minutes(10))));
    let d = evaluate(&p, &f);
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: t("2026-11-18T18:00:00Z")
        }
    );
}

#[test]
fn an_ignored_error_does_not_hide_a_wait() {
    let p = policy(&format!("{ALARMS_OPEN}{BAKE}"));
    let mut f = facts();
    f.alarms = Err("throttled".into());
    f.bake_stage_succeeded_at = Some(Ok(Some(now() - Duration::minutes(60))));
    let d = evaluate(&p, &f);
    assert!(matches!(d.outcome, Outcome::Wait { .. }));
    assert_eq!(d.check(K::Alarms).unwrap().status, S::Error);
}

#[test]
fn a_rejection_fails_the_gate_while_the_bake_still_runs() {
    let p = policy(&format!("{BAKE}{APPROVAL}"));
    let mut f = facts();
    f.bake_stage_succeeded_at = Some(Ok(Some(now() - Duration::minutes(10))));
    f.approval = Some(Ok(Some(approval(
        MANAGER,
        &[],
        ApprovalDecision::Reject,
        Some("not today"),
    ))));
    let d = evaluate(&p, &f);
    assert_eq!(d.outcome, Outcome::Fail);
    assert_eq!(d.check(K::Bake).unwrap().status, S::Wait);
}

#[test]
fn all_checks_passing_passes_and_says_so() {
    let p = parse_policy("p.yaml", include_str!("../../../policies/production.yaml")).unwrap();
    let mut f = facts(); // Wednesday 14:00 Berlin: inside the window, no freeze
    f.alarms = Ok(vec![
        alarm("checkout-service-5xx", AlarmOk, now() - Duration::hours(3)),
        alarm("checkout-service-latency-p99", AlarmOk, now() - Duration::hours(3)),
        alarm("checkout-db-cpu", InsufficientData, now() - Duration::hours(1)),
    ]);
    f.bake_stage_succeeded_at = Some(Ok(Some(now() - Duration::hours(3))));
    f.bake_requests = Some(Ok(5000.0));
    f.upstream_unrestored_failure_at = Some(Err("throttled".into()));
    f.approval = Some(Ok(Some(approval(
        MANAGER,
        &[],
        ApprovalDecision::Approve,
        Some("CHG-42"),
    ))));
    f.deployments_in_progress = Some(Ok(vec![]));
    let d = evaluate(&p, &f);
    assert_eq!(d.outcome, Outcome::Pass, "{}", d.explain());
    assert_eq!(d.checks.len(), 8);
    assert_eq!(
        d.summary,
        "passed: 7 of 8 checks pass; upstream could not be evaluated and is ignored (on_error: fail_open)"
    );
}

#[test]
fn combinations_of_the_new_checks() {
    use ApprovalDecision::Approve;
    let ok_alarm = |f: &mut Facts| f.alarms = Ok(vec![alarm("checkout-5xx", AlarmOk, now() - Duration::hours(2))]);
    let body = format!("{ALARMS_TAGS}{APPROVAL}{CONCURRENCY}");
    // (alarms fact, approval fact, deployments in progress) -> outcome
    type Setup = Box<dyn Fn(&mut Facts)>;
    let cases: Vec<(&str, Setup, Out)> = vec![
        (
            "all pass",
            Box::new(move |f: &mut Facts| {
                ok_alarm(f);
                f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, Some("ok")))));
                f.deployments_in_progress = Some(Ok(vec![]));
            }),
            Out::Pass,
        ),
        (
            "another deployment holds the environment: wait, even when approved",
            Box::new(move |f: &mut Facts| {
                ok_alarm(f);
                f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, Some("ok")))));
                f.deployments_in_progress = Some(Ok(vec!["payments execution p-1".into()]));
            }),
            Out::Wait,
        ),
        (
            "tags select nothing: fails closed whatever else passes",
            Box::new(|f: &mut Facts| {
                f.alarms = Err("no CloudWatch alarm carries the tags service=checkout".into());
                f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, Some("ok")))));
                f.deployments_in_progress = Some(Ok(vec![]));
            }),
            Out::Fail,
        ),
        (
            "unauthorised approval fails while another deployment runs",
            Box::new(move |f: &mut Facts| {
                ok_alarm(f);
                f.approval = Some(Ok(Some(approval(
                    DEVELOPER,
                    &["release-managers"],
                    Approve,
                    Some("ok"),
                ))));
                f.deployments_in_progress = Some(Ok(vec!["payments execution p-1".into()]));
            }),
            Out::Fail,
        ),
        (
            "lease unreadable: fails closed",
            Box::new(move |f: &mut Facts| {
                ok_alarm(f);
                f.approval = Some(Ok(Some(approval(SSO_MANAGER, &[], Approve, Some("ok")))));
                f.deployments_in_progress = Some(Err("cannot read the deployment lease: throttled".into()));
            }),
            Out::Fail,
        ),
    ];
    let p = policy(&body);
    for (name, setup, expected) in cases {
        let mut f = facts();
        setup(&mut f);
        let d = evaluate(&p, &f);
        assert_eq!(out(&d), expected, "{name}: {}", d.explain());
    }
    // The same unreadable lease under concurrency.on_error: fail_open is reported and ignored.
    let p = policy(&format!("{ALARMS_TAGS}{APPROVAL}{CONCURRENCY}  on_error: fail_open\n"));
    let mut f = facts();
    ok_alarm(&mut f);
    f.approval = Some(Ok(Some(approval(MANAGER, &[], Approve, Some("ok")))));
    f.deployments_in_progress = Some(Err("cannot read the deployment lease: throttled".into()));
    let d = evaluate(&p, &f);
    assert_eq!(out(&d), Out::Pass, "{}", d.explain());
    assert_eq!(d.check(K::Concurrency).unwrap().status, S::Error);
}

// ---------------------------------------------------------------------------------------------------------------
// max_wait.

#[test]
fn a_wait_turns_into_a_failure_once_max_wait_has_passed() {
    let p = policy(CONCURRENCY);
    let mut f = facts();
    f.deployments_in_progress = Some(Ok(vec!["payments/7f3a".into()]));
    f.first_evaluated_at = now() - Duration::hours(6) + Duration::seconds(1);
    let d = evaluate(&p, &f);
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: now() + Duration::seconds(1)
        },
        "the recheck never goes past the deadline"
    );
    assert_eq!(
        d.check(K::MaxWait).unwrap().message,
        "waited 5h59m of 6h; gives up at 14:00 Europe/Berlin"
    );

    f.first_evaluated_at = now() - Duration::hours(6);
    let d = evaluate(&p, &f);
    assert_eq!(d.outcome, Outcome::Fail);
    let m = d.check(K::MaxWait).unwrap();
    assert_eq!(m.status, S::Fail);
    assert_eq!(
        m.message,
        "gave up after waiting 6h (max_wait 6h); still waiting for concurrency (1 other deployment to production wave 1 in progress: payments/7f3a)"
    );
    assert!(
        d.summary.starts_with("failed: max_wait (gave up after waiting 6h"),
        "{}",
        d.summary
    );
}

#[test]
fn a_gate_that_passes_after_max_wait_still_passes() {
    let p = policy(CONCURRENCY);
    let mut f = facts();
    f.deployments_in_progress = Some(Ok(vec![]));
    f.first_evaluated_at = now() - Duration::hours(7);
    assert_eq!(evaluate(&p, &f).outcome, Outcome::Pass);
}

#[test]
fn a_wait_that_cannot_end_in_time_fails_at_once_but_a_restorable_one_waits() {
    // The bake ends 2h from now, after a 1h max_wait: waiting cannot help.
    let p = parse_policy("p.yaml", &format!("version: 1\nname: t\nmax_wait: 1h\n{BAKE}")).unwrap();
    let mut f = facts();
    f.bake_stage_succeeded_at = Some(Ok(None));
    let d = evaluate(&p, &f);
    assert_eq!(d.outcome, Outcome::Fail);
    assert!(d
        .check(K::Bake)
        .unwrap()
        .message
        .ends_with("; that is after the gate gives up at 14:00 UTC (max_wait 1h)"));
    // An upstream failure leaves the look-back window after max_wait, but a fix may restore it sooner: keep waiting.
    let p = parse_policy("p.yaml", &format!("version: 1\nname: t\nmax_wait: 30m\n{UPSTREAM}")).unwrap();
    let mut f = facts();
    f.upstream_unrestored_failure_at = Some(Ok(Some(now() - Duration::minutes(5))));
    assert!(matches!(evaluate(&p, &f).outcome, Outcome::Wait { .. }));
}

#[test]
fn overrides_change_the_evaluation() {
    let p = policy(BAKE);
    let mut f = facts();
    f.bake_stage_succeeded_at = Some(Ok(Some(now() - Duration::minutes(40))));
    assert!(matches!(evaluate(&p, &f).outcome, Outcome::Wait { .. }));
    let o = p
        .with_overrides(&[("bake.duration".to_string(), "30m".to_string())].into_iter().collect())
        .unwrap();
    assert_eq!(evaluate(&o, &f).outcome, Outcome::Pass);
}

// ---------------------------------------------------------------------------------------------------------------
// The explanation.

#[test]
fn explain_shows_one_line_per_check() {
    let p = parse_policy("p.yaml", include_str!("../../../policies/production.yaml")).unwrap();
    let mut f = facts();
    f.now = t("2026-11-18T13:28:00Z"); // Wednesday 14:28 Berlin
    f.first_evaluated_at = t("2026-11-18T13:10:00Z");
    f.alarms = Ok(vec![
        alarm("checkout-service-5xx", Alarm, t("2026-11-18T13:10:00Z")),
        alarm("checkout-service-latency-p99", AlarmOk, t("2026-11-18T08:00:00Z")),
    ]);
    f.bake_stage_succeeded_at = Some(Ok(Some(t("2026-11-18T12:16:00Z"))));
    f.upstream_unrestored_failure_at = Some(Err("AccessDeniedException".into()));
    f.approval = Some(Ok(None));
    f.deployments_in_progress = Some(Ok(vec![]));
    let d = evaluate(&p, &f);
    let expected = "\
WAIT: waiting for alarms (alarm checkout-service-5xx in ALARM since 14:10 Europe/Berlin (18m of 30m allowed)), bake (bake time 1h12m of 2h; earliest 15:16 Europe/Berlin) and approval (waiting for an approval with a reason by arn:aws:iam::111122223333:role/ReleaseManager* or arn:aws:sts::111122223333:assumed-role/ReleaseManager/* or group release-managers); recheck at 14:29 Europe/Berlin
  ✓ window       window open until 16:00 Europe/Berlin
  ✓ freeze       no freeze in effect; next: black-friday from 2026-11-26 18:00 Europe/Berlin
  … alarms       alarm checkout-service-5xx in ALARM since 14:10 Europe/Berlin (18m of 30m allowed)
  … bake         bake time 1h12m of 2h; earliest 15:16 Europe/Berlin
  ! upstream     could not evaluate: cannot read checkout-service-staging / Integration's executions: AccessDeniedException; ignored (on_error: fail_open)
  … approval     waiting for an approval with a reason by arn:aws:iam::111122223333:role/ReleaseManager* or arn:aws:sts::111122223333:assumed-role/ReleaseManager/* or group release-managers
  ✓ concurrency  no other deployment to production wave 1 in progress
  ✓ max_wait     waited 18m of 6h; gives up at 20:10 Europe/Berlin
";
    assert_eq!(d.explain(), expected);
}

#[test]
fn decisions_serialise_for_the_record() {
    let p = policy(CONCURRENCY);
    let mut f = facts();
    f.deployments_in_progress = Some(Ok(vec!["x".into()]));
    let d = evaluate(&p, &f);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["outcome"]["outcome"], "wait");
    assert_eq!(json["checks"][0]["check"], "concurrency");
    assert_eq!(json["checks"][0]["status"], "wait");
    let back: Decision = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}
