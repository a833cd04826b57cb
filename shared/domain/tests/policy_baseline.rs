//! The organisation baseline: each loosening of each field refused with its field named, each tightening accepted
//! and present in the effective policy, rules chosen by stage, and the effective policy read back as a policy.

use std::collections::BTreeMap;

use tollgate_domain::gate::policy::{
    effective, parse_baseline, parse_policy, Baseline, OnError, Policy, PolicyErrorKind, StageRef,
};

const BASE: &str = r#"version: 1
name: org-baseline
timezone: Europe/Berlin
max_wait: 6h
windows:
  - days: [mon, tue, wed, thu]
    from: "09:00"
    to: "16:00"
freezes:
  - name: year-end
    from: 2026-12-20
    to: 2027-01-04
alarms:
  names: [checkout-5xx]
  tags: {service: checkout, tier: web}
  ok_for: 10m
  wait: 30m
bake:
  after_stage: Staging
  duration: 2h
  min_requests:
    namespace: AWS/ApplicationELB
    metric: RequestCount
    at_least: 1000
upstream:
  pipeline: checkout-staging
  no_unrestored_failure_for: 60m
approval:
  approvers:
    - "arn:aws:iam::111122223333:role/ReleaseManager*"
  groups: [release-managers]
groups:
  release-managers:
    - "arn:aws:iam::111122223333:user/release/*"
    - "sso:111122223333:ReleaseManager"
concurrency:
  environment: production
allow_fail_open: [upstream]
"#;

/// The pipeline policy that restates the baseline exactly (every field written, none loosened).
const SAME: &str = r#"version: 1
name: checkout-gate
timezone: Europe/Berlin
max_wait: 6h
windows:
  - days: [mon, tue, wed, thu]
    from: "09:00"
    to: "16:00"
alarms:
  names: [checkout-5xx]
  tags: {service: checkout, tier: web}
  ok_for: 10m
  wait: 30m
bake:
  after_stage: Staging
  duration: 2h
  min_requests:
    namespace: AWS/ApplicationELB
    metric: RequestCount
    at_least: 1000
upstream:
  pipeline: checkout-staging
  no_unrestored_failure_for: 60m
approval:
  approvers:
    - "arn:aws:iam::111122223333:role/ReleaseManager*"
concurrency:
  environment: production
"#;

fn baseline() -> Baseline {
    parse_baseline("base.yaml", BASE).expect("the baseline reads")
}

/// `SAME` with `from` replaced by `to` (exactly once).
fn edit(from: &str, to: &str) -> String {
    assert_eq!(SAME.matches(from).count(), 1, "{from:?} occurs once in SAME");
    SAME.replace(from, to)
}

fn merge(text: &str) -> Result<Policy, Vec<String>> {
    let b = baseline();
    let p = parse_policy("p.yaml", text).expect("the pipeline policy reads");
    effective("p.yaml", text, &b.top(), &p).map_err(|errors| {
        errors
            .iter()
            .inspect(|e| assert_eq!(e.kind, PolicyErrorKind::Loosens))
            .map(|e| e.to_string())
            .collect()
    })
}

#[test]
fn restating_the_baseline_is_accepted() {
    let e = merge(SAME).expect("no loosening");
    assert_eq!(e.name, "checkout-gate");
    assert_eq!(
        e.freezes.as_ref().unwrap()[0].name,
        "year-end",
        "the baseline's freeze is kept"
    );
}

#[test]
fn each_loosening_is_refused_naming_its_field() {
    // (what to change, into what, the field path named, its line in p.yaml)
    let cases: &[(&str, &str, &str, usize)] = &[
        ("max_wait: 6h", "max_wait: 8h", "max_wait", 4),
        ("max_wait: 6h\n", "max_wait: 6h\non_error: fail_open\n", "on_error", 5),
        ("    to: \"16:00\"", "    to: \"18:00\"", "windows[0]", 6),
        ("days: [mon, tue, wed, thu]", "days: [mon, sat]", "windows[0]", 6),
        ("timezone: Europe/Berlin", "timezone: UTC", "timezone", 3),
        ("tier: web}", "tier: web, team: a}", "alarms.tags", 11),
        ("ok_for: 10m", "ok_for: 5m", "alarms.ok_for", 12),
        ("wait: 30m", "wait: 45m", "alarms.wait", 13),
        ("  after_stage: Staging", "  after_stage: Beta", "bake.after_stage", 15),
        ("duration: 2h", "duration: 1h", "bake.duration", 16),
        ("at_least: 1000", "at_least: 10", "bake.min_requests.at_least", 20),
        ("metric: RequestCount", "metric: Other", "bake.min_requests", 18),
        (
            "  pipeline: checkout-staging",
            "  pipeline: other",
            "upstream.pipeline",
            22,
        ),
        (
            "no_unrestored_failure_for: 60m",
            "no_unrestored_failure_for: 10m",
            "upstream.no_unrestored_failure_for",
            23,
        ),
        (
            "role/ReleaseManager*\"",
            "role/ReleaseManager*\"\n    - \"arn:aws:iam::111122223333:role/Developer\"",
            "approval.approvers[1]",
            27,
        ),
        (
            "role/ReleaseManager*\"",
            "role/ReleaseManager*\"\n  reason_required: false",
            "approval.reason_required",
            27,
        ),
        (
            "role/ReleaseManager*\"",
            "role/ReleaseManager*\"\n  on_error: fail_open",
            "approval.on_error",
            27,
        ),
        (
            "wait: 30m\n",
            "wait: 30m\n  on_error: fail_open\n",
            "alarms.on_error",
            14,
        ),
        (
            "environment: production",
            "environment: staging",
            "concurrency.environment",
            28,
        ),
    ];
    for (from, to, field, line) in cases {
        let text = edit(from, to);
        let errors = merge(&text).expect_err(field);
        assert_eq!(errors.len(), 1, "{field}: {errors:?}");
        let e = &errors[0];
        assert!(e.contains(&format!(": {field}: ")), "{field} is named: {e}");
        assert!(e.starts_with(&format!("p.yaml:{line}:")), "{field} at line {line}: {e}");
        assert!(
            e.contains("(required by baseline org-baseline)"),
            "the baseline is named: {e}"
        );
    }
}

#[test]
fn a_new_approver_group_outside_the_baseline_is_refused() {
    let text = format!(
        "{}groups:\n  mine:\n    - \"arn:aws:iam::111122223333:user/dev/*\"\n",
        edit("role/ReleaseManager*\"", "role/ReleaseManager*\"\n  groups: [mine]")
    );
    let errors = merge(&text).unwrap_err();
    assert!(
        errors[0].contains("approval.groups[0]") && errors[0].contains("user/dev/*"),
        "{errors:?}"
    );
}

#[test]
fn several_loosenings_are_all_named() {
    let text = edit("max_wait: 6h", "max_wait: 9h").replace("duration: 2h", "duration: 1m");
    let errors = merge(&text).unwrap_err();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("max_wait") && errors[1].contains("bake.duration"),
        "{errors:?}"
    );
}

#[test]
fn each_tightening_is_accepted_and_effective() {
    type Check = fn(&Policy) -> bool;
    let cases: &[(&str, &str, &str, Check)] = &[
        ("max_wait: 6h", "max_wait: 2h", "shorter max_wait", |p| {
            p.max_wait.as_secs() == 7200
        }),
        ("    to: \"16:00\"", "    to: \"12:00\"", "narrower window", |p| {
            p.windows.as_ref().unwrap()[0].to.to_string() == "12:00"
        }),
        ("days: [mon, tue, wed, thu]", "days: [tue]", "fewer days", |p| {
            p.windows.as_ref().unwrap()[0].days.len() == 1
        }),
        (
            "names: [checkout-5xx]",
            "names: [checkout-5xx, checkout-latency]",
            "more alarms",
            |p| p.alarms.as_ref().unwrap().names == ["checkout-5xx", "checkout-latency"],
        ),
        (
            "tags: {service: checkout, tier: web}",
            "tags: {service: checkout}",
            "fewer tags select more",
            |p| p.alarms.as_ref().unwrap().tags.len() == 1,
        ),
        ("ok_for: 10m", "ok_for: 30m", "longer ok_for", |p| {
            p.alarms.as_ref().unwrap().ok_for.unwrap().as_secs() == 1800
        }),
        ("wait: 30m", "wait: 5m", "shorter alarm wait", |p| {
            p.alarms.as_ref().unwrap().wait.unwrap().as_secs() == 300
        }),
        ("duration: 2h", "duration: 4h", "longer bake", |p| {
            p.bake.as_ref().unwrap().duration.as_secs() == 4 * 3600
        }),
        ("at_least: 1000", "at_least: 5000", "higher request floor", |p| {
            p.bake.as_ref().unwrap().min_requests.as_ref().unwrap().at_least == 5000.0
        }),
        (
            "no_unrestored_failure_for: 60m",
            "no_unrestored_failure_for: 2h",
            "longer look-back",
            |p| p.upstream.as_ref().unwrap().no_unrestored_failure_for.as_secs() == 7200,
        ),
        (
            "role/ReleaseManager*\"",
            "role/ReleaseManager-Checkout*\"",
            "fewer approvers",
            |p| {
                p.approval.as_ref().unwrap().approvers[0]
                    .as_str()
                    .ends_with("ReleaseManager-Checkout*")
            },
        ),
        (
            "no_unrestored_failure_for: 60m",
            "no_unrestored_failure_for: 60m\n  on_error: fail_open",
            "fail_open where the baseline allows it",
            |p| p.upstream.as_ref().unwrap().on_error == Some(OnError::FailOpen),
        ),
        (
            "max_wait: 6h\n",
            "max_wait: 6h\nfreezes:\n  - name: launch\n    from: 2026-11-01\n    to: 2026-11-02\n",
            "more freezes",
            |p| p.freezes.as_ref().unwrap().len() == 2,
        ),
    ];
    for (from, to, what, check) in cases {
        let e = merge(&edit(from, to)).unwrap_or_else(|errors| panic!("{what}: {errors:?}"));
        assert!(check(&e), "{what}: {e:?}");
    }
}

#[test]
fn a_policy_without_checks_gets_the_baselines() {
    let e = merge("version: 1\nname: bare\nmax_wait: 1h\n").expect("adds nothing, loosens nothing");
    assert!(e.windows.is_some() && e.freezes.is_some() && e.alarms.is_some() && e.bake.is_some());
    assert!(e.upstream.is_some() && e.approval.is_some() && e.concurrency.is_some());
    assert_eq!(
        e.groups.as_ref().unwrap().0.len(),
        1,
        "the baseline's groups come with its approval"
    );
    assert_eq!(e.approval.as_ref().unwrap().on_error, Some(OnError::FailClosed));
}

#[test]
fn the_effective_policy_reads_back_as_the_same_policy_and_passes_the_baseline() {
    for text in [SAME.to_string(), "version: 1\nname: bare\nmax_wait: 1h\n".to_string()] {
        let e = merge(&text).unwrap();
        let yaml = serde_yaml::to_string(&e).unwrap();
        let again = parse_policy("effective.yaml", &yaml).unwrap_or_else(|err| panic!("{err}\n{yaml}"));
        assert_eq!(again, e, "{yaml}");
        let twice = effective("effective.yaml", &yaml, &baseline().top(), &again).expect("no loosening");
        assert_eq!(twice, e, "merging again changes nothing");
    }
}

#[test]
fn a_plain_policy_is_a_baseline_for_itself() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/production.yaml")).unwrap();
    let b = parse_baseline("production.yaml", &text).unwrap();
    let p = parse_policy("production.yaml", &text).unwrap();
    let e = effective("production.yaml", &text, &b.top(), &p).expect("a policy does not loosen itself");
    assert_eq!(e.windows, p.windows);
}

const RULED: &str = r#"version: 1
name: org
max_wait: 12h
rules:
  - name: production
    match:
      stages: ["Prod*"]
      tags: {environment: production}
    approval:
      approvers: ["arn:aws:iam::111122223333:role/ReleaseManager"]
    bake:
      after_stage: Staging
      duration: 1h
  - name: any-prod-named
    match:
      stages: ["Prod*"]
    max_wait: 2h
"#;

#[test]
fn the_first_matching_rule_applies() {
    let b = parse_baseline("base.yaml", RULED).unwrap();
    let prod: BTreeMap<String, String> = [("environment".to_string(), "production".to_string())].into();
    let none = BTreeMap::new();
    let stage = |stage, tags| StageRef {
        pipeline: "checkout",
        stage,
        tags,
    };
    let a = b.for_stage(&stage("Production", Some(&prod))).unwrap();
    assert_eq!(a.rule, Some("production"));
    assert!(a.policy.approval.is_some() && a.policy.bake.is_some());
    assert_eq!(a.policy.max_wait.as_secs(), 12 * 3600, "inherited from the top level");
    let a = b.for_stage(&stage("Production", Some(&none))).unwrap();
    assert_eq!(a.rule, Some("any-prod-named"));
    assert_eq!(a.policy.max_wait.as_secs(), 2 * 3600);
    let a = b.for_stage(&stage("Beta", Some(&none))).unwrap();
    assert_eq!(a.rule, None);
    let err = b.for_stage(&stage("Production", None)).unwrap_err();
    assert!(err.contains("rule production") && err.contains("tags"), "{err}");

    // A policy with no checks does not pass silently in production: the rule's checks are its own.
    let p = parse_policy("p.yaml", "version: 1\nname: p\nmax_wait: 1h\n").unwrap();
    let a = b.for_stage(&stage("Production", Some(&prod))).unwrap();
    let e = effective("p.yaml", "", &a, &p).unwrap();
    assert!(e.approval.is_some() && e.bake.is_some());
}

#[test]
fn a_rule_that_loosens_the_top_level_is_refused() {
    let text = RULED.replace("    max_wait: 2h", "    max_wait: 20h");
    let e = parse_baseline("base.yaml", &text).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::Loosens);
    assert_eq!(e.path.as_deref(), Some("rules[1].max_wait"), "{e}");
    assert_eq!(e.line_column().map(|l| l.0), Some(17), "{e}");
}

#[test]
fn baseline_errors_name_file_line_and_field() {
    let e = parse_baseline(
        "base.yaml",
        &RULED.replace(
            "    match:\n      stages: [\"Prod*\"]\n    max_wait",
            "    match:\n      stage: [\"Prod*\"]\n    max_wait",
        ),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("base.yaml:16:7: rules[1].match.stage: unknown field"),
        "{e}"
    );
    let e = parse_baseline(
        "base.yaml",
        "version: 1\nname: org\nmax_wait: 1h\nrules:\n  - name: empty\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("rules[0]") && e.to_string().contains("adds nothing"),
        "{e}"
    );
}
