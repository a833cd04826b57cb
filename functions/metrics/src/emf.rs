//! Delivery metrics as CloudWatch embedded metric format (EMF): one log line per pipeline, which CloudWatch Logs turns
//! into metrics of the `Tollgate/Delivery` namespace, by pipeline and by team, without an API call; and the health of
//! Tollgate's own automation in the `Tollgate/Automation` namespace, overall and by action family.

use serde_json::{json, Map, Value};
use tollgate_domain::measure::metrics::{AutomationHealth, PipelineMetrics, UNASSIGNED_TEAM};

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

/// The namespace of the automation-health metrics.
pub const AUTOMATION_NAMESPACE: &str = "Tollgate/Automation";

/// The automation-health EMF lines: one for all of Tollgate's actions and the manual fallbacks (no dimension), then
/// one per action family (dimension `Family`). As in [`pipeline_line`], a rate or latency the period does not have is
/// left out rather than written as 0; counts are always written, so a quiet day reads as 0 errors, not as missing.
pub fn automation_lines(a: &AutomationHealth, period_days: f64, timestamp_millis: i64) -> Vec<String> {
    let m = &a.manual;
    let overall: Vec<(&str, &str, Option<Value>)> = vec![
        ("Actions", "Count", Some(json!(a.actions))),
        ("ActionErrors", "Count", Some(json!(a.errors))),
        ("ActionErrorRate", "Percent", a.error_rate.map(|r| json!(r * 100.0))),
        ("ManualFallbacks", "Count", Some(json!(m.total))),
        ("ManualApprovals", "Count", Some(json!(m.approvals))),
        ("Overrides", "Count", Some(json!(m.overrides))),
        ("ManualRollbacks", "Count", Some(json!(m.manual_rollbacks))),
        ("ManualDeploymentStops", "Count", Some(json!(m.manual_deployment_stops))),
        (
            "ManualFallbacksPerDeployment",
            "None",
            m.per_production_deployment.map(|r| json!(r)),
        ),
    ];
    let mut lines = vec![emf_line(&[], overall, period_days, timestamp_millis)];
    for (family, f) in &a.families {
        let values = vec![
            ("Actions", "Count", Some(json!(f.actions))),
            ("ActionErrors", "Count", Some(json!(f.errors))),
            ("ActionErrorRate", "Percent", f.error_rate.map(|r| json!(r * 100.0))),
            ("LatencyMedian", "Milliseconds", f.latency_ms.median.map(|v| json!(v))),
            ("LatencyP90", "Milliseconds", f.latency_ms.p90.map(|v| json!(v))),
        ];
        lines.push(emf_line(&[("Family", family)], values, period_days, timestamp_millis));
    }
    lines
}

fn emf_line(
    dimensions: &[(&str, &str)],
    values: Vec<(&str, &str, Option<Value>)>,
    period_days: f64,
    timestamp_millis: i64,
) -> String {
    let mut line = Map::new();
    for (name, value) in dimensions {
        line.insert((*name).into(), json!(value));
    }
    line.insert("PeriodDays".into(), json!(period_days));
    let mut definitions = Vec::new();
    for (name, unit, value) in values {
        if let Some(value) = value {
            definitions.push(json!({ "Name": name, "Unit": unit }));
            line.insert(name.into(), value);
        }
    }
    let dimension_names: Vec<&str> = dimensions.iter().map(|(n, _)| *n).collect();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": AUTOMATION_NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    Value::Object(line).to_string()
}
