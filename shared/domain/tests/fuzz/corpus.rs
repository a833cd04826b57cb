//! The fuzzer's seed corpus and dictionaries: AWS's published samples (`../shared/aws-events/`, when present),
//! Tollgate's own `events/` and `policies/`, and hand-written policies, UserParameters and values that sit on the
//! edges of each format (durations, times, zones, dates, numbers).

use std::path::{Path, PathBuf};

use serde_json::Value;
use tollgate_domain::gate::policy::OVERRIDE_PATHS;
use tollgate_domain::record::event::EventKind;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file under `dir`, recursively, in a stable order.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The seeds of the event parsers and where they came from (`SKIPPED` lines for sources that are absent).
pub struct EventSeeds {
    pub inputs: Vec<Vec<u8>>,
    pub notes: Vec<String>,
}

pub fn event_seeds() -> EventSeeds {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let aws = workspace().join("../shared/aws-events");
    if aws.is_dir() {
        let files: Vec<PathBuf> = files_under(&aws);
        notes.push(format!("{} files from ../shared/aws-events/", files.len()));
        inputs.extend(files.iter().filter_map(|f| std::fs::read(f).ok()));
    } else {
        notes.push(format!(
            "SKIPPED: ../shared/aws-events/ ({}) does not exist",
            aws.display()
        ));
    }
    let own: Vec<PathBuf> = files_under(&workspace().join("events"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    notes.push(format!("{} files from events/", own.len()));
    for file in &own {
        let Ok(bytes) = std::fs::read(file) else { continue };
        // The story is an array of events and the SQS batch carries events as record bodies: each is a seed too.
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Array(events)) => inputs.extend(events.iter().map(|e| e.to_string().into_bytes())),
            Ok(Value::Object(obj)) if obj.contains_key("Records") => {
                for record in obj["Records"].as_array().into_iter().flatten() {
                    if let Some(body) = record.get("body").and_then(Value::as_str) {
                        inputs.push(body.as_bytes().to_vec());
                    }
                }
            }
            _ => {}
        }
        inputs.push(bytes);
    }
    inputs.extend(HAND_WRITTEN_EVENTS.iter().map(|s| s.as_bytes().to_vec()));
    notes.push(format!("{} hand-written", HAND_WRITTEN_EVENTS.len()));
    EventSeeds { inputs, notes }
}

const HAND_WRITTEN_EVENTS: &[&str] = &[
    "",
    "{}",
    "[]",
    "null",
    "\"event\"",
    r#"{"source":"aws.codedeploy","detail-type":"CodeDeploy Deployment State-change Notification","region":"r","time":"2020-01-01T00:00:00Z","resources":["arn:aws:codedeploy:r:111122223333:application:a"],"detail":{"deploymentId":"d-1","state":"START"}}"#,
    r#"{"source":"aws.s3","detail-type":"Object Created","account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"bucket":{"name":"b"}}}"#,
    r#"{"approval":{"pipelineName":"p","stageName":"s","actionName":"a","token":"t","expires":"2026-01-01T00:00Z","customData":"c"},"region":"eu-west-1"}"#,
    r#"{"CodePipeline.job":{"id":"j-1","accountId":"1","data":{"actionConfiguration":{"configuration":{"FunctionName":"f","UserParameters":"{\"policy\":\"production\",\"overrides\":{\"bake.duration\":\"30m\"}}"}},"inputArtifacts":[{"name":"Src"}]}}}"#,
    r#"{"Records":[{"body":"{}"}]}"#,
    r#"{"source":"aws.codebuild","detail-type":"CodeBuild Build Phase Change","account":"1","region":"r","time":"2020-01-01T00:00:00Z","detail":{"completed-phase":"BUILD","project-name":"p","build-id":"arn:aws:codebuild:r:1:build/p:1","completed-phase-start":"Feb 29, 2019 4:12:29 PM","completed-phase-duration-seconds":-9223372036854775808}}"#,
];

/// The `detail-type`s Tollgate reads, for swapping between events.
pub fn detail_types() -> Vec<&'static str> {
    EventKind::ALL
        .into_iter()
        .map(EventKind::detail_type)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Strings worth putting where the event parsers expect text: times in each format they read, ARNs they split,
/// empty and odd text.
pub const EVENT_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "2020-01-01T00:00:00Z",
    "2020-02-30T00:00:00Z",
    "9999-12-31T23:59:60Z",
    "0000-01-01T00:00:00+23:59",
    "+275760-09-13T00:00:00Z",
    "2020-01-01T00:00:00.9999999999999999999Z",
    "2020-01-01 00:00:00Z",
    "Sep 1, 2017 4:12:29 PM",
    "Feb 30, 2017 4:12:29 PM",
    "Sep 1, 262143 11:59:59 PM",
    "Sep 1, -262144 12:00:00 AM",
    "2019-10-02T17:04:40.989+0000",
    "2019-10-02T17:04:40.989+9999",
    "2019-10-02T17:04:40.989-2400",
    "arn:aws:codebuild:r:1:build/",
    "arn:aws:codebuild:r:1:build/:build/x",
    "arn:aws:cloudformation:r:1:stack/",
    "arn:aws:cloudformation:r:1:stack//",
    ":stack/",
    ":build/",
    "arn:aws:codepipeline:eu-west-1:111122223333:p",
    "arn:aws:codepipeline:eu-west-1:1111222233334:p",
    "arn:aws:x:r:١١١١٢٢٢٢٣٣٣٣:p",
    "CodePipeline Pipeline Execution State Change",
    "STARTED",
    "\u{202e}gnp.exe",
    "日本語のパイプライン",
    "\u{fffd}",
    "\\",
    "\"",
];

/// Number literals at the edges of what serde_json and the parsers' integer reads accept, as text.
pub const NUMBER_LITERALS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "1.0",
    "1e308",
    "-1e308",
    "1e309",
    "1e400",
    "-1e400",
    "4.9e-324",
    "1e-400",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "9223372036854775807",
    "123456789012345678901234567890123456789",
    "0.1e99999999999999999999",
];

// -------------------------------------------------------------------------------------------------------------------
// Policies.

pub struct PolicySeeds {
    pub inputs: Vec<Vec<u8>>,
    pub notes: Vec<String>,
}

pub fn policy_seeds() -> PolicySeeds {
    let mut inputs = Vec::new();
    let mut notes = Vec::new();
    let own = files_under(&workspace().join("policies"));
    notes.push(format!("{} files from policies/", own.len()));
    inputs.extend(own.iter().filter_map(|f| std::fs::read(f).ok()));
    // The policy as JSON (JSON is YAML: one parser reads both).
    if let Some(first) = inputs.first() {
        if let Ok(v) = serde_yaml::from_slice::<serde_yaml::Value>(first) {
            if let Ok(json) = serde_json::to_string_pretty(&v) {
                inputs.push(json.into_bytes());
            }
        }
    }
    inputs.extend(HAND_WRITTEN_POLICIES.iter().map(|s| s.as_bytes().to_vec()));
    notes.push(format!("{} hand-written", HAND_WRITTEN_POLICIES.len()));
    PolicySeeds { inputs, notes }
}

/// Valid policies with different sets of checks: the bases that overrides are applied to.
pub const BASE_POLICIES: &[&str] = &[
    include_str!("../../../../policies/production.yaml"),
    "version: 1\nname: minimal\nmax_wait: 30m\n",
    "version: 1\nname: bake-only\nmax_wait: 2h\nbake:\n  after_stage: Staging\n  duration: 1h\n  min_requests:\n    namespace: AWS/ApplicationELB\n    metric: RequestCount\n    at_least: 1\n",
    "version: 1\nname: checks\nmax_wait: 6h\non_error: fail_open\nalarms:\n  tags: {service: s}\nupstream:\n  pipeline: p\n  no_unrestored_failure_for: 1h\napproval:\n  groups: [g]\n  reason_required: false\nconcurrency:\n  environment: prod\n  wave: canary\n",
    "version: 1\nname: calendar\ntimezone: Pacific/Apia\nmax_wait: 400d\nwindows:\n  - days: [sun]\n    from: \"00:00\"\n    to: \"24:00\"\nfreezes:\n  - name: skipped-day\n    from: 2011-12-30\n    to: 2012-01-02T00:30\n",
];

const HAND_WRITTEN_POLICIES: &[&str] = &[
    "",
    "  \n",
    "# only a comment\n",
    "---\n",
    "~\n",
    "[]\n",
    "version: 1\n",
    "{version: 1, name: g, max_wait: 6h, concurrency: {environment: prod}}",
    "version: 1\nname: g\ntimezone: Europe/Berlin\nmax_wait: 6h\nwindows:\n  - days: [mon]\n    from: \"18:00\"\n    to: \"06:00\"\n",
    "version: 1\nname: g\ntimezone: Europe/Berlin\nmax_wait: 6h\nfreezes:\n  - name: f\n    from: 2026-03-29T02:30\n    to: 2026-10-25T02:30\n",
    "version: 1\nname: g\nmax_wait: 6h\nalarms:\n  names: &n [a, b]\n  tags: {a: b}\napproval:\n  groups: *n\n",
    "version: 1\nname: g\nmax_wait: 6h\nbake: &b\n  after_stage: S\n  duration: 1h\nupstream:\n  <<: *b\n",
    "version: 1\nname: g\nmax_wait: 6h\napproval:\n",
    "version: 1\nname: g\nname: h\nmax_wait: 6h\n",
    "version: 1\nname: g\nmax_wait: 6h\nalarms:\n  tags: {a: b, a: c}\n",
    "version: 1\nname: g\ntimezone: Europe/Berlin\nmax_wait: 6h\n---\nversion: 1\n",
    "version: 1\nname: g\nmax_wait: !!binary aGVsbG8=\n",
    "version: 1\nname: g\nmax_wait: 6h\nconcurrency: {environment: prod, wave: 1.5e3}\n",
];

/// Replacement values for the policy's fields, by the kind of value the field holds.
pub const DURATIONS: &[&str] = &[
    "90s",
    "1h30m",
    "1h 30m",
    "400d",
    "401d",
    "400d1s",
    "99999999999d",
    "9999999999999999999999d",
    "9223372036854775807s",
    "0s",
    "0m",
    "-1h",
    "1.5h",
    "90",
    "1m1h",
    "1d1d",
    "1x",
    "1ĥ",
    "١h",
    "1H",
    "",
    " ",
];

pub const TIMES: &[&str] = &[
    "00:00",
    "09:00",
    "24:00",
    "24:01",
    "23:60",
    "23:59",
    "9am",
    "9:05",
    "09:0",
    "009:00",
    "-1:00",
    "+9:00",
    "24:00:00",
    "٠٩:٠٠",
    "99:99",
    ":",
    "",
];

pub const ZONES: &[&str] = &[
    "Europe/Berlin",
    "Europe/Berln",
    "Mars/Olympus",
    "UTC",
    "utc",
    "Etc/GMT+14",
    "Etc/GMT-14",
    "EST5EDT",
    "Pacific/Apia",
    "Pacific/Kiritimati",
    "Antarctica/Troll",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Europe/Dublin",
    "America/St_Johns",
    "../../etc/passwd",
    "",
];

pub const DATES: &[&str] = &[
    "2026-12-20",
    "2026-02-30",
    "2026-13-01",
    "2026-1-1",
    "0000-01-01",
    "-0001-01-01",
    "+262142-12-31",
    "262143-12-31",
    "+262143-12-31",
    "-262143-01-01",
    "-262144-01-01",
    "9999-12-31T23:59",
    "+262143-12-31T23:59",
    "-262144-01-01T00:00",
    "2026-03-29T02:30",
    "2026-10-25T02:30",
    "2011-12-30T12:00",
    "2026-11-26T18:00:00+25:00",
    "2026-11-26T18:00:00Z",
    "2026-11-26T18:00:00-23:59",
    "9999-12-31T23:59:59-23:59",
    "0000-01-01T00:00:00+23:59",
    "2026-11-26 18:00",
    "2026-11-26T18:00:60",
    "2026-11-26T24:00",
];

pub const DAYS: &[&str] = &["mon", "MONDAY", "Sun", "Mo", "funday", "", "sunday "];
pub const ON_ERROR: &[&str] = &["fail_closed", "fail_open", "FAIL_OPEN", "fail", "", "yes"];
pub const STATISTICS: &[&str] = &["Sum", "SampleCount", "Average", "sum"];
pub const ARNS: &[&str] = &[
    "arn:aws:iam::111122223333:role/ReleaseManager*",
    "arn:",
    "arn:::::",
    "*",
    "arn:aws:iam::1:role/a b",
    "arn:aws:iam::1:role/***************************",
];

/// YAML scalars whose type YAML 1.1 and 1.2 disagree on, special floats, tags, and the like.
pub const YAML_SCALARS: &[&str] = &[
    "~",
    "null",
    "yes",
    "no",
    "on",
    "0x1F",
    "0o17",
    "1_000",
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "4294967296",
    "-1",
    "18446744073709551616",
    "!!str 1",
    "!!int x",
    "!!binary aGVsbG8=",
    "!custom x",
    "''",
    "\"\\u0000\"",
    "|\n  block\n",
    ">-\n  folded\n",
    "{}",
    "[]",
    "[[]]",
    "{a: }",
    // Quote characters inside plain scalars: text, not the start of a quoted string.
    "a \"b",
    "a 'b",
    "[a \"b, c]",
];

/// Extra keys: typos of real fields, unknown ones, merge keys.
pub const POLICY_KEYS: &[&str] = &[
    "timezon",
    "max_wiat",
    "on_eror",
    "windws",
    "form",
    "min_request",
    "extra",
    "<<",
    "? complex",
    "version",
    "name",
    "\"\"",
];

// -------------------------------------------------------------------------------------------------------------------
// UserParameters.

pub fn user_parameter_seeds(job_events: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = HAND_WRITTEN_USER_PARAMETERS
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    // Every override path with a value of its kind, one map per path, and all of them in one map.
    let mut all = serde_json::Map::new();
    for path in OVERRIDE_PATHS {
        let value = Value::String(override_values(path)[0].to_string());
        all.insert(path.to_string(), value.clone());
        let one = serde_json::json!({"policy": "policies/production.yaml", "overrides": {*path: value}});
        out.push(one.to_string().into_bytes());
    }
    out.push(
        serde_json::json!({"policy": "production", "overrides": all})
            .to_string()
            .into_bytes(),
    );
    // UserParameters as they arrive in job events.
    for bytes in job_events {
        let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
            continue;
        };
        let up = v.pointer("/CodePipeline.job/data/actionConfiguration/configuration/UserParameters");
        if let Some(Value::String(s)) = up {
            out.push(s.as_bytes().to_vec());
        }
    }
    out
}

const HAND_WRITTEN_USER_PARAMETERS: &[&str] = &[
    "production",
    "policies/production.yaml",
    "\"policies/production.yaml\"",
    "{\"policy\": \"production\"}",
    "{\"policy\":\"policies/production.yaml\",\"overrides\":{\"bake.duration\":\"30m\",\"max_wait\":\"2h\"}}",
    "{\"policy\":\"p\",\"overrides\":{\"bake.min_requests.at_least\":1e3,\"approval.reason_required\":false,\"concurrency.wave\":2}}",
    "{\"policy\":\"p\",\"overrides\":{\"bake.durration\":\"1h\"}}",
    "{\"policy\":\"p\",\"overrides\":{\"max_wait\":\"1h\",\"max_wait\":\"2h\"}}",
    "{\"policy\":\"p\",\"overrides\":{\"max_wait\":null}}",
    "{\"policy\":\"p\",\"overrides\":[]}",
    "{\"policy\":\"p\"} trailing",
    "{\"overides\": {}}",
    "{\"policy\": 1}",
    "[\"policy\"]",
    "/etc/passwd",
    "../policies/x.yaml",
    "policies\\x.yaml",
    "a b",
    "",
    "   ",
    "\"\"",
    "\"\\u0000\"",
    "{",
    "\"unterminated",
];

/// Values for an override path: a valid one first, then ones that must be refused or are on an edge.
pub fn override_values(path: &str) -> &'static [&'static str] {
    if path.ends_with("on_error") {
        ON_ERROR
    } else if path == "max_wait" || path.ends_with("duration") || path.ends_with("_for") || path.ends_with("wait") {
        DURATIONS
    } else if path.ends_with("at_least") {
        &[
            "1000",
            "0",
            "-1",
            "1e308",
            "1e309",
            "NaN",
            "inf",
            "-0",
            "0.0000001",
            "1_000",
            " 5 ",
            "",
        ]
    } else if path.ends_with("reason_required") {
        &["true", "false", "TRUE", "1", ""]
    } else {
        &["Staging", "", " ", "\u{0}", "name with spaces", "日本"]
    }
}
