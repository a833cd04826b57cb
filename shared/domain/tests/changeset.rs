//! The change-set classifier on realistic DescribeChangeSet responses (events/changeset/), one per risk class and a
//! harmless one, plus the UserParameters, the template reader and the continuation token.

use std::collections::BTreeMap;

use tollgate_domain::rollback::changeset::{
    change_set_name, classify, is_no_changes, parse_describe_change_set, parse_parameters_file, parse_params, review,
    stack_progress, ChangeAction, ChangeSetDescription, ChangesetToken, Phase, Replacement, RiskClass, RiskPolicy,
    StackProgress, Template, Verdict,
};

fn fixture(name: &str) -> ChangeSetDescription {
    let path = format!("{}/../../events/changeset/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_describe_change_set(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ingress_template() -> Template {
    let path = format!(
        "{}/../../events/changeset/open-ingress-template.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    Template::parse("infra/template.yaml", &text, &BTreeMap::new()).unwrap()
}

fn classes_of(d: &ChangeSetDescription, t: Option<&Template>) -> Vec<(String, Vec<RiskClass>)> {
    classify(&d.changes, t)
        .into_iter()
        .map(|c| (c.change.logical_id, c.risks.iter().map(|r| r.class).collect()))
        .collect()
}

#[test]
fn replacing_a_table_is_a_stateful_replacement_and_is_denied_by_default() {
    let d = fixture("stateful-replacement.json");
    assert_eq!(d.status, "CREATE_COMPLETE");
    assert_eq!(d.changes[0].replacement, Some(Replacement::True));
    assert_eq!(
        classes_of(&d, None),
        vec![
            ("OrdersTable".to_string(), vec![RiskClass::StatefulReplacement]),
            ("OrdersFunction".to_string(), vec![]),
        ]
    );
    let r = review("checkout-infra", &d, None, &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Deny);
    let report = r.report();
    assert!(
        report.contains("OrdersTable (AWS::DynamoDB::Table) is replaced because KeySchema changes"),
        "{report}"
    );
    assert!(report.contains("stateful_replacement) -> deny"), "{report}");
    assert!(
        report.contains("Modify OrdersFunction (AWS::Lambda::Function)"),
        "{report}"
    );
}

#[test]
fn a_retained_table_is_still_reported_as_starting_empty() {
    let d = fixture("stateful-replacement.json");
    let t = Template::parse(
        "t.yaml",
        "Resources:\n  OrdersTable:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n",
        &BTreeMap::new(),
    )
    .unwrap();
    let c = classify(&d.changes, Some(&t));
    assert!(
        c[0].risks[0].why.contains("DeletionPolicy Retain keeps the old one"),
        "{:?}",
        c[0].risks
    );
}

#[test]
fn removals_need_approval_and_a_removed_bucket_is_also_stateful() {
    let d = fixture("removal.json");
    assert_eq!(d.changes[0].action, ChangeAction::Remove);
    assert_eq!(
        classes_of(&d, None),
        vec![
            ("LegacyNotificationsTopic".to_string(), vec![RiskClass::Removal]),
            (
                "ExportBucket".to_string(),
                vec![RiskClass::Removal, RiskClass::StatefulReplacement]
            ),
        ]
    );
    let lenient = RiskPolicy {
        stateful_replacement: Verdict::Approve,
        ..RiskPolicy::default()
    };
    let r = review("checkout-infra", &d, None, &lenient);
    assert_eq!(r.verdict, Verdict::Approve);
    assert_eq!(r.risky(), 2);
    assert!(r.summary().contains("approval required"), "{}", r.summary());
}

#[test]
fn role_policy_managed_policy_and_bucket_policy_changes_are_iam() {
    let d = fixture("iam.json");
    assert_eq!(
        classes_of(&d, None),
        vec![
            ("OrdersFunctionRole".to_string(), vec![RiskClass::Iam]),
            ("ReportsReadPolicy".to_string(), vec![RiskClass::Iam]),
            ("ReportsBucketPolicy".to_string(), vec![RiskClass::Iam]),
        ]
    );
    let r = review("checkout-infra", &d, None, &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Approve);
    let report = r.report();
    assert!(
        report.contains("OrdersFunctionRole (AWS::IAM::Role) changes Policies"),
        "{report}"
    );
    assert!(
        report.contains("ReportsBucketPolicy (AWS::S3::BucketPolicy) changes PolicyDocument"),
        "{report}"
    );
}

#[test]
fn ingress_open_to_the_world_is_found_in_the_template_and_denied() {
    let d = fixture("open-ingress.json");
    let t = ingress_template();
    assert_eq!(
        classes_of(&d, Some(&t)),
        vec![
            ("DatabaseSecurityGroup".to_string(), vec![RiskClass::OpenIngress]),
            ("AdminSshIngress".to_string(), vec![RiskClass::OpenIngress]),
            // Only its tags changed: its (open) HTTPS ingress is not part of this change.
            ("LoadBalancerSecurityGroup".to_string(), vec![]),
        ]
    );
    let r = review("checkout-infra", &d, Some(&t), &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Deny);
    let report = r.report();
    assert!(
        report.contains("DatabaseSecurityGroup allows CidrIp 0.0.0.0/0 tcp/5432"),
        "{report}"
    );
    assert!(
        report.contains("AdminSshIngress allows CidrIpv6 ::/0 tcp/22"),
        "{report}"
    );
}

#[test]
fn an_ingress_cidr_from_a_parameter_is_resolved_and_an_unknown_one_is_suspect() {
    let t = ingress_template();
    assert!(
        t.open_ingress("BastionIngress").is_empty(),
        "the default 10.20.0.0/16 is not open"
    );
    let mut overrides = BTreeMap::new();
    overrides.insert("AdminCidr".to_string(), "0.0.0.0/0".to_string());
    let text = std::fs::read_to_string(format!(
        "{}/../../events/changeset/open-ingress-template.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let opened = Template::parse("t.yaml", &text, &overrides).unwrap();
    assert_eq!(
        opened.open_ingress("BastionIngress"),
        vec!["CidrIp 0.0.0.0/0 tcp/22".to_string()]
    );
    let computed = Template::parse(
        "t.json",
        r#"{"Resources": {"In": {"Type": "AWS::EC2::SecurityGroupIngress",
            "Properties": {"IpProtocol": "-1", "CidrIp": {"Fn::ImportValue": "shared-cidr"}}}}}"#,
        &BTreeMap::new(),
    )
    .unwrap();
    let found = computed.open_ingress("In");
    assert_eq!(found.len(), 1);
    assert!(found[0].contains("cannot be shown not to be 0.0.0.0/0"), "{found:?}");
}

#[test]
fn an_ingress_change_without_a_readable_template_is_suspect() {
    let d = fixture("open-ingress.json");
    let c = classify(&d.changes, None);
    assert_eq!(c[0].risks[0].class, RiskClass::OpenIngress);
    assert!(c[0].risks[0].why.contains("could not be read"), "{:?}", c[0].risks);
}

#[test]
fn a_conditional_replacement_needs_approval() {
    let d = fixture("conditional.json");
    assert_eq!(
        classes_of(&d, None),
        vec![("WorkerInstance".to_string(), vec![RiskClass::ConditionalReplacement])]
    );
    let r = review("checkout-infra", &d, None, &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Approve);
    assert!(r
        .report()
        .contains("WorkerInstance (AWS::EC2::Instance) may be replaced depending on SecurityGroupIds"));
}

#[test]
fn a_harmless_change_set_is_executed_and_says_so() {
    let d = fixture("harmless.json");
    assert!(classes_of(&d, None).iter().all(|(_, c)| c.is_empty()));
    let r = review("checkout-infra", &d, None, &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Execute);
    assert_eq!(r.summary(), "3 changes, none risky: executing");
    let strict = RiskPolicy {
        harmless: Verdict::Approve,
        ..RiskPolicy::default()
    };
    assert_eq!(review("s", &d, None, &strict).verdict, Verdict::Approve);
    let record = r.record();
    assert_eq!(record["verdict"], "execute");
    assert_eq!(record["changes"], 3);
}

#[test]
fn the_strictest_class_wins_and_the_policy_can_relax_each() {
    let mut d = fixture("iam.json");
    d.changes.extend(fixture("stateful-replacement.json").changes);
    let r = review("s", &d, None, &RiskPolicy::default());
    assert_eq!(r.verdict, Verdict::Deny);
    assert_eq!(r.classes.get(&RiskClass::Iam), Some(&Verdict::Approve));
    let relaxed = RiskPolicy {
        stateful_replacement: Verdict::Execute,
        iam: Verdict::Execute,
        ..RiskPolicy::default()
    };
    assert_eq!(review("s", &d, None, &relaxed).verdict, Verdict::Execute);
}

#[test]
fn user_parameters_are_validated_naming_the_field() {
    let p = parse_params(r#"{"stack": "checkout-infra", "template": "infra/template.yaml"}"#).unwrap();
    assert_eq!(p.policy, RiskPolicy::default());
    assert_eq!(p.policy.harmless, Verdict::Execute);
    let p = parse_params(
        r#"{"stack": "s", "template": "t.yaml", "parameters": "p.json", "capabilities": ["CAPABILITY_IAM"],
            "policy": {"iam": "deny", "harmless": "approve"}}"#,
    )
    .unwrap();
    assert_eq!(p.policy.iam, Verdict::Deny);
    assert_eq!(p.policy.removal, Verdict::Approve);
    assert_eq!(p.capabilities, vec!["CAPABILITY_IAM".to_string()]);

    let err = |text: &str| parse_params(text).unwrap_err().to_string();
    assert!(err(r#"{"stack": "s", "template": "t", "policy": {"iam": "maybe"}}"#).contains("`policy.iam`"));
    assert!(err(r#"{"stack": "s", "template": "t", "policy": {"iamm": "deny"}}"#).contains("iamm"));
    assert!(err(r#"{"stack": "1bad", "template": "t"}"#).contains("`stack`"));
    assert!(err(r#"{"stack": "s", "template": "../t"}"#).contains("`template`"));
    assert!(
        err(r#"{"stack": "s", "template": "t", "capabilities": ["CAPABILITY_ALL"]}"#).contains("`capabilities[0]`")
    );
    assert!(err(r#"{"stack": "s"}"#).contains("template"));
    assert!(err("").contains("empty"));
    assert!(err(r#"{"stack": "s", "template": "t", "role_arn": "admin"}"#).contains("`role_arn`"));
}

#[test]
fn parameters_files_in_both_formats_are_read() {
    let a = parse_parameters_file("p.json", r#"{"Parameters": {"Env": "prod", "Size": 3}, "Tags": {}}"#).unwrap();
    assert_eq!(a.get("Size").map(String::as_str), Some("3"));
    let b = parse_parameters_file("p.json", r#"[{"ParameterKey": "Env", "ParameterValue": "prod"}]"#).unwrap();
    assert_eq!(b.get("Env").map(String::as_str), Some("prod"));
    let e = parse_parameters_file("p.json", r#"[{"ParameterKey": "Env"}]"#).unwrap_err();
    assert!(e.to_string().contains("p.json: [0]"), "{e}");
}

#[test]
fn templates_with_short_form_tags_parse_and_broken_ones_name_the_file() {
    assert!(Template::parse("t.yaml", "Resources:\n  A:\n    Type: X\n    Properties:\n      Name: !Sub '${AWS::StackName}-a'\n      Arn: !GetAtt B.Arn\n", &BTreeMap::new()).is_ok());
    let e = Template::parse("infra/t.yaml", "Resources: [", &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().starts_with("template infra/t.yaml:"), "{e}");
    let e = Template::parse("infra/t.yaml", "Outputs: {}", &BTreeMap::new()).unwrap_err();
    assert!(e.to_string().contains("no `Resources`"), "{e}");
}

#[test]
fn no_changes_stack_states_names_and_tokens() {
    assert!(is_no_changes(
        "The submitted information didn't contain changes. Submit different information to create a change set."
    ));
    assert!(is_no_changes("No updates are to be performed."));
    assert!(!is_no_changes(
        "Template format error: Unresolved resource dependencies [Foo]"
    ));
    assert_eq!(stack_progress("UPDATE_IN_PROGRESS"), StackProgress::InProgress);
    assert_eq!(
        stack_progress("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"),
        StackProgress::InProgress
    );
    assert_eq!(stack_progress("UPDATE_COMPLETE"), StackProgress::Succeeded);
    assert_eq!(stack_progress("CREATE_COMPLETE"), StackProgress::Succeeded);
    assert_eq!(stack_progress("UPDATE_ROLLBACK_COMPLETE"), StackProgress::Failed);
    assert_eq!(stack_progress("ROLLBACK_COMPLETE"), StackProgress::Failed);
    assert_eq!(stack_progress("UPDATE_FAILED"), StackProgress::Failed);
    assert_eq!(
        change_set_name("ed085d02-372a-4b03-ba8a-c1df62a84ced"),
        "tollgate-ed085d02-372a-4b03-ba8a-c1df62a84ced"
    );
    let t = ChangesetToken {
        version: 1,
        phase: Phase::Execute,
        change_set: "tollgate-x".into(),
        first_at: 1_795_183_800,
    };
    assert_eq!(ChangesetToken::decode(&t.encode()).unwrap(), t);
    assert!(ChangesetToken::decode(r#"{"v":1,"f":1,"n":1,"d":[]}"#).is_err());
}
