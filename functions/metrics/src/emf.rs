//! Delivery metrics as CloudWatch embedded metric format (EMF): one log line per pipeline, which CloudWatch Logs turns
//! into metrics of the `Tollgate/Delivery` namespace, by pipeline and by team, without an API call.

use serde_json::{json, Map, Value};
use tollgate_domain::metrics::{PipelineMetrics, UNASSIGNED_TEAM};

pub const NAMESPACE: &str = "Tollgate/Delivery";

/// The metric names, in the order they are written.
pub const METRIC_NAMES: [&str; 9] = [
    "DeploymentsPerDay",
    "Deployments",
    "FailedDeployments",
    "ChangeFailureRate",
    "LeadTimeMedian",
    "LeadTimeP90",
    "TimeToRestoreMedian",
    "Builds",
    "AverageBuildSeconds",
];

/// The EMF line of one pipeline's metrics, timestamped `timestamp_millis` (the end of the period, so every run over
/// one period writes its points at the same time). A value the period does not have (no deployment: no change failure
/// rate; no successful deployment: no lead time; no restored failure: no time to restore; no build: no average) is left
/// out, metric and value, rather than written as 0.
pub fn pipeline_line(p: &PipelineMetrics, period_days: f64, timestamp_millis: i64) -> String {
    let values: [(&str, &str, Option<Value>); 9] = [
        (
            "DeploymentsPerDay",
            "Count",
            Some(json!(p.deployment_frequency_per_day)),
        ),
        ("Deployments", "Count", Some(json!(p.deployments))),
        ("FailedDeployments", "Count", Some(json!(p.failed_deployments))),
        (
            "ChangeFailureRate",
            "Percent",
            p.change_failure_rate.map(|r| json!(r * 100.0)),
        ),
        (
            "LeadTimeMedian",
            "Seconds",
            p.lead_time_seconds.median.map(|s| json!(s)),
        ),
        ("LeadTimeP90", "Seconds", p.lead_time_seconds.p90.map(|s| json!(s))),
        (
            "TimeToRestoreMedian",
            "Seconds",
            p.time_to_restore_seconds.median.map(|s| json!(s)),
        ),
        ("Builds", "Count", Some(json!(p.builds))),
        (
            "AverageBuildSeconds",
            "Seconds",
            p.average_build_seconds.map(|s| json!(s)),
        ),
    ];
    let mut definitions = Vec::new();
    let mut line = Map::new();
    line.insert("Pipeline".into(), json!(p.pipeline));
    line.insert("Team".into(), json!(p.team.as_deref().unwrap_or(UNASSIGNED_TEAM)));
    // Properties (not dimensions): searchable in CloudWatch Logs Insights, free in CloudWatch Metrics.
    line.insert("Account".into(), json!(p.account));
    line.insert("Region".into(), json!(p.region));
    line.insert("PeriodDays".into(), json!(period_days));
    for (name, unit, value) in values {
        if let Some(value) = value {
            definitions.push(json!({ "Name": name, "Unit": unit }));
            line.insert(name.into(), value);
        }
    }
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Pipeline"], ["Team"]],
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(line).to_string()
}
