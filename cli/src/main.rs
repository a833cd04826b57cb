//! `tollgate`: the engineers' command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};
use tollgate::demo::{self, DemoOptions};
use tollgate::local::{self, Clients, DeliveryPlan, Names};
use tollgate::replay::{self, MetricsConfigFile, Replayer};
use tollgate::simulate::{self, SimOptions};
use tollgate::template::Template;
use tollgate_domain::metrics::Period;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: deployment timelines, gates and notifications for AWS CodePipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs Tollgate against a local AWS endpoint (AWS_ENDPOINT_URL, e.g. moto server from scripts/moto.sh).
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// Replays recorded EventBridge events offline (in memory) and prints timelines and delivery metrics.
    ///
    /// PATH is a file holding one event, a JSON array of events or JSON lines (one event per line), a folder (walked
    /// for *.json, *.jsonl, *.ndjson), or - for standard input.
    Replay {
        /// Files or folders of events, or - for standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// text: timelines and metric tables; json: one document whose fields are documented in docs/metrics.md.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        #[command(flatten)]
        metrics: MetricsArgs,
        /// Print no progress on standard error.
        #[arg(long)]
        quiet: bool,
    },
    /// Writes an HTML page with delivery-metric charts from recorded events (same inputs as replay).
    Report {
        /// Where to write the page.
        #[arg(long, value_name = "FILE")]
        html: PathBuf,
        /// Files or folders of events, or - for standard input.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        metrics: MetricsArgs,
        /// Print no progress on standard error.
        #[arg(long)]
        quiet: bool,
    },
    /// Lists pipelines that ran recently with their latest execution (reads the table).
    Status {
        #[command(flatten)]
        table: TableArgs,
        /// How far back to look, in days.
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
    /// Prints the timeline of an execution (the pipeline's latest by default; reads the table).
    Timeline {
        #[command(flatten)]
        table: TableArgs,
        /// The pipeline's name.
        #[arg(long)]
        pipeline: String,
        /// The execution id (default: the latest execution).
        #[arg(long)]
        execution: Option<String>,
        /// The pipeline's account (or TOLLGATE_ACCOUNT).
        #[arg(long, env = "TOLLGATE_ACCOUNT")]
        account: String,
        /// The pipeline's region (default: the SDK's region).
        #[arg(long)]
        region: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Computes delivery metrics from the table for a period (default: the last 7 whole days).
    Metrics {
        #[command(flatten)]
        table: TableArgs,
        #[command(flatten)]
        metrics: MetricsArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Generates realistic EventBridge event streams (deterministic for a seed), as JSON lines or onto a bus.
    Simulate {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of pipelines.
        #[arg(long, default_value_t = 5)]
        pipelines: usize,
        /// Executions per pipeline.
        #[arg(long, default_value_t = 10)]
        executions: usize,
        /// First execution start (YYYY-MM-DD or RFC 3339).
        #[arg(long, default_value = "2026-11-02", value_parser = replay::parse_time_arg)]
        start: chrono::DateTime<chrono::Utc>,
        /// Share of executions whose build fails.
        #[arg(long, default_value_t = 0.1, value_parser = rate)]
        build_failure_rate: f64,
        /// Share of executions whose production deployment fails.
        #[arg(long, default_value_t = 0.15, value_parser = rate)]
        deploy_failure_rate: f64,
        /// Share of pipelines with a Manual approval before production.
        #[arg(long, default_value_t = 0.3, value_parser = rate)]
        approval_rate: f64,
        /// Share of failed production deployments rolled back automatically on an alarm.
        #[arg(long, default_value_t = 0.5, value_parser = rate)]
        rollback_rate: f64,
        /// Share of events delivered twice.
        #[arg(long, default_value_t = 0.2, value_parser = rate)]
        duplicates: f64,
        /// How far (in events) an event may be displaced from time order.
        #[arg(long, default_value_t = 8)]
        reorder_window: usize,
        /// Accounts to spread pipelines over (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "111122223333")]
        accounts: Vec<String>,
        /// Regions to spread pipelines over (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "eu-west-1")]
        regions: Vec<String>,
        /// Write JSON lines here (- for standard output).
        #[arg(long, default_value = "-", conflicts_with = "send_to_bus")]
        out: PathBuf,
        /// Send the events to this EventBridge bus instead (uses AWS_ENDPOINT_URL when set).
        #[arg(long, value_name = "BUS")]
        send_to_bus: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Timelines and metric tables for people.
    Text,
    /// One JSON document (fields documented in docs/metrics.md).
    Json,
}

#[derive(clap::Args)]
struct TableArgs {
    /// The Tollgate table.
    #[arg(long, env = "TOLLGATE_TABLE_NAME")]
    table: String,
}

#[derive(clap::Args)]
struct MetricsArgs {
    /// Start of the metrics period (YYYY-MM-DD or RFC 3339; default: the first day of the data).
    #[arg(long, value_parser = replay::parse_time_arg)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the metrics period, exclusive (default: the day after the last day of the data).
    #[arg(long, value_parser = replay::parse_time_arg)]
    to: Option<chrono::DateTime<chrono::Utc>>,
    /// Pipeline settings: {"pipelines": {"<name>": {"team": "...", "production_stages": ["..."]}}}.
    #[arg(long, value_name = "FILE")]
    pipelines: Option<PathBuf>,
}

#[derive(Subcommand)]
enum LocalCommand {
    /// Creates the table, topic, queues, bus and rules of the template on the local endpoint.
    Provision {
        #[arg(long, default_value = "infra/template.yaml")]
        template: PathBuf,
        /// Prefix of the local resource names.
        #[arg(long, default_value = "tollgate-local")]
        prefix: String,
    },
    /// Sends a pipeline story through EventBridge into the ingest handler and prints timelines and notifications.
    Demo {
        #[arg(long, default_value = "events/story/failed-deploy-and-fix.json")]
        story: PathBuf,
        #[arg(long, default_value = "infra/template.yaml")]
        template: PathBuf,
        #[arg(long, default_value = "tollgate-local")]
        prefix: String,
        /// Seed of the delivery order, duplicates and lost acknowledgements.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Share of events delivered twice through EventBridge (0 to 1).
        #[arg(long, default_value_t = 0.25, value_parser = rate)]
        duplicates: f64,
        /// How far (in events) an event may be displaced from its place in the story.
        #[arg(long, default_value_t = 6)]
        window: usize,
        /// Share of processed messages whose acknowledgement is lost, so SQS delivers them again (0 to 1).
        #[arg(long, default_value_t = 0.1, value_parser = rate)]
        lose_acks: f64,
        /// The account the local endpoint stamps on routed events (scripts/moto.sh sets it).
        #[arg(long, env = "TOLLGATE_LOCAL_ACCOUNT", default_value = "111122223333")]
        account: String,
    },
}

fn rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let command = match cli.command {
        Command::Local { command } => command,
        Command::Replay {
            paths,
            format,
            metrics,
            quiet,
        } => return replay_command(&paths, format, &metrics, quiet).await,
        Command::Report {
            html,
            paths,
            metrics,
            quiet,
        } => return report_command(&html, &paths, &metrics, quiet).await,
        Command::Status { table, days } => {
            let store = table_store(&table).await;
            let to = chrono::Utc::now();
            print!(
                "{}",
                tollgate::table::status(&store, to - chrono::Duration::days(days), to).await?
            );
            return Ok(());
        }
        Command::Timeline {
            table,
            pipeline,
            execution,
            account,
            region,
            format,
        } => {
            let sdk = tollgate_aws::config::sdk_config().await;
            let region = region
                .or_else(|| sdk.region().map(|r| r.to_string()))
                .ok_or("no region: pass --region or set AWS_REGION")?;
            let store = table_store(&table).await;
            let key = tollgate_domain::keys::PipelineKey {
                account,
                region,
                pipeline,
            };
            let Some(t) = tollgate::table::timeline(&store, &key, execution.as_deref()).await? else {
                return Err(format!(
                    "no execution of {} in {} {} recorded in table {}",
                    key.pipeline, key.account, key.region, table.table
                )
                .into());
            };
            match format {
                Format::Text => print!("{}", tollgate::render::timeline(&t)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&t)?),
            }
            return Ok(());
        }
        Command::Metrics { table, metrics, format } => {
            let store = table_store(&table).await;
            let period = match period_of(&metrics)? {
                Some(p) => p,
                None => {
                    let today = chrono::Utc::now()
                        .date_naive()
                        .and_hms_opt(0, 0, 0)
                        .expect("midnight")
                        .and_utc();
                    Period {
                        from: today - chrono::Duration::days(7),
                        to: today,
                    }
                }
            };
            let report = tollgate::table::metrics(&store, &configs_of(&metrics)?, &period).await?;
            match format {
                Format::Text => print!("{}", tollgate::render::metrics(&report)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            return Ok(());
        }
        Command::Simulate {
            seed,
            pipelines,
            executions,
            start,
            build_failure_rate,
            deploy_failure_rate,
            approval_rate,
            rollback_rate,
            duplicates,
            reorder_window,
            accounts,
            regions,
            out,
            send_to_bus,
        } => {
            let opts = SimOptions {
                seed,
                pipelines,
                executions_per_pipeline: executions,
                start,
                accounts,
                regions,
                build_failure_rate,
                deploy_failure_rate,
                approval_rate,
                rollback_rate,
                duplicate_rate: duplicates,
                reorder_window,
            };
            return simulate_command(&opts, &out, send_to_bus.as_deref()).await;
        }
    };
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        return Err("AWS_ENDPOINT_URL is not set: `tollgate local` only talks to a local endpoint (run `make demo`, or `eval \"$(scripts/moto.sh env)\"` after `scripts/moto.sh start`)".into());
    }
    let sdk = tollgate_aws::config::sdk_config().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "eu-west-1".into());
    let clients = Clients::new(&sdk);
    match command {
        LocalCommand::Provision { template, prefix } => {
            let template = Template::load(&template)?;
            let env = local::provision(&clients, &template, &Names::with_prefix(&prefix)).await?;
            println!("table     {}", env.names.table);
            println!("topic     {}", env.topic_arn);
            println!("queue     {} (dead letters: {})", env.queue_url, env.dlq_url);
            println!("inbox     {}", env.inbox_url);
            for r in env.rules {
                println!("rule      {r}");
            }
        }
        LocalCommand::Demo {
            story,
            template,
            prefix,
            seed,
            duplicates,
            window,
            lose_acks,
            account,
        } => {
            let opts = DemoOptions {
                story,
                template,
                prefix,
                plan: DeliveryPlan {
                    seed,
                    window,
                    duplicate_rate: duplicates,
                },
                lose_ack_rate: lose_acks,
                account,
                region,
            };
            let report = demo::run(&clients, &opts).await?;
            print!("{}", demo::print(&report));
        }
    }
    Ok(())
}

/// Replays every input into a fresh in-memory replayer, with progress on standard error.
async fn replay_inputs(paths: &[PathBuf], quiet: bool) -> Result<Replayer, Box<dyn std::error::Error>> {
    let files = replay::input_files(paths)?;
    let mut replayer = Replayer::new();
    let started = std::time::Instant::now();
    // A reader thread streams events through a bounded channel, so a large file is never held in memory whole.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<replay::Located, replay::ReplayError>>(4096);
    let reader_files = files.clone();
    let reader = std::thread::spawn(move || {
        for file in &reader_files {
            let sent = replay::read_events(file, |e| {
                // The receiver only goes away when the replay failed; the error is reported there.
                let _ = tx.blocking_send(Ok(e));
            });
            if let Err(e) = sent {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    });
    while let Some(next) = rx.recv().await {
        replayer.ingest(next?).await?;
        if !quiet && replayer.counts.read % 25_000 == 0 {
            eprintln!(
                "replay: {} events read, {} recorded ({:.0} events/s)",
                replayer.counts.read,
                replayer.counts.recorded,
                replayer.counts.read as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    reader.join().map_err(|_| "the input reader thread panicked")?;
    if !quiet {
        let c = replayer.counts;
        eprintln!(
            "replay: {} events read from {} file(s) in {:.2}s: {} recorded, {} duplicates, {} rejected",
            c.read,
            files.len(),
            started.elapsed().as_secs_f64(),
            c.recorded,
            c.duplicates,
            c.rejected
        );
        for (at, reason) in &replayer.first_rejections {
            eprintln!("replay: rejected {at}: {reason}");
        }
    }
    Ok(replayer)
}

fn period_of(m: &MetricsArgs) -> Result<Option<Period>, Box<dyn std::error::Error>> {
    match (m.from, m.to) {
        (None, None) => Ok(None),
        (Some(from), Some(to)) if from < to => Ok(Some(Period { from, to })),
        (Some(_), Some(_)) => Err("--from must be before --to".into()),
        _ => Err("give both --from and --to, or neither (the period then spans the data)".into()),
    }
}

fn configs_of(
    m: &MetricsArgs,
) -> Result<std::collections::BTreeMap<String, tollgate_domain::metrics::PipelineConfig>, Box<dyn std::error::Error>> {
    Ok(match &m.pipelines {
        Some(path) => MetricsConfigFile::load(path)?.configs(),
        None => Default::default(),
    })
}

async fn replay_command(
    paths: &[PathBuf],
    format: Format,
    metrics: &MetricsArgs,
    quiet: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let period = period_of(metrics)?;
    let configs = configs_of(metrics)?;
    let replayer = replay_inputs(paths, quiet).await?;
    let (report, timelines) = replayer.report(&configs, period).await?;
    let mut stdout = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut stdout, &report)?;
            writeln!(stdout)?;
        }
        Format::Text => {
            for t in &timelines {
                writeln!(stdout, "{}", tollgate::render::timeline(t))?;
            }
            write!(stdout, "{}", tollgate::render::metrics(&report.metrics))?;
        }
    }
    Ok(())
}

async fn report_command(
    html: &std::path::Path,
    paths: &[PathBuf],
    metrics: &MetricsArgs,
    quiet: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let period = period_of(metrics)?;
    let configs = configs_of(metrics)?;
    let replayer = replay_inputs(paths, quiet).await?;
    let (report, timelines) = replayer.report(&configs, period).await?;
    let page = tollgate::report::html(&timelines, &configs, &report.metrics, chrono::Utc::now());
    std::fs::write(html, page).map_err(|e| format!("cannot write {}: {e}", html.display()))?;
    if !quiet {
        eprintln!("report: wrote {} ({} executions)", html.display(), timelines.len());
    }
    Ok(())
}

async fn simulate_command(
    opts: &SimOptions,
    out: &std::path::Path,
    bus: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    if opts.pipelines == 0 || opts.executions_per_pipeline == 0 {
        return Err("--pipelines and --executions must be at least 1".into());
    }
    if opts
        .accounts
        .iter()
        .any(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("--accounts must be 12-digit AWS account ids, got {:?}", opts.accounts).into());
    }
    let started = std::time::Instant::now();
    let mut count = 0u64;
    if let Some(bus) = bus {
        let sdk = tollgate_aws::config::sdk_config().await;
        let clients = Clients::new(&sdk);
        let mut batch = Vec::new();
        for e in simulate::simulate(opts) {
            batch.push(e);
            if batch.len() == 10 {
                let refs: Vec<&serde_json::Value> = batch.iter().collect();
                count += local::put_events(&clients, bus, &refs).await? as u64;
                batch.clear();
            }
        }
        let refs: Vec<&serde_json::Value> = batch.iter().collect();
        count += local::put_events(&clients, bus, &refs).await? as u64;
        eprintln!(
            "simulate: sent {count} events to bus {bus} in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?)
    };
    let mut sink = std::io::BufWriter::new(sink);
    for e in simulate::simulate(opts) {
        serde_json::to_writer(&mut sink, &e)?;
        sink.write_all(b"\n")?;
        count += 1;
    }
    sink.flush()?;
    eprintln!(
        "simulate: wrote {count} events in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn table_store(table: &TableArgs) -> tollgate_aws::DynamoDbStore {
    let sdk = tollgate_aws::config::sdk_config().await;
    tollgate_aws::DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.table.clone(), 400)
}
