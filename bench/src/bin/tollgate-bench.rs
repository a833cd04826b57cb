//! `tollgate-bench`: measures every function of the table against the empty function (see BENCHMARKS.md).
//!
//!   tollgate-bench [--bin-dir target/release] [--tollgate target/debug/tollgate] [--endpoint 127.0.0.1:5055]
//!                  [--events 20] [--runs 5] [--callgrind-events 5] [--no-callgrind] [--only ingest,gate]
//!                  [--out target/bench] [--tls-probe] [--env NAME=VALUE]...
//!
//! Needs the local endpoint running (scripts/moto.sh start), valgrind and zip. Prints Markdown tables and writes
//! them with the raw figures (results.json) under --out.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tollgate_bench::functions::{
    table, FunctionSpec, Resources, BENCH_ALARM, BENCH_APPROVER, BENCH_CHAT_USER, BENCH_SIGNING_SECRET,
    CHANGESET_ARTIFACT_KEY, CHANGESET_TEMPLATE, GATE_ARTIFACT_BUCKET, GATE_ARTIFACT_KEY,
};
use tollgate_bench::http::{read_message, write_message};
use tollgate_bench::measure::{median, Bench, Instructions, NativeRun, Target};
use tollgate_bench::proxy::{CountingProxy, Counts, Stub, JOB_ID_PLACEHOLDER};

struct Options {
    bin_dir: PathBuf,
    tollgate: PathBuf,
    endpoint: SocketAddr,
    events: usize,
    runs: usize,
    callgrind_events: usize,
    callgrind: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
    /// Adds a row that opens one TLS connection on its first invocation (the entropy-seeding lever).
    tls_probe: bool,
    /// Extra environment for every row (e.g. `SSL_CERT_FILE`, to measure a smaller trust store).
    env: Vec<(String, String)>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        bin_dir: "target/release".into(),
        tollgate: "target/debug/tollgate".into(),
        endpoint: "127.0.0.1:5055".parse().map_err(|e| format!("{e}"))?,
        events: 20,
        runs: 5,
        callgrind_events: 5,
        callgrind: true,
        only: None,
        out: "target/bench".into(),
        tls_probe: false,
        env: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|_| format!("{v:?} is not a whole number"));
        match arg.as_str() {
            "--bin-dir" => o.bin_dir = value()?.into(),
            "--tollgate" => o.tollgate = value()?.into(),
            "--endpoint" => o.endpoint = value()?.parse().map_err(|e| format!("--endpoint: {e}"))?,
            "--events" => o.events = number(value()?)?.max(1),
            "--runs" => o.runs = number(value()?)?.max(1),
            "--callgrind-events" => o.callgrind_events = number(value()?)?.max(1),
            "--no-callgrind" => o.callgrind = false,
            "--only" => o.only = Some(value()?.split(',').map(|s| s.trim().to_string()).collect()),
            "--out" => o.out = value()?.into(),
            "--tls-probe" => o.tls_probe = true,
            "--env" => {
                let v = value()?;
                let (k, val) = v
                    .split_once('=')
                    .ok_or_else(|| format!("--env {v:?}: expected NAME=VALUE"))?;
                o.env.push((k.to_string(), val.to_string()));
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; see the usage at the top of bench/src/bin/"
                ))
            }
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("tollgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything measured of one row.
#[derive(Default)]
struct Row {
    name: String,
    baseline_of: Option<String>,
    zip_bytes: Option<u64>,
    native: Vec<NativeRun>,
    instructions: Option<Instructions>,
    events: usize,
    problem: Option<String>,
}

fn run() -> Result<bool, Box<dyn std::error::Error>> {
    let o = options()?;
    fs::create_dir_all(&o.out)?;
    let resources = provision(&o)?;
    let proxy = CountingProxy::start(o.endpoint, stubs())?;
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis().to_string();
    let bench = Bench {
        proxy: &proxy,
        out_dir: o.out.clone(),
        nonce,
        sequence: std::cell::Cell::new(0),
        timeout: Duration::from_secs(if o.callgrind { 300 } else { 60 }),
    };
    let specs = table();
    let empty_sdk = FunctionSpec {
        binary: "empty-sdk-function",
        ..table().remove(0)
    };
    let mut targets: Vec<Target> = Vec::new();
    let mut baselines_done: Vec<&str> = Vec::new();
    for spec in &specs {
        let wanted = o
            .only
            .as_ref()
            .is_none_or(|only| spec.baseline || only.iter().any(|n| n == spec.binary));
        if !wanted {
            continue;
        }
        if !spec.baseline && !spec.clients.is_empty() && !baselines_done.contains(&spec.clients) {
            baselines_done.push(spec.clients);
            targets.push(Target {
                name: format!("empty-sdk[{}]", spec.clients),
                binary: o.bin_dir.join(empty_sdk.binary),
                env: vec![("TOLLGATE_BENCH_CLIENTS".into(), spec.clients.into())],
                spec: &empty_sdk,
            });
        }
        targets.push(Target {
            name: spec.binary.to_string(),
            binary: o.bin_dir.join(spec.binary),
            env: (spec.env)(&resources),
            spec,
        });
    }
    let sink = tls_sink()?;
    if o.tls_probe {
        targets.push(Target {
            name: "tls-probe".into(),
            binary: o.bin_dir.join(empty_sdk.binary),
            env: vec![
                ("TOLLGATE_BENCH_CLIENTS".into(), "dynamodb".into()),
                ("TOLLGATE_BENCH_PROBE".into(), "1".into()),
                ("AWS_ENDPOINT_URL".into(), format!("https://{sink}")),
            ],
            spec: &empty_sdk,
        });
    }
    for target in &mut targets {
        target.env.extend(o.env.iter().cloned());
    }
    let mut rows = Vec::new();
    for target in &targets {
        eprintln!("== {}", target.name);
        let mut row = Row {
            name: target.name.clone(),
            baseline_of: target
                .name
                .strip_prefix("empty-sdk[")
                .map(|c| c.trim_end_matches(']').to_string()),
            events: o.events,
            ..Row::default()
        };
        row.zip_bytes = zip_size(&target.binary, &o.out)
            .map_err(|e| eprintln!("  zip: {e}"))
            .ok();
        for i in 0..o.runs {
            match bench.native_run(target, o.events) {
                Ok(run) => {
                    eprintln!(
                        "  run {}: init {:?}, first event {:?}",
                        i + 1,
                        run.init,
                        run.first_event
                    );
                    row.native.push(run);
                }
                Err(e) => {
                    row.problem = Some(e.to_string());
                    break;
                }
            }
        }
        if o.callgrind && row.problem.is_none() {
            match bench.instructions(target, o.callgrind_events) {
                Ok(i) => row.instructions = Some(i),
                Err(e) => row.problem = Some(e.to_string()),
            }
        }
        if let Some(p) = &row.problem {
            eprintln!("  PROBLEM: {p}");
        }
        rows.push(row);
    }
    let report = render(&rows, &specs, &o, &proxy);
    print!("{report}");
    fs::write(o.out.join("report.md"), &report)?;
    fs::write(
        o.out.join("results.json"),
        serde_json::to_string_pretty(&results_json(&rows))?,
    )?;
    eprintln!("written: {0}/report.md, {0}/results.json", o.out.display());
    Ok(rows.iter().all(|r| r.problem.is_none()))
}

/// A TCP endpoint that reads what it is sent and closes: enough for a client to seed its TLS randomness and send
/// its ClientHello, so the TLS probe row's first event includes the first TLS use.
fn tls_sink() -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::Builder::new().name("tls-sink".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut &stream, &mut buf);
        }
    })?;
    Ok(addr)
}

/// Operations the local endpoint does not serve, answered by the proxy (and reported as stubbed).
fn stubs() -> BTreeMap<String, Stub> {
    let json_ok = Stub {
        status: 200,
        headers: vec![("Content-Type".into(), "application/x-amz-json-1.1".into())],
        body: b"{}".to_vec(),
    };
    // CloudWatch's RPC v2 CBOR protocol: an empty map (0xa0) is a valid empty output (no alarms, no data).
    let cbor_empty = Stub {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "application/cbor".into()),
            ("smithy-protocol".into(), "rpc-v2-cbor".into()),
        ],
        body: vec![0xa0],
    };
    // The gate and changeset read where their job runs (pipeline, stage, action, execution) from GetJobDetails. Each
    // job is of an execution of its own (named after the job id), as each run of a pipeline's action is; a
    // redelivered job keeps its execution.
    let job_details = json!({"jobDetails": {"id": JOB_ID_PLACEHOLDER, "accountId": "111122223333", "data": {
        "pipelineContext": {
            "pipelineName": "checkout-service",
            "stage": {"name": "Production"},
            "action": {"name": "Gate", "actionExecutionId": "bench-action"},
            "pipelineArn": "arn:aws:codepipeline:eu-west-1:111122223333:checkout-service",
            "pipelineExecutionId": JOB_ID_PLACEHOLDER
        }
    }}});
    let mut stubs = BTreeMap::new();
    stubs.insert(
        "codepipeline.GetJobDetails".to_string(),
        Stub {
            body: job_details.to_string().into_bytes(),
            ..json_ok.clone()
        },
    );
    stubs.insert(
        "codedeploy.PutLifecycleEventHookExecutionStatus".to_string(),
        json_ok.clone(),
    );
    for op in ["PutJobSuccessResult", "PutJobFailureResult"] {
        stubs.insert(format!("codepipeline.{op}"), json_ok.clone());
    }
    // The alarms the gate's policy names and the hook checks, both OK since 2026-11-01: the hook passes without a
    // notification and the gate's alarm check passes (an empty answer would make them missing).
    stubs.insert(
        "monitoring.DescribeAlarms".to_string(),
        Stub {
            body: cbor_alarms(&[BENCH_ALARM, "checkout-service-latency-p99"], 1_793_491_200),
            ..cbor_empty.clone()
        },
    );
    for op in ["GetMetricData", "GetMetricStatistics", "DescribeAlarmHistory"] {
        stubs.insert(format!("monitoring.{op}"), cbor_empty.clone());
    }
    stubs
}

/// A DescribeAlarms output in CBOR: `{"MetricAlarms": [{"AlarmName": n, "StateValue": "OK",
/// "StateTransitionedTimestamp": since}, ...]}` (timestamps are tag 1 over epoch seconds).
fn cbor_alarms(names: &[&str], since: u32) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        match s.len() {
            n @ 0..=23 => out.push(0x60 | n as u8),
            n => {
                out.push(0x78);
                out.push(n as u8);
            }
        }
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![0xa1];
    text(&mut out, "MetricAlarms");
    out.push(0x80 | names.len() as u8);
    for name in names {
        out.push(0xa3);
        text(&mut out, "AlarmName");
        text(&mut out, name);
        text(&mut out, "StateValue");
        text(&mut out, "OK");
        text(&mut out, "StateTransitionedTimestamp");
        out.extend_from_slice(&[0xc1, 0x1a]);
        out.extend_from_slice(&since.to_be_bytes());
    }
    out
}

/// The template's table and topic (through `tollgate local provision`), the gate's and the changeset's input
/// artifacts, the approval function's signing secret and its linked chat user.
fn provision(o: &Options) -> Result<Resources, Box<dyn std::error::Error>> {
    let output = Command::new(&o.tollgate)
        .args(["local", "provision", "--prefix", "tollgate-bench"])
        .env("AWS_ENDPOINT_URL", format!("http://{}", o.endpoint))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "eu-west-1")
        .output()
        .map_err(|e| format!("cannot run {} (cargo build -p tollgate): {e}", o.tollgate.display()))?;
    if !output.status.success() {
        return Err(format!(
            "provisioning the local endpoint {} failed (is it running? scripts/moto.sh start): {}",
            o.endpoint,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .ok_or_else(|| format!("`tollgate local provision` printed no `{name}` line:\n{stdout}"))
    };
    let table = field("table ")?;
    let resources = Resources {
        topic_arn: field("topic ")?,
        signing_secret_arn: signing_secret(o.endpoint)?,
        table: table.clone(),
    };
    upload_policy_artifact(o)?;
    upload_changeset_artifact(o)?;
    link_chat_user(o, &table)?;
    Ok(resources)
}

/// The approval function reads its signing secret from Secrets Manager at init: created once (a re-run finds it),
/// its ARN read back.
fn signing_secret(endpoint: SocketAddr) -> Result<String, Box<dyn std::error::Error>> {
    let name = "tollgate-bench-chat-signing-secret";
    let create = json!({"Name": name, "SecretString": BENCH_SIGNING_SECRET}).to_string();
    let (status, _) = json_call(endpoint, "secretsmanager", "secretsmanager.CreateSecret", &create)?;
    if status != 200 && status != 400 {
        return Err(format!("creating the signing secret answered HTTP {status}").into());
    }
    let describe = json!({"SecretId": name}).to_string();
    let (status, body) = json_call(endpoint, "secretsmanager", "secretsmanager.DescribeSecret", &describe)?;
    let arn = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("ARN").and_then(Value::as_str).map(str::to_string));
    arn.ok_or_else(|| format!("the signing secret has no ARN (DescribeSecret answered HTTP {status})").into())
}

/// Links the chat user that signs the approval requests to an approver, as an administrator would.
fn link_chat_user(o: &Options, table: &str) -> Result<(), Box<dyn std::error::Error>> {
    let output = Command::new(&o.tollgate)
        .args([
            "identity",
            "link",
            "--table",
            table,
            "--chat",
            BENCH_CHAT_USER,
            "--principal",
            BENCH_APPROVER,
        ])
        .env("AWS_ENDPOINT_URL", format!("http://{}", o.endpoint))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "eu-west-1")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", o.tollgate.display()))?;
    if !output.status.success() {
        return Err(format!(
            "linking the approval row's chat user failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    Ok(())
}

/// The changeset jobs' input artifact: a zip holding the template as `stack.yaml`.
fn upload_changeset_artifact(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let dir = o.out.join("changeset-artifact");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("stack.yaml"), CHANGESET_TEMPLATE)?;
    let zip = dir.join("artifact.zip");
    let _ = fs::remove_file(&zip);
    let status = Command::new("zip")
        .args(["-q", "-j", "-X"])
        .arg(&zip)
        .arg(dir.join("stack.yaml"))
        .status()?;
    if !status.success() {
        return Err("zip could not pack the changeset's template".into());
    }
    let status = s3_put(
        o.endpoint,
        &format!("/{GATE_ARTIFACT_BUCKET}/{CHANGESET_ARTIFACT_KEY}"),
        &fs::read(&zip)?,
    )?;
    if status != 200 {
        return Err(format!("uploading the changeset's artifact answered HTTP {status}").into());
    }
    Ok(())
}

/// The gate reads its policy from the pipeline's input artifact: a zip of the committed `policies/` (not the work
/// tree's, which may be ahead of the binaries being measured).
fn upload_policy_artifact(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let zip = o.out.join("policy-artifact.zip");
    let status = Command::new("git")
        .args(["archive", "--format=zip", "-o"])
        .arg(&zip)
        .args(["HEAD", "policies"])
        .status()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !status.success() {
        return Err("git archive could not pack policies/ (run from the repository root)".into());
    }
    let body = fs::read(&zip)?;
    let config =
        b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>";
    // An existing bucket answers 409, which is fine on a re-run.
    s3_put(o.endpoint, &format!("/{GATE_ARTIFACT_BUCKET}"), config)?;
    let status = s3_put(
        o.endpoint,
        &format!("/{GATE_ARTIFACT_BUCKET}/{GATE_ARTIFACT_KEY}"),
        &body,
    )?;
    if status != 200 {
        return Err(format!("uploading the gate's policy artifact answered HTTP {status}").into());
    }
    Ok(())
}

fn s3_put(endpoint: SocketAddr, path: &str, body: &[u8]) -> Result<u16, Box<dyn std::error::Error>> {
    Ok(raw_call(endpoint, "s3", &format!("PUT {path} HTTP/1.1"), Vec::new(), body)?.0)
}

/// A JSON-protocol call (`X-Amz-Target`) to the local endpoint: its status and body.
fn json_call(
    endpoint: SocketAddr,
    service: &str,
    target: &str,
    body: &str,
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    let headers = vec![
        ("Content-Type".to_string(), "application/x-amz-json-1.1".to_string()),
        ("X-Amz-Target".to_string(), target.to_string()),
    ];
    raw_call(endpoint, service, "POST / HTTP/1.1", headers, body.as_bytes())
}

/// One request to the local endpoint, which routes by the service named in the (unchecked) signature.
fn raw_call(
    endpoint: SocketAddr,
    service: &str,
    line: &str,
    mut headers: Vec<(String, String)>,
    body: &[u8],
) -> Result<(u16, Vec<u8>), Box<dyn std::error::Error>> {
    let stream = TcpStream::connect_timeout(&endpoint, Duration::from_secs(5))?;
    let mut writer = stream.try_clone()?;
    headers.extend([
        ("Host".to_string(), endpoint.to_string()),
        (
            "Authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261122/eu-west-1/{service}/aws4_request, SignedHeaders=host, \
                 Signature=0"
            ),
        ),
        ("Connection".to_string(), "close".to_string()),
    ]);
    write_message(&mut writer, line, &headers, body)?;
    writer.flush()?;
    let response = read_message(&mut BufReader::new(stream), true)?.ok_or("the endpoint closed without answering")?;
    Ok((response.status(), response.body))
}

/// The deployment package: the binary as `bootstrap`, zipped (what `cargo lambda build --output-format zip` makes).
fn zip_size(binary: &Path, out: &Path) -> Result<u64, Box<dyn std::error::Error>> {
    let name = binary
        .file_name()
        .ok_or("binary path has no file name")?
        .to_string_lossy()
        .to_string();
    let dir = out.join("zip").join(&name);
    fs::create_dir_all(&dir)?;
    fs::copy(binary, dir.join("bootstrap"))?;
    let zip = dir.join(format!("{name}.zip"));
    let _ = fs::remove_file(&zip);
    let status = Command::new("zip")
        .args(["-q", "-9", "-j", "-X"])
        .arg(&zip)
        .arg(dir.join("bootstrap"))
        .status()?;
    if !status.success() {
        return Err("zip failed".into());
    }
    Ok(fs::metadata(&zip)?.len())
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mi(n: u64) -> String {
    format!("{:.2}", n as f64 / 1e6)
}

fn ki(n: u64) -> String {
    format!("{:.0}", n as f64 / 1e3)
}

fn per_event(counts: &Counts, n: usize) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(op, c)| {
            let v = *c as f64 / n as f64;
            if v.fract() == 0.0 {
                format!("{op} {v:.0}")
            } else {
                format!("{op} {v:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn all<F: Fn(&NativeRun) -> Duration>(row: &Row, f: F) -> Duration {
    median(&row.native.iter().map(f).collect::<Vec<_>>())
}

fn steady(row: &Row, duplicates: bool) -> Duration {
    let values: Vec<Duration> = row
        .native
        .iter()
        .flat_map(|r| {
            if duplicates {
                r.duplicates.clone()
            } else {
                r.new_events.clone()
            }
        })
        .collect();
    median(&values)
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.2}", a as f64 / b as f64)
    }
}

fn render(rows: &[Row], specs: &[FunctionSpec], o: &Options, proxy: &CountingProxy) -> String {
    let mut s = String::new();
    let empty = rows
        .iter()
        .find(|r| r.name == "empty-function")
        .and_then(|r| r.instructions);
    let sdk_of = |clients: &str| {
        rows.iter()
            .find(|r| r.baseline_of.as_deref() == Some(clients))
            .and_then(|r| r.instructions)
    };
    s.push_str(&format!(
        "Runs: {} per row without valgrind ({} new events and {} duplicates each; wall times are medians), \
         4 callgrind runs per row ({} events each).\n\n",
        o.runs, o.events, o.events, o.callgrind_events
    ));
    s.push_str("| function | zip KB | init ms | init Minstr | x empty | x empty+SDK | first event ms | first event Minstr | new event ms | new event Kinstr | duplicate ms | duplicate Kinstr | peak RSS MB |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let clients = specs.iter().find(|sp| sp.binary == row.name).map(|sp| sp.clients);
        let zip = row.zip_bytes.map(ki).unwrap_or_else(|| "-".into());
        if row.native.is_empty() {
            let problem = row.problem.as_deref().unwrap_or("not measured");
            let first_line = problem.lines().next().unwrap_or("");
            s.push_str(&format!(
                "| {} | {zip} | did not run: {} |||||||||||\n",
                row.name,
                first_line.replace('|', "/")
            ));
            continue;
        }
        let i = row.instructions;
        let cell = |f: &dyn Fn(&Instructions) -> String| i.as_ref().map(f).unwrap_or_else(|| "-".into());
        let x_empty = match (i, empty) {
            (Some(i), Some(e)) => ratio(i.init, e.init),
            _ => "-".into(),
        };
        let x_sdk = match (i, clients.and_then(sdk_of)) {
            (Some(i), Some(e)) if row.baseline_of.is_none() => ratio(i.init, e.init),
            _ => "-".into(),
        };
        let rss = row.native.iter().map(|r| r.peak_rss_kb).max().unwrap_or(0);
        s.push_str(&format!(
            "| {} | {zip} | {} | {} | {x_empty} | {x_sdk} | {} | {} | {} | {} | {} | {} | {:.1} |\n",
            row.name,
            ms(all(row, |r| r.init)),
            cell(&|i| mi(i.init)),
            ms(all(row, |r| r.first_event)),
            cell(&|i| mi(i.first_event)),
            ms(steady(row, false)),
            cell(&|i| ki(i.new_event)),
            ms(steady(row, true)),
            cell(&|i| ki(i.duplicate)),
            rss as f64 / 1024.0,
        ));
    }
    s.push_str("\nAWS requests per event, counted at the endpoint (first run of each row):\n\n");
    s.push_str("| function | first event | new event | duplicate |\n|---|---|---|---|\n");
    for row in rows.iter().filter(|r| r.baseline_of.is_none()) {
        if let Some(run) = row.native.first() {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                row.name,
                per_event(&run.first_requests, 1),
                per_event(&run.new_requests, row.events),
                per_event(&run.duplicate_requests, row.events)
            ));
        }
    }
    let stubbed = proxy.stubbed();
    if !stubbed.is_empty() {
        s.push_str(&format!(
            "\nAnswered by the harness (the local endpoint lacks them): {}\n",
            per_event(&stubbed, 1)
        ));
    }
    let failures = proxy.failures();
    if !failures.is_empty() {
        s.push_str(&format!(
            "\nServer errors from the local endpoint ({}), first ones:\n\n",
            failures.len()
        ));
        for f in failures.iter().take(5) {
            s.push_str(&format!("- {}\n", f.replace('\n', " ")));
        }
    }
    let problems: Vec<&Row> = rows.iter().filter(|r| r.problem.is_some()).collect();
    if !problems.is_empty() {
        s.push_str("\nProblems:\n\n");
        for r in problems {
            s.push_str(&format!(
                "- {}\n",
                r.problem.as_deref().unwrap_or("").replace('\n', "\n  ")
            ));
        }
    }
    s
}

fn results_json(rows: &[Row]) -> Value {
    let counts = |c: &Counts| json!(c);
    Value::Array(
        rows.iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "zip_bytes": r.zip_bytes,
                    "problem": r.problem,
                    "instructions": r.instructions.map(|i| json!({
                        "init": i.init, "first_event": i.first_event, "new_event": i.new_event, "duplicate": i.duplicate
                    })),
                    "runs": r.native.iter().map(|n| json!({
                        "init_us": n.init.as_micros() as u64,
                        "first_event_us": n.first_event.as_micros() as u64,
                        "new_events_us": n.new_events.iter().map(|d| d.as_micros() as u64).collect::<Vec<_>>(),
                        "duplicates_us": n.duplicates.iter().map(|d| d.as_micros() as u64).collect::<Vec<_>>(),
                        "peak_rss_kb": n.peak_rss_kb,
                        "first_requests": counts(&n.first_requests),
                        "new_requests": counts(&n.new_requests),
                        "duplicate_requests": counts(&n.duplicate_requests),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}
