//! `tollgate`: the engineers' command-line tool.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate::demo::{self, DemoOptions};
use tollgate::local::{self, Clients, DeliveryPlan, Names};
use tollgate::template::Template;

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
    let Command::Local { command } = cli.command;
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
