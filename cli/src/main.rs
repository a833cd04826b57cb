//! `tollgate`: the engineers' command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use std::io::Write;

use clap::{Parser, Subcommand, ValueEnum};
use tollgate::decide::{DecideUrlArgs, DecisionArgs, IdentityCommand};
use tollgate::demo::{self, DemoOptions};
use tollgate::local::{self, Clients, DeliveryPlan, Names};
use tollgate::replay::{self, MetricsConfigFile, Replayer};
use tollgate::simulate::{self, SimOptions};
use tollgate::template::Template;
use tollgate_domain::measure::metrics::Period;

/// Writes to standard output; a reader that went away (`tollgate ... | head`) ends the program quietly, as in any
/// Unix tool, instead of a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(&format!($($arg)*))
    };
}

macro_rules! outln {
    ($($arg:tt)*) => {
        write_stdout(&format!("{}\n", format!($($arg)*)))
    };
}

/// The reader of standard output went away (`tollgate simulate | head`): not an error of ours.
mod policy_commands;

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>().map(|io| io.kind()) == Some(std::io::ErrorKind::BrokenPipe)
        || e.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == Some(std::io::ErrorKind::BrokenPipe)
}

fn write_stdout(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(text.as_bytes()).and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("tollgate: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

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
    /// The ingest queue's dead-letter queue: list what it keeps, move it back to the queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
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
    /// Approves a gated stage of an execution through the decide function, as the caller (SigV4), with a reason.
    Approve {
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Rejects a gated stage of an execution through the decide function, as the caller (SigV4), with a reason.
    Reject {
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Links or unlinks a chat user to the IAM principal it decides as on the chat approval endpoint.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Freezes deployments through gates of a pipeline (or every pipeline), through the decide function
    /// (administrators only), until lifted or over.
    Freeze {
        #[command(flatten)]
        endpoint: DecideUrlArgs,
        /// pipeline:<account>/<region>/<pipeline>, or global.
        #[arg(long)]
        scope: String,
        /// When it starts: YYYY-MM-DD (the whole day, in each policy's zone) or RFC 3339 (default: now).
        #[arg(long)]
        from: Option<String>,
        /// When it ends: YYYY-MM-DD (that day included, in each policy's zone) or RFC 3339.
        #[arg(long)]
        until: String,
        /// Why (required; shown in every gate decision it blocks, and in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Lifts the ad-hoc freeze of a scope, through the decide function (administrators only).
    Unfreeze {
        #[command(flatten)]
        endpoint: DecideUrlArgs,
        /// pipeline:<account>/<region>/<pipeline>, or global.
        #[arg(long)]
        scope: String,
        /// Why (required; recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Overrides a gated stage of an execution through the decide function: it passes if the caller is one of the
    /// stage's approvers (and did not trigger or author the change).
    Override {
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Lists or verifies a scope's tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
    /// Gate policies (docs/policy.md).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Gates: how a gate stands now.
    Gate {
        #[command(subcommand)]
        command: GateCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validates gate policy files: prints each file's result, or its errors with line, column and field; exits
    /// non-zero if any file is invalid.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Also check each file against this organisation baseline: every loosened field is an error.
        #[arg(long, value_name = "BASE")]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        stage: StageSel,
    },
    /// Prints the effective policy (the baseline merged with FILE) as a policy in the same format; exits non-zero,
    /// naming each field, if FILE loosens the baseline.
    Effective {
        #[arg(long, value_name = "BASE")]
        baseline: PathBuf,
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        stage: StageSel,
    },
    /// Validates an organisation baseline and writes it to the table (item BASELINE#<name>), as the caller.
    PublishBaseline {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The baseline's name: the gate applies the one its TOLLGATE_BASELINE names (default `default`).
        #[arg(long, default_value = tollgate_domain::gate::policy::DEFAULT_BASELINE_NAME)]
        name: String,
        #[command(flatten)]
        table: TableArgs,
    },
}

/// The stage a policy is for, for the baseline's rules (without --stage, every rule is checked).
#[derive(clap::Args, Clone)]
struct StageSel {
    /// The stage the policy gates.
    #[arg(long)]
    stage: Option<String>,
    /// The pipeline (for rules matching pipeline names).
    #[arg(long)]
    pipeline: Option<String>,
    /// A pipeline tag KEY=VALUE (for rules matching tags); repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tollgate::policy_cmd::parse_tag)]
    tags: Vec<(String, String)>,
}

impl StageSel {
    fn args(self) -> tollgate::policy_cmd::StageArgs {
        tollgate::policy_cmd::StageArgs {
            stage: self.stage,
            pipeline: self.pipeline,
            tags: self.tags.into_iter().collect(),
        }
    }
}

#[derive(Subcommand)]
enum GateCommand {
    /// Evaluates a policy now, with live facts (CloudWatch, the table), for a pipeline's stage and prints how each
    /// check stands. Decides nothing and records nothing.
    Explain {
        /// The policy file.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
        /// The pipeline the gate is in.
        #[arg(long)]
        pipeline: String,
        /// The stage the gate guards.
        #[arg(long)]
        stage: String,
        /// The execution id (default: the pipeline's latest recorded execution).
        #[arg(long)]
        execution: Option<String>,
        /// The pipeline's account (or TOLLGATE_ACCOUNT).
        #[arg(long, env = "TOLLGATE_ACCOUNT")]
        account: String,
        /// The pipeline's region (default: the SDK's region).
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        table: TableArgs,
        /// Evaluate the policy merged with this organisation baseline; a loosening is a FAIL naming each field.
        #[arg(long, value_name = "BASE")]
        baseline: Option<PathBuf>,
        /// A pipeline tag KEY=VALUE for the baseline's rules (default: the pipeline's tags, read from CodePipeline).
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = tollgate::policy_cmd::parse_tag)]
        tags: Vec<(String, String)>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// Timelines and metric tables for people.
    Text,
    /// One JSON document (fields documented in docs/metrics.md).
    Json,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The newest entries of a scope.
    List {
        #[command(flatten)]
        table: TableArgs,
        /// The scope, e.g. pipeline:111122223333/eu-west-1/checkout-service.
        #[arg(long)]
        scope: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Checks the whole chain of a scope and names the first broken link (exit status 1 if any).
    Verify {
        #[command(flatten)]
        table: TableArgs,
        #[arg(long)]
        scope: String,
    },
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
enum DlqCommand {
    /// Lists the messages kept in the dead-letter queue (ids, ages, receive counts, event kinds; never bodies).
    List {
        /// The dead-letter queue's URL or name.
        #[arg(long)]
        dlq: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Sends the dead-letter queue's messages back to their source queue (same body and attributes), deleting each
    /// from the dead-letter queue only after the send succeeded.
    Redrive {
        /// The dead-letter queue's URL or name.
        #[arg(long)]
        dlq: String,
        /// The queue to send them to (default: the one queue whose redrive policy names the dead-letter queue).
        #[arg(long)]
        to: Option<String>,
        /// Move at most this many messages.
        #[arg(long)]
        max: Option<u64>,
    },
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
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<tollgate::policy_cmd::ExitWith>().is_some() => {
            ExitCode::from(e.downcast_ref::<tollgate::policy_cmd::ExitWith>().map_or(1, |x| x.0))
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let command = match cli.command {
        Command::Local { command } => command,
        Command::Dlq { command } => return dlq_command(command).await,
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
        Command::Approve { decision } => return decided(tollgate::decide::decision(decision, "approve").await),
        Command::Reject { decision } => return decided(tollgate::decide::decision(decision, "reject").await),
        Command::Override { decision } => return decided(tollgate::decide::decision(decision, "override").await),
        Command::Identity { command } => return decided(tollgate::decide::identity(command).await),
        Command::Freeze {
            endpoint,
            scope,
            from,
            until,
            reason,
        } => return decided(tollgate::decide::freeze(&endpoint, &scope, from.as_deref(), &until, &reason).await),
        Command::Unfreeze {
            endpoint,
            scope,
            reason,
        } => return decided(tollgate::decide::unfreeze(&endpoint, &scope, &reason).await),
        Command::Audit { command } => {
            match command {
                AuditCommand::List { table, scope, limit } => {
                    out!(
                        "{}",
                        tollgate::audit::list(&table_store(&table).await, &scope, limit).await?
                    )
                }
                AuditCommand::Verify { table, scope } => {
                    outln!("{}", tollgate::audit::verify(&table_store(&table).await, &scope).await?)
                }
            }
            return Ok(());
        }
        Command::Status { table, days } => {
            let store = table_store(&table).await;
            let to = chrono::Utc::now();
            out!(
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
            let key = tollgate_domain::record::keys::PipelineKey {
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
                Format::Text => {
                    // What Tollgate did about this execution, from the pipeline's audit trail (its latest entries).
                    use tollgate_domain::audit::{pipeline_scope, AuditLog};
                    let entries = store.recent(&pipeline_scope(&key), 500).await?;
                    let actions = tollgate::render::execution_actions(&entries, &t.execution_id);
                    out!("{}", tollgate::render::timeline(&t));
                    out!("{}", tollgate::render::actions(&actions));
                }
                Format::Json => outln!("{}", serde_json::to_string_pretty(&t)?),
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
                Format::Text => out!("{}", tollgate::render::metrics(&report)),
                Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
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
        Command::Policy {
            command: PolicyCommand::Validate { files, baseline, stage },
        } => return policy_commands::policy_validate(&files, baseline.as_deref(), stage.args()),
        Command::Policy {
            command: PolicyCommand::Effective { baseline, file, stage },
        } => return policy_commands::policy_effective(&baseline, &file, stage.args()),
        Command::Policy {
            command: PolicyCommand::PublishBaseline { file, name, table },
        } => return policy_commands::publish_baseline(&file, &name, &table).await,
        Command::Gate {
            command:
                GateCommand::Explain {
                    policy,
                    pipeline,
                    stage,
                    execution,
                    account,
                    region,
                    table,
                    baseline,
                    tags,
                    format,
                },
        } => {
            let key = tollgate_domain::record::keys::PipelineKey {
                account,
                region: region.unwrap_or_default(),
                pipeline,
            };
            let baseline = policy_commands::ExplainBaseline {
                file: baseline,
                tags: (!tags.is_empty()).then(|| tags.into_iter().collect()),
            };
            return policy_commands::gate_explain(&policy, key, &stage, execution, &table, &baseline, format).await;
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
            outln!("table     {}", env.names.table);
            outln!("topic     {}", env.topic_arn);
            outln!("queue     {} (dead letters: {})", env.queue_url, env.dlq_url);
            outln!("inbox     {}", env.inbox_url);
            for r in env.rules {
                outln!("rule      {r}");
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
            out!("{}", demo::print(&report));
        }
    }
    Ok(())
}

async fn dlq_command(command: DlqCommand) -> Result<(), Box<dyn std::error::Error>> {
    use tollgate::dlq;
    let sdk = tollgate_aws::config::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    match command {
        DlqCommand::List { dlq: name, limit } => {
            let url = dlq::queue_url(&sqs, &name).await?;
            let depth = dlq::depth(&sqs, &url).await?;
            let letters = dlq::list(&sqs, &url, limit).await?;
            out!("{}", dlq::print_list(&url, depth, &letters));
        }
        DlqCommand::Redrive { dlq: name, to, max } => {
            let url = dlq::queue_url(&sqs, &name).await?;
            let target = match to {
                Some(to) => dlq::queue_url(&sqs, &to).await?,
                None => dlq::source_queue(&sqs, &url).await?,
            };
            let report = dlq::redrive(&sqs, &url, &target, max).await?;
            out!("{}", dlq::print_redrive(&report));
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
) -> Result<
    std::collections::BTreeMap<String, tollgate_domain::measure::metrics::PipelineConfig>,
    Box<dyn std::error::Error>,
> {
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
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for t in &timelines {
                outln!("{}", tollgate::render::timeline(t));
            }
            out!("{}", tollgate::render::metrics(&report.metrics));
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

/// Who the caller is: the ARN STS says the AWS credentials belong to, never a name from the command line.
async fn caller_arn(sdk: &aws_config::SdkConfig) -> Result<String, Box<dyn std::error::Error>> {
    let caller = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot tell who you are (sts:GetCallerIdentity): {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
    let principal = caller.arn().ok_or("sts:GetCallerIdentity returned no ARN")?.to_string();
    Ok(principal)
}

/// Prints the decide function's sentence; a refusal is an error (exit 1) with its sentence.
fn decided(result: Result<String, tollgate::decide::DecideCallError>) -> Result<(), Box<dyn std::error::Error>> {
    outln!("{}", result?);
    Ok(())
}
