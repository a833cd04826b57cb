//! Reading policies: the example policy, every error class with its exact line, column and field path,
//! UserParameters and overrides.

use std::collections::BTreeMap;

use tollgate_domain::gate::policy::*;

const PRODUCTION: &str = include_str!("../../../policies/production.yaml");

fn production() -> Policy {
    parse_policy("policies/production.yaml", PRODUCTION).expect("the example policy is valid")
}

#[test]
fn production_example_parses_with_every_feature() {
    let p = production();
    assert_eq!(p.name, "production-gate");
    assert_eq!(p.zone(), chrono_tz::Europe::Berlin);
    assert_eq!(p.max_wait.as_secs(), 6 * 3600);
    assert_eq!(p.on_error, OnError::FailClosed);
    let windows = p.windows.as_ref().unwrap();
    assert_eq!(windows.len(), 2);
    assert_eq!(windows[0].days.len(), 4);
    assert_eq!(windows[0].from.to_string(), "09:00");
    assert_eq!(windows[0].to.to_string(), "16:00");
    let freezes = p.freezes.as_ref().unwrap();
    assert_eq!(freezes[0].name, "year-end");
    assert_eq!(freezes[0].reason.as_deref(), Some("Year-end change freeze"));
    assert!(matches!(freezes[0].to, FreezeBound::Date(_)));
    assert!(matches!(freezes[1].from, FreezeBound::Local(_)));
    let alarms = p.alarms.as_ref().unwrap();
    assert_eq!(alarms.names, ["checkout-service-5xx", "checkout-service-latency-p99"]);
    assert_eq!(alarms.tags.get("service").map(String::as_str), Some("checkout"));
    assert_eq!(alarms.ok_for.unwrap().as_secs(), 600);
    assert_eq!(alarms.wait.unwrap().as_secs(), 1800);
    let bake = p.bake.as_ref().unwrap();
    assert_eq!(bake.after_stage, "Staging");
    assert_eq!(bake.pipeline.as_deref(), Some("checkout-service-staging"));
    let m = bake.min_requests.as_ref().unwrap();
    assert_eq!(
        (m.namespace.as_str(), m.metric.as_str()),
        ("AWS/ApplicationELB", "RequestCount")
    );
    assert_eq!(
        m.dimensions.get("LoadBalancer").map(String::as_str),
        Some("app/checkout/123")
    );
    assert_eq!((m.statistic, m.at_least), (Statistic::Sum, 1000.0));
    let upstream = p.upstream.as_ref().unwrap();
    assert_eq!(upstream.stage.as_deref(), Some("Integration"));
    assert_eq!(upstream.no_unrestored_failure_for.as_secs(), 3600);
    assert_eq!(upstream.on_error, Some(OnError::FailOpen));
    let approval = p.approval.as_ref().unwrap();
    assert_eq!(approval.approvers.len(), 2);
    assert_eq!(approval.groups, ["release-managers"]);
    let managers = p.groups.as_ref().unwrap().get("release-managers").unwrap();
    assert_eq!(
        managers,
        [
            GroupMember::parse("arn:aws:iam::111122223333:user/release/*").unwrap(),
            GroupMember::SsoPermissionSet {
                account: "111122223333".into(),
                permission_set: "ReleaseManager".into()
            }
        ]
    );
    assert!(approval.reason_required);
    let concurrency = p.concurrency.as_ref().unwrap();
    assert_eq!(concurrency.environment, "production");
    assert_eq!(concurrency.wave.as_deref(), Some("1"));
}

#[test]
fn validate_file_reads_the_example_and_names_a_missing_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    assert_eq!(validate_file(format!("{dir}/production.yaml")).unwrap(), production());
    let e = validate_file(format!("{dir}/nope.yaml")).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::Io);
    assert!(
        e.to_string()
            .starts_with(&format!("{dir}/nope.yaml: cannot read the policy")),
        "{e}"
    );
}

#[test]
fn the_same_policy_written_as_json_or_re_serialised_reads_the_same() {
    let p = production();
    let json = serde_json::to_string_pretty(&p).unwrap();
    assert_eq!(parse_policy("policies/production.json", &json).unwrap(), p);
    let yaml = serde_yaml::to_string(&p).unwrap();
    assert_eq!(parse_policy("again.yaml", &yaml).unwrap(), p);
}

#[test]
fn a_minimal_policy_defaults_to_utc_and_fail_closed() {
    let p = parse_policy(
        "p.yaml",
        "version: 1\nname: g\nmax_wait: 30m\nconcurrency: {environment: prod}\n",
    )
    .unwrap();
    assert_eq!(p.zone(), chrono_tz::UTC);
    assert_eq!(p.on_error, OnError::FailClosed);
    assert!(p.windows.is_none() && p.freezes.is_none() && p.alarms.is_none());
}

#[test]
fn values_accept_their_documented_spellings() {
    for (text, secs) in [
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1d", 86400),
        ("1h 30m", 5400),
    ] {
        assert_eq!(Duration::parse(text).unwrap().as_secs(), secs, "{text}");
    }
    assert_eq!(Duration::parse("90s").unwrap().to_string(), "1m30s");
    for bad in ["", "0s", "-5m", "90", "1.5h", "30m1h", "1h1h", "5x", "401d"] {
        assert!(Duration::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(TimeOfDay::parse("24:00").is_ok());
    assert!(TimeOfDay::parse("9:05").is_ok());
    for bad in ["24:01", "9am", "09:60", "0900", "09:0", "09:00:00"] {
        assert!(TimeOfDay::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert_eq!(Weekday::parse("Thursday").unwrap().0, chrono::Weekday::Thu);
    assert!(FreezeBound::parse("2026-11-26 18:00").is_ok());
    assert!(matches!(
        FreezeBound::parse("2026-11-26T18:00:00Z").unwrap(),
        FreezeBound::Instant(_)
    ));
}

const HEAD: &str = "version: 1\nname: g\ntimezone: Europe/Berlin\nmax_wait: 6h\n";

struct Case {
    name: &'static str,
    text: String,
    kind: PolicyErrorKind,
    at: Option<(usize, usize)>,
    path: Option<&'static str>,
    says: &'static str,
}

fn case(
    name: &'static str,
    text: impl Into<String>,
    kind: PolicyErrorKind,
    at: Option<(usize, usize)>,
    path: Option<&'static str>,
    says: &'static str,
) -> Case {
    Case {
        name,
        text: text.into(),
        kind,
        at,
        path,
        says,
    }
}

#[test]
fn every_error_class_names_its_line_column_and_field() {
    use PolicyErrorKind::*;
    let cases = [
        // Syntax.
        case("unclosed flow list", format!("{HEAD}windows: [\n"), Syntax, Some((6, 1)), None, "did not find expected node content"),
        case(
            "tab indentation",
            format!("{HEAD}alarms:\n\tnames: [a]\n"),
            Syntax,
            Some((6, 1)),
            None,
            "YAML does not allow tabs for indentation",
        ),
        case("two documents", format!("{HEAD}---\nversion: 1\n"), Syntax, None, None, "more than one document"),
        case("empty file", "  \n", Syntax, None, None, "the policy is empty"),
        // Unknown fields, top level and nested.
        case(
            "top-level typo",
            "version: 1\nname: g\ntimezon: Europe/Berlin\nmax_wait: 6h\n",
            UnknownField,
            Some((3, 1)),
            Some("timezon"),
            "unknown field `timezon`",
        ),
        case(
            "nested typo",
            format!("{HEAD}windows:\n  - days: [mon]\n    form: \"09:00\"\n    to: \"16:00\"\n"),
            UnknownField,
            Some((7, 5)),
            Some("windows[0].form"),
            "(did you mean `from`?)",
        ),
        case(
            "typo in a check",
            format!("{HEAD}bake:\n  after_stage: S\n  duration: 2h\n  min_request: {{}}\n"),
            UnknownField,
            Some((8, 3)),
            Some("bake.min_request"),
            "unknown field `min_request`",
        ),
        // Missing fields: reported at the mapping that lacks them.
        case(
            "window without from",
            format!("{HEAD}windows:\n  - days: [mon]\n    to: \"16:00\"\n"),
            MissingField,
            Some((6, 5)),
            Some("windows[0]"),
            "missing field `from`",
        ),
        case("no max_wait", "version: 1\nname: g\n", MissingField, Some((1, 1)), None, "missing field `max_wait`"),
        // Duplicates: reported at the repetition.
        case("field twice", format!("{HEAD}name: h\n"), DuplicateField, Some((5, 1)), Some("name"), "duplicate field `name`"),
        case(
            "tag twice",
            format!("{HEAD}alarms:\n  tags:\n    service: a\n    service: b\n"),
            DuplicateField,
            Some((8, 5)),
            Some("alarms.tags.service"),
            "duplicate key `service`",
        ),
        // Wrong types.
        case(
            "days as a string",
            format!("{HEAD}windows:\n  - days: mon\n    from: \"09:00\"\n    to: \"16:00\"\n"),
            WrongType,
            Some((6, 11)),
            Some("windows[0].days"),
            "invalid type: string \"mon\", expected a sequence",
        ),
        case("version as text", "version: one\nname: g\nmax_wait: 6h\n", WrongType, Some((1, 10)), Some("version"), "invalid type"),
        case(
            "an empty check",
            format!("{HEAD}approval:\nconcurrency: {{environment: prod}}\n"),
            WrongType,
            Some((5, 10)),
            Some("approval"),
            "has no value",
        ),
        case("not a mapping", "- a\n", WrongType, Some((1, 1)), None, "expected a mapping"),
        // Values the value types refuse, at the scalar.
        case(
            "time",
            format!("{HEAD}windows:\n  - days: [mon]\n    from: 9am\n    to: \"16:00\"\n"),
            InvalidValue,
            Some((7, 11)),
            Some("windows[0].from"),
            "\"9am\" is not a time (expected HH:MM",
        ),
        case(
            "weekday",
            format!("{HEAD}windows:\n  - days: [mon, thurs]\n    from: \"09:00\"\n    to: \"16:00\"\n"),
            InvalidValue,
            Some((6, 17)),
            Some("windows[0].days[1]"),
            "unknown weekday \"thurs\"",
        ),
        case(
            "time zone",
            "version: 1\nname: g\ntimezone: Europe/Berln\nmax_wait: 6h\n",
            InvalidValue,
            Some((3, 11)),
            Some("timezone"),
            "unknown time zone \"Europe/Berln\" (expected an IANA name such as Europe/Berlin); did you mean Europe/Berlin?",
        ),
        case("zero duration", "version: 1\nname: g\nmax_wait: 0m\n", InvalidValue, Some((3, 11)), Some("max_wait"), "a duration must be positive"),
        case(
            "negative duration",
            format!("{HEAD}alarms:\n  names: [a]\n  ok_for: -10m\n"),
            InvalidValue,
            Some((7, 11)),
            Some("alarms.ok_for"),
            "negative durations are not allowed",
        ),
        case("duration without unit", "version: 1\nname: g\nmax_wait: 90\n", InvalidValue, Some((3, 11)), Some("max_wait"), "the number has no unit"),
        case(
            "on_error spelling",
            format!("{HEAD}on_error: fail-open\n"),
            InvalidValue,
            Some((5, 11)),
            Some("on_error"),
            "unknown variant `fail-open`",
        ),
        case(
            "approver not an ARN",
            format!("{HEAD}approval:\n  approvers: [ReleaseManager]\n"),
            InvalidValue,
            Some((6, 15)),
            Some("approval.approvers[0]"),
            "is not an IAM ARN pattern",
        ),
        case(
            "freeze date",
            format!("{HEAD}freezes:\n  - name: x\n    from: 2026-13-01\n    to: 2026-12-31\n"),
            InvalidValue,
            Some((7, 11)),
            Some("freezes[0].from"),
            "is not a date",
        ),
        // Meaning across fields, located by walking back to the field.
        case(
            "window from >= to",
            format!("{HEAD}windows:\n  - days: [mon]\n    from: \"18:00\"\n    to: \"06:00\"\n"),
            Semantic,
            Some((8, 9)),
            Some("windows[0].to"),
            "cannot cross midnight; write it as two windows",
        ),
        case(
            "empty window",
            format!("{HEAD}windows:\n  - days: [mon]\n    from: \"09:00\"\n    to: \"09:00\"\n"),
            Semantic,
            Some((8, 9)),
            Some("windows[0].to"),
            "must end after it starts",
        ),
        case(
            "no days",
            format!("{HEAD}windows:\n  - days: []\n    from: \"09:00\"\n    to: \"10:00\"\n"),
            Semantic,
            Some((6, 11)),
            Some("windows[0].days"),
            "no days",
        ),
        case("empty windows", format!("{HEAD}windows: []\n"), Semantic, Some((5, 10)), Some("windows"), "allows no deployment"),
        case(
            "freeze ends before it starts",
            format!("{HEAD}freezes:\n  - name: x\n    from: 2026-12-20\n    to: 2026-12-19\n"),
            Semantic,
            Some((8, 9)),
            Some("freezes[0].to"),
            "the freeze ends (2026-12-19) before it starts (2026-12-20)",
        ),
        case(
            "freeze datetimes reversed",
            format!("{HEAD}freezes:\n  - name: x\n    from: 2026-12-20T10:00\n    to: 2026-12-20T09:00\n"),
            Semantic,
            Some((8, 9)),
            Some("freezes[0].to"),
            "before it starts",
        ),
        case(
            "at_least zero",
            format!(
                "{HEAD}bake:\n  after_stage: S\n  duration: 2h\n  min_requests:\n    namespace: N\n    metric: M\n    at_least: 0\n"
            ),
            Semantic,
            Some((11, 15)),
            Some("bake.min_requests.at_least"),
            "must be more than 0",
        ),
        case(
            "at_least negative",
            format!(
                "{HEAD}bake:\n  after_stage: S\n  duration: 2h\n  min_requests: {{namespace: N, metric: M, at_least: -3}}\n"
            ),
            Semantic,
            Some((8, 53)),
            Some("bake.min_requests.at_least"),
            "must be more than 0 (is -3)",
        ),
        case(
            "no approvers and no groups",
            format!("{HEAD}approval:\n  approvers: []\n  reason_required: true\n"),
            Semantic,
            Some((6, 3)),
            Some("approval"),
            "no one can approve",
        ),
        case(
            "approval naming an undeclared group",
            format!("{HEAD}approval:\n  groups: [release-manager]\ngroups:\n  release-managers: [\"sso:111122223333:ReleaseManager\"]\n"),
            Semantic,
            Some((6, 12)),
            Some("approval.groups[0]"),
            "group `release-manager` is not declared (did you mean `release-managers`?): declare its members under the policy's top-level `groups`",
        ),
        case(
            "a group without members",
            format!("{HEAD}approval:\n  groups: [g]\ngroups:\n  g: []\n"),
            Semantic,
            Some((8, 6)),
            Some("groups.g"),
            "has no members",
        ),
        case(
            "a group member that is neither an ARN pattern nor a permission set",
            format!("{HEAD}groups:\n  g: [\"sso:1:Admin\"]\n"),
            InvalidValue,
            Some((6, 7)),
            Some("groups.g[0]"),
            "\"sso:1:Admin\" is not an IAM Identity Center permission set (expected sso:<12-digit account>:<permission set name>",
        ),
        case(
            "a group member that is not an ARN",
            format!("{HEAD}groups:\n  g: [release-managers]\n"),
            InvalidValue,
            Some((6, 7)),
            Some("groups.g[0]"),
            "is not an IAM ARN pattern (expected e.g. arn:aws:iam::111122223333:role/ReleaseManager*), or an IAM Identity Center permission set written sso:<account>:<permission set>",
        ),
        case(
            "a group declared twice",
            format!("{HEAD}groups:\n  g: [\"arn:aws:iam::1:role/a\"]\n  g: [\"arn:aws:iam::1:role/b\"]\n"),
            DuplicateField,
            Some((7, 3)),
            Some("groups.g"),
            "duplicate key `g`",
        ),
        case("alarms naming nothing", format!("{HEAD}alarms:\n  ok_for: 5m\n"), Semantic, Some((6, 3)), Some("alarms"), "names no alarm"),
        case("version 2", "version: 2\nname: g\nmax_wait: 6h\n", Semantic, Some((1, 10)), Some("version"), "unsupported policy version 2"),
        case(
            "windows without a zone",
            "version: 1\nname: g\nmax_wait: 6h\nwindows:\n  - days: [mon]\n    from: \"09:00\"\n    to: \"10:00\"\n",
            Semantic,
            Some((5, 3)),
            Some("timezone"),
            "missing: the policy has windows",
        ),
        case(
            "empty stage name",
            format!("{HEAD}bake:\n  after_stage: \"\"\n  duration: 2h\n"),
            Semantic,
            Some((6, 16)),
            Some("bake.after_stage"),
            "must not be empty",
        ),
        // JSON policies get the same positions.
        case(
            "JSON bad duration",
            "{\n  \"version\": 1,\n  \"name\": \"g\",\n  \"max_wait\": \"6h\",\n  \"alarms\": {\"names\": [\"a\"], \"wait\": \"1x\"}\n}\n",
            InvalidValue,
            Some((5, 38)),
            Some("alarms.wait"),
            "unknown unit `x`",
        ),
        case(
            "JSON unknown field",
            "{\n  \"version\": 1,\n  \"name\": \"g\",\n  \"max_wiat\": \"6h\"\n}\n",
            UnknownField,
            Some((4, 3)),
            Some("max_wiat"),
            "(did you mean `max_wait`?)",
        ),
    ];
    let mut failures = Vec::new();
    for c in &cases {
        match parse_policy("p.yaml", &c.text) {
            Ok(_) => failures.push(format!("{}: accepted", c.name)),
            Err(e) => {
                let ok = e.kind == c.kind
                    && e.line_column() == c.at
                    && e.path.as_deref() == c.path
                    && e.message.contains(c.says)
                    && e.file == "p.yaml";
                if !ok {
                    failures.push(format!("{}: got {:?} {:?} {e}", c.name, e.kind, e.line_column()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn errors_display_as_file_line_column_path_message() {
    let text = format!("{HEAD}windows:\n  - days: [mon]\n    from: \"9am\"\n    to: \"16:00\"\n");
    let e = parse_policy("policies/production.yaml", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "policies/production.yaml:7:11: windows[0].from: \"9am\" is not a time (expected HH:MM, 00:00 to 24:00)"
    );
}

#[test]
fn an_error_in_the_example_policy_points_at_its_line() {
    let text = PRODUCTION.replacen("from: \"09:00\"", "from: \"9am\"", 1);
    let e = parse_policy("policies/production.yaml", &text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "policies/production.yaml:11:11: windows[0].from: \"9am\" is not a time (expected HH:MM, 00:00 to 24:00)"
    );
    let text = PRODUCTION.replacen("timezone: Europe/Berlin", "timezone: Europe/Berln", 1);
    let e = parse_policy("policies/production.yaml", &text).unwrap_err();
    assert_eq!(e.line_column(), Some((5, 11)));
}

#[test]
fn oversized_policies_are_refused_before_parsing() {
    let text = format!("{HEAD}# {}\n", "x".repeat(MAX_POLICY_BYTES));
    assert_eq!(parse_policy("p.yaml", &text).unwrap_err().kind, PolicyErrorKind::Io);
}

// ---------------------------------------------------------------------------------------------------------------
// UserParameters.

#[test]
fn user_parameters_name_a_policy_with_or_without_overrides() {
    let u = parse_user_parameters(
        r#"{"policy": "policies/production.yaml", "overrides": {"bake.duration": "30m", "max_wait": "2h"}}"#,
    )
    .unwrap();
    assert_eq!(u.policy, "policies/production.yaml");
    assert_eq!(u.overrides.get("bake.duration").map(String::as_str), Some("30m"));
    assert_eq!(u.candidate_paths(), ["policies/production.yaml"]);

    let u = parse_user_parameters("production").unwrap();
    assert!(u.overrides.is_empty());
    assert_eq!(
        u.candidate_paths(),
        [
            "policies/production.yaml",
            "policies/production.yml",
            "policies/production.json"
        ]
    );
    assert_eq!(
        parse_user_parameters(r#" "policies/a.json" "#).unwrap().policy,
        "policies/a.json"
    );

    let u = parse_user_parameters(
        r#"{"policy": "p.yaml", "overrides": {"approval.reason_required": false, "bake.min_requests.at_least": 50}}"#,
    )
    .unwrap();
    assert_eq!(u.overrides["approval.reason_required"], "false");
    assert_eq!(u.overrides["bake.min_requests.at_least"], "50");
}

#[test]
fn bad_user_parameters_name_the_field() {
    // (UserParameters, line and column, field path, what the message says)
    type Expected = (&'static str, Option<(usize, usize)>, Option<&'static str>, &'static str);
    let cases: [Expected; 9] = [
        ("", None, None, "empty: name the policy"),
        ("   ", None, None, "empty: name the policy"),
        (
            "policies/../../etc/passwd",
            None,
            Some("policy"),
            "must be a relative path",
        ),
        ("/etc/passwd", None, Some("policy"), "must be a relative path"),
        (
            r#"{"policy": "p.yaml", "overides": {}}"#,
            Some((1, 31)),
            Some("overides"),
            "unknown field `overides`",
        ),
        (
            r#"{"policy": 3}"#,
            Some((1, 12)),
            Some("policy"),
            "invalid type: integer `3`",
        ),
        (
            r#"{"policy": "p.yaml", "overrides": {"max_wait": [1]}}"#,
            Some((1, 48)),
            Some("overrides.max_wait"),
            "expected a string, number or boolean",
        ),
        (
            r#"{"policy": "p.yaml", "overrides": {"bake.durration": "1h"}}"#,
            None,
            Some("overrides.bake.durration"),
            "unknown override `bake.durration` (did you mean `bake.duration`?)",
        ),
        (
            r#"{"policy": "p.yaml"} trailing"#,
            Some((1, 22)),
            None,
            "trailing characters",
        ),
    ];
    for (text, at, path, says) in cases {
        let e = parse_user_parameters(text).unwrap_err();
        assert_eq!(e.file, "UserParameters");
        assert_eq!(e.kind, PolicyErrorKind::UserParameters, "{text}: {e}");
        assert_eq!(e.line_column(), at, "{text}: {e}");
        assert_eq!(e.path.as_deref(), path, "{text}: {e}");
        assert!(e.message.contains(says), "{text}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Overrides.

fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn every_documented_override_applies() {
    let p = production();
    let o = p
        .with_overrides(&overrides(&[
            ("max_wait", "2h"),
            ("on_error", "fail_open"),
            ("alarms.ok_for", "5m"),
            ("alarms.wait", "15m"),
            ("alarms.on_error", "fail_open"),
            ("bake.after_stage", "Canary"),
            ("bake.pipeline", "other"),
            ("bake.duration", "30m"),
            ("bake.min_requests.at_least", "50"),
            ("bake.on_error", "fail_open"),
            ("upstream.pipeline", "up"),
            ("upstream.stage", "Tests"),
            ("upstream.no_unrestored_failure_for", "2h"),
            ("upstream.on_error", "fail_closed"),
            ("approval.reason_required", "false"),
            ("approval.on_error", "fail_open"),
            ("concurrency.environment", "staging"),
            ("concurrency.wave", "2"),
            ("concurrency.on_error", "fail_open"),
        ]))
        .unwrap();
    assert_eq!(o.max_wait.to_string(), "2h");
    assert_eq!(o.on_error, OnError::FailOpen);
    let a = o.alarms.as_ref().unwrap();
    assert_eq!((a.ok_for.unwrap().as_secs(), a.wait.unwrap().as_secs()), (300, 900));
    let b = o.bake.as_ref().unwrap();
    assert_eq!(
        (b.after_stage.as_str(), b.pipeline.as_deref()),
        ("Canary", Some("other"))
    );
    assert_eq!(b.duration.as_secs(), 1800);
    assert_eq!(b.min_requests.as_ref().unwrap().at_least, 50.0);
    let u = o.upstream.as_ref().unwrap();
    assert_eq!((u.pipeline.as_str(), u.stage.as_deref()), ("up", Some("Tests")));
    assert_eq!(u.on_error, Some(OnError::FailClosed));
    assert!(!o.approval.as_ref().unwrap().reason_required);
    let c = o.concurrency.as_ref().unwrap();
    assert_eq!((c.environment.as_str(), c.wave.as_deref()), ("staging", Some("2")));
    // Everything not overridden is unchanged.
    assert_eq!(o.windows, p.windows);
    assert_eq!(o.freezes, p.freezes);
    // Every documented path was exercised.
    assert_eq!(OVERRIDE_PATHS.len(), 19);
}

#[test]
fn bad_overrides_are_refused_with_the_override_named() {
    let p = production();
    let minimal = parse_policy(
        "p.yaml",
        "version: 1\nname: g\nmax_wait: 1h\nconcurrency: {environment: prod}\n",
    )
    .unwrap();
    let cases: [(&Policy, &str, &str, &str); 7] = [
        (&p, "bake.duration", "0m", "a duration must be positive"),
        (&p, "max_wait", "soon", "is not a duration"),
        (&p, "on_error", "open", "is not fail_closed or fail_open"),
        (&p, "bake.min_requests.at_least", "-1", "must be more than 0"),
        (&p, "approval.reason_required", "yes", "is not true or false"),
        (&p, "concurrency.environment", " ", "must not be empty"),
        (
            &minimal,
            "bake.duration",
            "30m",
            "the policy has no `bake` check; an override can change a check, not add one",
        ),
    ];
    for (policy, path, value, says) in cases {
        let e = policy.with_overrides(&overrides(&[(path, value)])).unwrap_err();
        assert_eq!(e.kind, PolicyErrorKind::Override, "{path}: {e}");
        assert_eq!(e.path.as_deref(), Some(format!("overrides.{path}").as_str()));
        assert!(e.message.contains(says), "{path}: {e}");
        assert_eq!(e.file, "UserParameters");
    }
    let e = p.with_overrides(&overrides(&[("windows", "[]")])).unwrap_err();
    assert!(e.message.contains("unknown override"), "{e}");
}

#[test]
fn no_overrides_leaves_the_policy_as_it_is() {
    let p = production();
    assert_eq!(p.with_overrides(&BTreeMap::new()).unwrap(), p);
}

#[test]
fn stars_and_ampersands_in_text_are_not_mistaken_for_aliases() {
    let text = r#"version: 1
name: text-with-stars
max_wait: 1h
timezone: Europe/Berlin
freezes:
  - name: "R&D offsite"
    from: 2026-12-20
    to: 2026-12-21
    reason: |
      * no deploys during the offsite
      & no exceptions
approval:
  approvers: [arn:aws:iam::111122223333:role/Release*, "arn:aws:sts::111122223333:assumed-role/Ops/*"]
"#;
    let policy = tollgate_domain::gate::policy::parse_policy("stars.yaml", text).expect("valid");
    assert_eq!(policy.name, "text-with-stars");
    let err = tollgate_domain::gate::policy::parse_policy("alias.yaml", "version: 1\nname: &n x\nmax_wait: 1h\n")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("alias.yaml:2:7: YAML anchors are not allowed"), "{err}");
    // Fail closed: a word starting with `*` is refused even in quotes, and so is a lone CR line break.
    let quoted = tollgate_domain::gate::policy::parse_policy("q.yaml", "version: 1\nname: \"a *b\"\nmax_wait: 1h\n")
        .unwrap_err()
        .to_string();
    assert!(
        quoted.starts_with("q.yaml:2:10: YAML aliases are not allowed"),
        "{quoted}"
    );
    let cr = tollgate_domain::gate::policy::parse_policy("cr.yaml", "version: 1 # c\rname: x\nmax_wait: 1h\n")
        .unwrap_err()
        .to_string();
    assert!(cr.starts_with("cr.yaml:1:15: line break U+000D"), "{cr}");
}
