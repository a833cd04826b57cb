//! `tollgate-load`: the full-size load and ordering run (`make load`). Drives a simulated stream through the real
//! ingest handler with the in-memory store and against the local endpoint (DynamoDB and SNS in moto), compares both
//! with the clean in-order stream and prints the figures docs/reliability.md reports.
//!
//! usage: tollgate-load [--events 100000] [--seed 2026] [--concurrency 4] [--duplicates 0.2] [--window 8]
//!                      [--store memory|moto|both]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate::local::{self, Clients, Names};
use tollgate::template::Template;
use tollgate_aws::{DynamoDbStore, SnsNotifier};
use tollgate_domain::ingest::service::{FailureWait, Ingestor};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_integration_tests::driver::{sdk_config, CountingNotifier};
use tollgate_integration_tests::load::{
    approvals_overtaken, differences, drive, executions_listed, expected, peak_rss_kib, sim_options, stored_counts,
    timelines_of, LoadOptions, LoadReport,
};
use tollgate_integration_tests::{unique_prefix, workspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stores {
    Memory,
    Moto,
    Both,
}

fn parse_args() -> Result<(LoadOptions, Stores), String> {
    let mut opts = LoadOptions::default();
    let mut stores = Stores::Both;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value:?}: expected {what}");
        match flag.as_str() {
            "--events" => opts.events = value.parse().map_err(|_| bad("a number of events"))?,
            "--seed" => opts.seed = value.parse().map_err(|_| bad("a number"))?,
            "--concurrency" => opts.concurrency = value.parse().map_err(|_| bad("a number of tasks"))?,
            "--duplicates" => opts.duplicate_rate = value.parse().map_err(|_| bad("a share between 0 and 1"))?,
            "--window" => opts.reorder_window = value.parse().map_err(|_| bad("a number of positions"))?,
            "--store" => {
                stores = match value.as_str() {
                    "memory" => Stores::Memory,
                    "moto" => Stores::Moto,
                    "both" => Stores::Both,
                    _ => return Err(bad("memory, moto or both")),
                }
            }
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok((opts, stores))
}

fn print_run(name: &str, r: &LoadReport, requests: Option<(u64, &std::collections::BTreeMap<String, u64>)>) {
    println!(
        "{name}: {} deliveries in {} batches in {:.1}s = {:.0} deliveries/s; {} recorded, {} duplicates ignored, \
         {} retried and redelivered, {} notifications",
        r.deliveries,
        r.batches,
        r.wall.as_secs_f64(),
        r.per_second(),
        r.recorded,
        r.duplicates,
        r.retried,
        r.notifications
    );
    if let Some((total, by_op)) = requests {
        println!(
            "{name}: {total} AWS requests = {:.2} per delivery: {by_op:?}",
            total as f64 / r.deliveries.max(1) as f64
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let (opts, stores) = match parse_args() {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tollgate-load: {e}");
            return ExitCode::from(2);
        }
    };
    let sim = sim_options(&opts);
    let started = Instant::now();
    let want = expected(&sim).await;
    println!(
        "clean stream: {} events, {} executions of {} pipelines, {} notifications ({:.1}s in memory, in order)",
        want.events,
        want.keys.len(),
        sim.pipelines,
        want.notifications.len(),
        started.elapsed().as_secs_f64()
    );
    let mut failed = false;

    if matches!(stores, Stores::Memory | Stores::Both) {
        let store = Arc::new(MemoryStore::new());
        let notifier = Arc::new(CountingNotifier::new(MemoryNotifier::new()));
        let ingestor = Ingestor::new(store.clone(), notifier.clone()).with_failure_wait(FailureWait {
            settle: Duration::from_millis(20),
            defer_receives: 2,
        });
        let report = drive(&ingestor, &sim, opts.concurrency).await;
        print_run("memory", &report, None);
        let timelines = timelines_of(store.as_ref(), &want.keys).await.unwrap_or_default();
        let listed = executions_listed(store.as_ref(), &want.keys).await.unwrap_or(0);
        let stored = stored_counts(store.as_ref(), &want.keys).await.unwrap_or_default();
        let published = notifier.published();
        println!(
            "memory: {} approval requests overtaken by their decision (not announced, by design)",
            approvals_overtaken(&want, &published)
        );
        let diffs = differences(&want, &report, &timelines, listed, &stored, &published, 0);
        failed |= report_diffs("memory", &diffs);
    }

    if matches!(stores, Stores::Moto | Stores::Both) {
        let Some(endpoint) = std::env::var("TOLLGATE_TEST_ENDPOINT")
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok()
        else {
            eprintln!("tollgate-load: no local endpoint: run `make load` or `eval \"$(scripts/moto.sh env)\"`");
            return ExitCode::FAILURE;
        };
        let sdk = sdk_config(&endpoint, 3, Duration::from_secs(10)).await;
        let clients = Clients::new(&sdk);
        let template = match Template::load(&workspace("infra/template.yaml")) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tollgate-load: {e}");
                return ExitCode::FAILURE;
            }
        };
        let env = match local::provision(&clients, &template, &Names::with_prefix(&unique_prefix("load"))).await {
            Ok(env) => env,
            Err(e) => {
                eprintln!("tollgate-load: provisioning on {endpoint}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let store = Arc::new(DynamoDbStore::new(
            clients.dynamodb.clone(),
            env.names.table.clone(),
            400,
        ));
        let notifier = Arc::new(CountingNotifier::new(SnsNotifier::new(
            clients.sns.clone(),
            env.topic_arn.clone(),
        )));
        let ingestor = Ingestor::new(store.clone(), notifier.clone()).with_failure_wait(FailureWait {
            settle: Duration::from_millis(200),
            defer_receives: 2,
        });
        let before = clients.counter.snapshot();
        let report = drive(&ingestor, &sim, opts.concurrency).await;
        let by_op = clients.counter.since(&before);
        let total: u64 = by_op.values().sum();
        print_run("moto", &report, Some((total, &by_op)));
        let read_started = Instant::now();
        let timelines = match timelines_of(store.as_ref(), &want.keys).await {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tollgate-load: {e}");
                Vec::new()
            }
        };
        let listed = executions_listed(store.as_ref(), &want.keys).await.unwrap_or(0);
        println!(
            "moto: read back {} timelines in {:.1}s",
            timelines.len(),
            read_started.elapsed().as_secs_f64()
        );
        let stored = stored_counts(store.as_ref(), &want.keys).await.unwrap_or_default();
        let published = notifier.published();
        println!(
            "moto: {} approval requests overtaken by their decision (not announced, by design)",
            approvals_overtaken(&want, &published)
        );
        let diffs = differences(&want, &report, &timelines, listed, &stored, &published, 0);
        failed |= report_diffs("moto", &diffs);
    }
    println!(
        "driver peak RSS: {} MiB; total wall time {:.1}s",
        peak_rss_kib().map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
        started.elapsed().as_secs_f64()
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn report_diffs(name: &str, diffs: &[String]) -> bool {
    if diffs.is_empty() {
        println!("{name}: timelines, metrics and notifications equal the clean in-order stream's; nothing lost, nothing counted twice");
        return false;
    }
    for d in diffs {
        println!("{name}: MISMATCH: {d}");
    }
    true
}
