//! Conformance: every AWS-documented sample in ../shared/aws-events parses into the right kind, the three samples AWS
//! published as invalid JSON are refused with their position, and every sample of Tollgate's own events/ parses.

use std::path::{Path, PathBuf};

use tollgate_domain::record::event::{EventBody, EventKind};
use tollgate_domain::record::parse::{parse_inbound, Inbound, ParseError};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Event(EventKind),
    Job,
    Approval,
}

fn expected_kind(file: &str) -> Expected {
    let table = [
        (
            "codepipeline-pipeline-execution-state-change",
            Expected::Event(EventKind::PipelineExecution),
        ),
        (
            "codepipeline-stage-execution-state-change",
            Expected::Event(EventKind::StageExecution),
        ),
        (
            "codepipeline-action-execution-state-change",
            Expected::Event(EventKind::ActionExecution),
        ),
        ("codebuild-build-state-change", Expected::Event(EventKind::BuildState)),
        ("codebuild-build-phase-change", Expected::Event(EventKind::BuildPhase)),
        (
            "codedeploy-deployment-state-change",
            Expected::Event(EventKind::DeploymentState),
        ),
        (
            "codedeploy-instance-state-change",
            Expected::Event(EventKind::InstanceState),
        ),
        (
            "cloudformation-stack-status-change",
            Expected::Event(EventKind::StackStatus),
        ),
        (
            "cloudformation-resource-status-change",
            Expected::Event(EventKind::ResourceStatus),
        ),
        (
            "cloudformation-drift-detection-status-change",
            Expected::Event(EventKind::DriftDetection),
        ),
        ("cloudwatch-alarm-state-change", Expected::Event(EventKind::AlarmState)),
        ("codepipeline-job", Expected::Job),
        ("codepipeline-manual-approval", Expected::Approval),
    ];
    table
        .into_iter()
        .find(|(prefix, _)| file.starts_with(prefix))
        .map(|(_, k)| k)
        .unwrap_or_else(|| panic!("no expected kind for sample {file}: add it to the table"))
}

fn kind_of(inbound: &Inbound) -> Expected {
    match inbound {
        Inbound::Event(e) => Expected::Event(e.kind()),
        Inbound::PipelineJob(_) => Expected::Job,
        Inbound::ApprovalRequest(_) => Expected::Approval,
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

/// The samples AWS published as invalid JSON, with where serde_json finds the fault.
const INVALID_AS_PUBLISHED: [(&str, usize, usize); 3] = [
    ("codepipeline-action-execution-state-change.started.json", 3, 12),
    (
        "codepipeline-pipeline-execution-state-change.failed.processed-notification.json",
        28,
        1,
    ),
    ("codepipeline-stage-execution-state-change.started.json", 3, 12),
];

#[test]
fn every_aws_sample_parses_into_its_kind() {
    let dir = workspace().join("../shared/aws-events");
    if !dir.is_dir() {
        eprintln!(
            "SKIPPED: {} does not exist, so the AWS samples were not checked",
            dir.display()
        );
        return;
    }
    let (mut parsed, mut refused) = (0, 0);
    for path in json_files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let result = parse_inbound(&bytes);
        if let Some((_, line, column)) = INVALID_AS_PUBLISHED.iter().find(|(f, _, _)| *f == name) {
            match result {
                Err(ParseError::Json { line: l, column: c, .. }) => {
                    assert_eq!((l, c), (*line, *column), "{name}: position of the JSON error");
                    let msg = result_message(&bytes);
                    assert!(
                        msg.starts_with(&format!("invalid JSON at line {line}, column {column}")),
                        "{name}: {msg}"
                    );
                    refused += 1;
                }
                other => panic!("{name} is invalid JSON as published and must be refused, got {other:?}"),
            }
            continue;
        }
        let inbound = result.unwrap_or_else(|e| panic!("{name} must parse: {e}"));
        assert_eq!(kind_of(&inbound), expected_kind(&name), "{name}");
        parsed += 1;
    }
    assert_eq!(refused, 3, "all three invalid samples were seen");
    assert!(parsed >= 27, "only {parsed} valid samples were parsed");
    eprintln!(
        "aws-events: {parsed} valid samples parsed into their kinds, {refused} invalid ones refused with positions"
    );
}

fn result_message(bytes: &[u8]) -> String {
    parse_inbound(bytes).unwrap_err().to_string()
}

fn sample(name: &str) -> Option<Inbound> {
    let path = workspace().join("../shared/aws-events").join(name);
    let bytes = std::fs::read(path).ok()?;
    Some(parse_inbound(&bytes).expect("sample parses"))
}

#[test]
fn aws_samples_keep_the_facts_timelines_need() {
    let Some(Inbound::Event(build)) = sample("codebuild-build-state-change.json") else {
        eprintln!("SKIPPED: ../shared/aws-events is missing");
        return;
    };
    let EventBody::BuildState(b) = &build.body else {
        panic!("not a build")
    };
    assert_eq!(b.build_id, "my-sample-project:8745a7a9-c340-456a-9166-edf953571bEX");
    assert_eq!(b.started_at.unwrap().to_rfc3339(), "2017-09-01T16:12:29+00:00");
    assert_eq!(b.phases.len(), 10);
    assert_eq!(b.phases[5].duration_secs, Some(70));

    let Some(Inbound::Event(action)) = sample("codepipeline-action-execution-state-change.failed.json") else {
        panic!("sample missing")
    };
    let EventBody::ActionExecution(a) = &action.body else {
        panic!("not an action")
    };
    assert_eq!(a.result.error_code.as_deref(), Some("JobFailed"));
    assert_eq!(a.action_type.provider, "CodeDeploy");

    let Some(Inbound::Event(started)) = sample("codepipeline-pipeline-execution-state-change.started.json") else {
        panic!("sample missing")
    };
    let EventBody::PipelineExecution(p) = &started.body else {
        panic!("not a pipeline event")
    };
    assert_eq!(p.trigger.as_ref().unwrap().trigger_type, "StartPipelineExecution");

    let Some(Inbound::Event(stage)) =
        sample("codepipeline-stage-execution-state-change.started.processed-notification.json")
    else {
        panic!("sample missing")
    };
    let EventBody::StageExecution(s) = &stage.body else {
        panic!("not a stage event")
    };
    assert_eq!(s.source_revisions[0].revision_id.as_deref(), Some("<ID>"));
    assert_eq!(s.source_revisions[0].branch.as_deref(), Some("main"));

    let Some(Inbound::Event(deploy)) = sample("codedeploy-instance-state-change-notification.json") else {
        panic!("sample missing")
    };
    let EventBody::InstanceState(i) = &deploy.body else {
        panic!("not an instance event")
    };
    assert_eq!(
        (i.deployment_id.as_str(), i.instance_id.as_str()),
        ("d-123456789", "i-0000000aaaaaaaaaa")
    );

    let Some(Inbound::Event(alarm)) = sample("cloudwatch-alarm-state-change.composite-with-suppressor.json") else {
        panic!("sample missing")
    };
    let EventBody::AlarmState(al) = &alarm.body else {
        panic!("not an alarm")
    };
    assert_eq!(al.state, "ALARM");

    let Some(Inbound::PipelineJob(job)) = sample("codepipeline-job-lambda-invoke.action-reference.json") else {
        panic!("sample missing")
    };
    assert_eq!(job.continuation_token.as_deref(), Some("token_ID"));
    assert!(!format!("{job:?}").contains("secret_key"));
}

#[test]
fn every_sample_of_our_own_parses_into_the_kind_its_name_says() {
    let dir = workspace().join("events");
    let mut n = 0;
    for path in json_files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let inbound = parse_inbound(&std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kind_of(&inbound), expected_kind(&name), "{name}");
        n += 1;
    }
    assert!(n >= 12, "only {n} samples in events/");
}
