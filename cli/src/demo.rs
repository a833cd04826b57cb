//! `tollgate local demo`: a pipeline story (a failed deployment and its fix) sent through EventBridge, with
//! duplicates, reordering and lost acknowledgements, into the real ingest handler; then the timelines and the
//! notifications as engineers read them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use tollgate_domain::record::keys::PipelineKey;
use tollgate_domain::record::parse::parse_event;
use tollgate_domain::record::ports::{Rejected, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;

use crate::local::{self, Clients, Delivered, DeliveryPlan, LocalError, Names, PumpReport};
use crate::render;
use crate::template::Template;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub story: PathBuf,
    pub template: PathBuf,
    pub prefix: String,
    pub plan: DeliveryPlan,
    pub lose_ack_rate: f64,
    /// The account the local endpoint stamps on routed events.
    pub account: String,
    pub region: String,
}

#[derive(Debug, Clone)]
pub struct DemoReport {
    pub story_events: usize,
    pub sent: usize,
    pub rules: Vec<String>,
    pub pump: PumpReport,
    pub timelines: Vec<ExecutionTimeline>,
    pub notifications: Vec<Delivered>,
    pub rejected: Vec<Rejected>,
    /// AWS requests made while the queue was drained, by operation.
    pub requests: BTreeMap<String, u64>,
}

/// An event the rules route but that lacks a required field: it must be kept with its reason, not lost.
fn malformed_event(pipeline: &str, account: &str, region: &str) -> Value {
    json!({
        "source": "aws.codepipeline",
        "detail-type": "CodePipeline Stage Execution State Change",
        "time": "2026-11-20T10:31:00Z",
        "resources": [format!("arn:aws:codepipeline:{region}:{account}:{pipeline}")],
        "detail": {"pipeline": pipeline, "stage": "Production", "state": "STARTED"}
    })
}

pub async fn run(c: &Clients, opts: &DemoOptions) -> Result<DemoReport, LocalError> {
    let template = Template::load(&opts.template).map_err(|e| LocalError::Input(e.to_string()))?;
    let names = Names::with_prefix(&opts.prefix);
    let env = local::provision(c, &template, &names).await?;

    let text = std::fs::read_to_string(&opts.story)
        .map_err(|e| LocalError::Input(format!("cannot read the story {}: {e}", opts.story.display())))?;
    let story: Vec<Value> = serde_json::from_str(&text)
        .map_err(|e| LocalError::Input(format!("the story {} is not a JSON array: {e}", opts.story.display())))?;
    let mut pipelines = Vec::new();
    for (i, e) in story.iter().enumerate() {
        let parsed = parse_event(e.to_string().as_bytes())
            .map_err(|err| LocalError::Input(format!("{} event #{i}: {err}", opts.story.display())))?;
        if let tollgate_domain::record::keys::Subject::Execution(k) = parsed.subject() {
            if !pipelines.contains(&k.pipeline) {
                pipelines.push(k.pipeline.clone());
            }
        }
    }
    let order = local::delivery_order(story.len(), opts.plan);
    let malformed = malformed_event(
        pipelines.first().map(String::as_str).unwrap_or("pipeline"),
        &opts.account,
        &opts.region,
    );
    let mut deliveries: Vec<&Value> = order.iter().map(|i| &story[*i]).collect();
    deliveries.insert(deliveries.len() / 2, &malformed);
    let sent = local::put_events(c, &names.bus, &deliveries).await?;

    let ingestor = local::ingestor(c, &env);
    let before = c.counter.snapshot();
    let pump = local::pump(
        c,
        &env.queue_url,
        &ingestor,
        opts.lose_ack_rate,
        opts.plan.seed,
        Duration::from_secs(180),
    )
    .await?;
    let requests = c.counter.since(&before);

    let store = ingestor.store();
    let mut timelines = Vec::new();
    for pipeline in &pipelines {
        let key = PipelineKey {
            account: opts.account.clone(),
            region: opts.region.clone(),
            pipeline: pipeline.clone(),
        };
        let mut executions = store.executions(&key, 50).await.map_err(|e| LocalError::Aws {
            action: "listing executions".into(),
            message: e.to_string(),
        })?;
        executions.reverse();
        for summary in executions {
            if let Some(t) = execution_timeline(store.as_ref(), &summary.key)
                .await
                .map_err(|e| LocalError::Aws {
                    action: "reading a timeline".into(),
                    message: e.to_string(),
                })?
            {
                timelines.push(t);
            }
        }
    }
    let notifications = local::drain_inbox(c, &env.inbox_url).await?;
    let rejected = store
        .rejected(chrono::Utc::now().date_naive(), 20)
        .await
        .map_err(|e| LocalError::Aws {
            action: "listing rejected messages".into(),
            message: e.to_string(),
        })?;
    Ok(DemoReport {
        story_events: story.len(),
        sent,
        rules: env.rules,
        pump,
        timelines,
        notifications,
        rejected,
        requests,
    })
}

/// The report as an engineer reads it.
pub fn print(r: &DemoReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== Delivery");
    let _ = writeln!(out, "rules (from infra/template.yaml): {}", r.rules.join(", "));
    let _ = writeln!(
        out,
        "story: {} events; sent through EventBridge: {} (reordered, {} duplicates, 1 malformed)",
        r.story_events,
        r.sent,
        r.sent - r.story_events - 1
    );
    let p = &r.pump;
    let _ = writeln!(
        out,
        "ingest: {} SQS deliveries in {} batches -> {} recorded, {} duplicates ignored, {} rejected and kept, {} retried, {} acknowledgements lost on purpose (redelivered)",
        p.deliveries, p.batches, p.recorded, p.duplicates, p.rejected, p.retried, p.unacknowledged
    );
    let dynamo: Vec<String> = r
        .requests
        .iter()
        .filter_map(|(k, v)| Some(format!("{} {v}", k.strip_prefix("DynamoDB.")?)))
        .collect();
    let _ = writeln!(out, "DynamoDB requests while ingesting: {}", dynamo.join(", "));
    let _ = writeln!(out, "\n== Timelines");
    for t in &r.timelines {
        let _ = writeln!(out, "{}", render::timeline(t));
    }
    let _ = writeln!(
        out,
        "== Notifications ({} delivered to the topic's subscribers)",
        r.notifications.len()
    );
    for n in &r.notifications {
        let _ = writeln!(out, "{}", render::chat(&n.chat, &n.attributes));
    }
    let _ = writeln!(out, "== Rejected messages (kept with their reason)");
    for x in &r.rejected {
        let _ = writeln!(
            out,
            "{} {}: {}",
            x.received_at.format("%H:%M:%S"),
            x.message_id,
            x.reason
        );
    }
    out
}
