use super::*;

#[test]
fn codebuild_times_parse_as_utc() {
    let t = parse_codebuild_time("Sep 1, 2017 4:12:29 PM").unwrap();
    assert_eq!(t.to_rfc3339(), "2017-09-01T16:12:29+00:00");
    let t = parse_codebuild_time("Nov 20, 2026 12:05:00 AM").unwrap();
    assert_eq!(t.to_rfc3339(), "2026-11-20T00:05:00+00:00");
    assert!(parse_codebuild_time("yesterday").is_none());
}

#[test]
fn cloudwatch_times_parse() {
    let t = parse_cloudwatch_time("2019-10-02T17:04:40.989+0000").unwrap();
    assert_eq!(t.timestamp_millis(), 1_570_035_880_989);
}

#[test]
fn build_and_stack_ids_are_shortened() {
    assert_eq!(
        short_build_id("arn:aws:codebuild:us-west-2:123456789012:build/my-project:8745a7a9"),
        "my-project:8745a7a9"
    );
    assert_eq!(short_build_id("my-project:8745a7a9"), "my-project:8745a7a9");
    assert_eq!(
        stack_name("arn:aws:cloudformation:us-west-1:1:stack/teststack/abc-123"),
        "teststack"
    );
    assert_eq!(
        stack_name("arn:aws:cloudformation:us-west-1:1:stack/teststack"),
        "teststack"
    );
}

#[test]
fn invalid_json_names_line_and_column() {
    let err = parse_event(b"{\n  \"id\": 1,\n  oops\n}").unwrap_err();
    match err {
        ParseError::Json { line, column, .. } => assert_eq!((line, column), (3, 3)),
        other => panic!("expected a JSON error, got {other:?}"),
    }
    assert!(parse_event(b"{\n  \"id\": 1,\n  oops\n}")
        .unwrap_err()
        .to_string()
        .starts_with("invalid JSON at line 3, column 3"));
}

#[test]
fn missing_field_is_named_with_its_path() {
    let body = br#"{"source":"aws.codepipeline","detail-type":"CodePipeline Stage Execution State Change",
        "account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"pipeline":"p","stage":"s","state":"STARTED"}}"#;
    let err = parse_event(body).unwrap_err().to_string();
    assert!(err.contains("`detail.execution-id`: missing field"), "{err}");
    assert!(
        err.starts_with("CodePipeline Stage Execution State Change event"),
        "{err}"
    );
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let body = br#"{"source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification",
        "account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"deploymentId":7,"state":"START"}}"#;
    let err = parse_event(body).unwrap_err().to_string();
    assert!(err.contains("`detail.deploymentId`"), "{err}");
}

#[test]
fn missing_account_is_taken_from_the_resource_arns_or_refused() {
    let with_arn = br#"{"source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification",
        "region":"r","time":"2020-01-01T00:00:00Z","resources":["arn:aws:codedeploy:r:111122223333:application:a"],
        "detail":{"deploymentId":"d-1","state":"START"}}"#;
    assert_eq!(parse_event(with_arn).unwrap().account, "111122223333");
    let without = br#"{"source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification",
        "region":"r","time":"2020-01-01T00:00:00Z","resources":[],"detail":{"deploymentId":"d-1","state":"START"}}"#;
    assert_eq!(
        parse_event(without).unwrap_err().to_string(),
        "not an EventBridge event: `account` is missing"
    );
}

#[test]
fn unknown_detail_type_is_kept_not_rejected() {
    let body = br#"{"source":"aws.s3","detail-type":"Object Created","account":"1","region":"r",
        "time":"2020-01-01T00:00:00Z","detail":{"bucket":{"name":"b"}}}"#;
    let e = parse_event(body).unwrap();
    assert_eq!(e.kind(), EventKind::Unknown);
}

#[test]
fn identity_ignores_envelope_id_and_key_order() {
    let a = br#"{"id":"one","source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification",
        "account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"deploymentId":"d-1","state":"START"}}"#;
    let b = br#"{"detail":{"state":"START","deploymentId":"d-1"},"id":"two","source":"aws.codedeploy",
        "detail-type":"CodeDeploy Deployment State-change Notification","account":"1","region":"r","time":"2020-01-01T00:00:00Z"}"#;
    let c = br#"{"id":"one","source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification",
        "account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"deploymentId":"d-1","state":"SUCCESS"}}"#;
    let (a, b, c) = (
        parse_event(a).unwrap(),
        parse_event(b).unwrap(),
        parse_event(c).unwrap(),
    );
    assert_eq!(a.id, b.id);
    assert_ne!(a.id, c.id);
}

#[test]
fn oversized_and_deeply_nested_input_is_refused() {
    let big = vec![b' '; MAX_INPUT_BYTES + 1];
    assert!(matches!(parse_event(&big), Err(ParseError::TooLarge { .. })));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let err = parse_event(deep.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn job_event_never_exposes_credentials() {
    let body = br#"{"CodePipeline.job":{"id":"j-1","accountId":"1","data":{"actionConfiguration":{"configuration":
        {"FunctionName":"f","UserParameters":"policy=prod"}},"artifactCredentials":{"secretAccessKey":"SECRET-XYZ",
        "sessionToken":"TOKEN-XYZ","accessKeyId":"AKIA-XYZ"},"inputArtifacts":[{"name":"Src"}]}}}"#;
    let Inbound::PipelineJob(job) = parse_inbound(body).unwrap() else {
        panic!("not a job")
    };
    assert_eq!(job.user_parameters.as_deref(), Some("policy=prod"));
    assert_eq!(job.input_artifacts, vec!["Src".to_string()]);
    let shown = format!("{job:?}");
    assert!(!shown.contains("SECRET-XYZ") && !shown.contains("TOKEN-XYZ") && !shown.contains("AKIA-XYZ"));
}
