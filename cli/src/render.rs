//! Text for engineers: timelines and notifications as they read in a terminal.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::tell::notify::human_duration;

fn hm(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_else(|| "--:--:--".into())
}

fn took(secs: Option<i64>) -> String {
    secs.map(human_duration).unwrap_or_default()
}

/// One execution, stage by stage.
pub fn timeline(t: &ExecutionTimeline) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} / {}  {}  {} -> {}  {}",
        t.pipeline,
        t.execution_id,
        t.state,
        t.started_at
            .map(|s| s.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_else(|| "?".into()),
        hm(t.ended_at),
        took(t.duration_secs)
    );
    if let Some(tr) = &t.trigger {
        let _ = writeln!(
            out,
            "  trigger   {} {}",
            tr.trigger_type,
            tr.detail.as_deref().unwrap_or("")
        );
    }
    for r in &t.source_revisions {
        let _ = writeln!(
            out,
            "  source    {} {} {}",
            r.action,
            r.revision_id.as_deref().map(|c| &c[..c.len().min(12)]).unwrap_or("?"),
            r.summary.as_deref().unwrap_or("")
        );
    }
    for s in &t.stages {
        let _ = writeln!(
            out,
            "  stage {:<12} {:<10} {} -> {}  {}",
            s.name,
            s.state,
            hm(s.started_at),
            hm(s.ended_at),
            took(s.duration_secs)
        );
        for a in &s.actions {
            let _ = writeln!(
                out,
                "    action {:<11} {:<10} {} -> {}  {:<8} {}{}",
                a.name,
                a.state,
                hm(a.started_at),
                hm(a.ended_at),
                took(a.duration_secs),
                a.provider,
                a.error_code.as_deref().map(|c| format!(" [{c}]")).unwrap_or_default()
            );
            if let Some(b) = &a.build {
                let phases: Vec<String> = b
                    .phases
                    .iter()
                    .filter(|p| p.duration_secs.unwrap_or(0) > 0)
                    .map(|p| format!("{} {}", p.phase, took(p.duration_secs)))
                    .collect();
                let _ = writeln!(
                    out,
                    "      build  {} {} {}  [{}]",
                    b.build_id,
                    b.status,
                    took(b.duration_secs),
                    phases.join(", ")
                );
            }
            if let Some(d) = &a.deployment {
                let _ = writeln!(
                    out,
                    "      deploy {} {}/{} {} {}",
                    d.deployment_id,
                    d.application,
                    d.deployment_group,
                    d.state,
                    took(d.duration_secs)
                );
            }
            if crate::is_failure_state(&a.state) {
                if let Some(summary) = &a.summary {
                    let _ = writeln!(out, "      why    {summary}");
                }
            }
        }
    }
    let _ = writeln!(out, "  ({} distinct events)", t.event_count);
    out
}

/// A chat notification as a person reads it.
pub fn chat(doc: &Value, attributes: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let content = &doc["content"];
    let _ = writeln!(out, "{}", content["title"].as_str().unwrap_or("(no title)"));
    for line in content["description"].as_str().unwrap_or_default().lines() {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(steps) = content["nextSteps"].as_array() {
        for s in steps {
            let _ = writeln!(out, "  -> {}", s.as_str().unwrap_or_default());
        }
    }
    let attrs: Vec<String> = attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        out,
        "  [{}] thread {}",
        attrs.join(" "),
        doc["metadata"]["threadId"].as_str().unwrap_or("-")
    );
    out
}

/// Delivery metrics as a table per pipeline, then per team.
pub fn metrics(report: &tollgate_domain::measure::metrics::MetricsReport) -> String {
    let m = serde_json::to_value(report).unwrap_or(Value::Null);
    let secs = |v: &Value| v.as_i64().map(human_duration).unwrap_or_else(|| "-".into());
    let pct = |v: &Value| {
        v.as_f64()
            .map(|x| format!("{:.0}%", x * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let band = |v: &Value| v.as_str().unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Delivery metrics {} to {} (UTC)",
        report.period_from.format("%Y-%m-%d %H:%M"),
        report.period_to.format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(
        out,
        "{:<26} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}  bands (freq/lead/cfr/ttr)",
        "pipeline", "deploys", "failed", "cfr", "per day", "lead p50", "lead p90", "restore", "builds", "avg build"
    );
    for p in m["pipelines"].as_array().into_iter().flatten() {
        let b = &p["bands"];
        let _ = writeln!(
            out,
            "{:<26} {:>7} {:>6} {:>6} {:>9.2} {:>9} {:>9} {:>9} {:>7} {:>9}  {}/{}/{}/{}",
            p["pipeline"].as_str().unwrap_or("?"),
            p["deployments"].as_u64().unwrap_or(0),
            p["failed_deployments"].as_u64().unwrap_or(0),
            pct(&p["change_failure_rate"]),
            p["deployment_frequency_per_day"].as_f64().unwrap_or(0.0),
            secs(&p["lead_time_seconds"]["median"]),
            secs(&p["lead_time_seconds"]["p90"]),
            secs(&p["time_to_restore_seconds"]["median"]),
            p["builds"].as_u64().unwrap_or(0),
            p["average_build_seconds"]
                .as_f64()
                .map(|s| human_duration(s as i64))
                .unwrap_or_else(|| "-".into()),
            band(&b["deployment_frequency"]),
            band(&b["lead_time"]),
            band(&b["change_failure_rate"]),
            band(&b["time_to_restore"]),
        );
    }
    for t in m["teams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "team {:<21} {:>7} {:>6} {:>6} {:>9.2} {:>9} {:>9} {:>9}",
            t["team"].as_str().unwrap_or("?"),
            t["deployments"].as_u64().unwrap_or(0),
            t["failed_deployments"].as_u64().unwrap_or(0),
            pct(&t["change_failure_rate"]),
            t["deployment_frequency_per_day"].as_f64().unwrap_or(0.0),
            secs(&t["lead_time_seconds"]["median"]),
            secs(&t["lead_time_seconds"]["p90"]),
            secs(&t["time_to_restore_seconds"]["median"]),
        );
    }
    out
}

/// The entries of a pipeline's audit trail that concern one execution (their subject is the execution, or
/// `<execution>/<stage>`, or their detail names it), oldest first: the gate's decisions, approvals, overrides,
/// change-set reviews and rollbacks, under the execution's timeline.
pub fn execution_actions<'a>(
    entries: &'a [tollgate_domain::audit::AuditEntry],
    execution_id: &str,
) -> Vec<&'a tollgate_domain::audit::AuditEntry> {
    fn names(v: &serde_json::Value, id: &str) -> bool {
        match v {
            serde_json::Value::String(s) => s == id || s.split_whitespace().any(|w| w == id),
            serde_json::Value::Array(items) => items.iter().any(|i| names(i, id)),
            serde_json::Value::Object(map) => map.values().any(|i| names(i, id)),
            _ => false,
        }
    }
    let mut out: Vec<_> = entries
        .iter()
        .filter(|e| {
            e.subject == execution_id
                || e.subject.split('/').next() == Some(execution_id)
                || names(&e.detail, execution_id)
        })
        .collect();
    out.sort_by_key(|e| (e.at, e.seq));
    out
}

/// The "Tollgate's actions" section under a timeline: one line per audit entry.
pub fn actions(entries: &[&tollgate_domain::audit::AuditEntry]) -> String {
    let mut out = String::new();
    if entries.is_empty() {
        return out;
    }
    let _ = writeln!(out, "  actions");
    for e in entries {
        let summary = ["summary", "outcome", "reason", "detail"]
            .iter()
            .find_map(|k| e.detail.get(*k).and_then(|v| v.as_str()))
            .unwrap_or("");
        let _ = writeln!(
            out,
            "    {}  {:<28} {:<24} {}",
            e.at.format("%H:%M:%S"),
            e.action,
            e.actor,
            summary
        );
    }
    out
}

#[cfg(test)]
mod action_tests {
    use super::*;
    use chrono::TimeZone;
    use tollgate_domain::audit::AuditEntry;

    fn entry(seq: u64, minute: u32, action: &str, subject: &str, detail: serde_json::Value) -> AuditEntry {
        AuditEntry {
            scope: "pipeline:111122223333/eu-west-1/shop".into(),
            seq,
            at: chrono::Utc.with_ymd_and_hms(2026, 11, 20, 9, minute, 0).unwrap(),
            actor: "tollgate:gate".into(),
            action: action.into(),
            subject: subject.into(),
            detail,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    #[test]
    fn an_executions_actions_are_its_entries_by_subject_or_detail_in_time_order() {
        let entries = vec![
            entry(
                3,
                30,
                "rollback.rollback_stage",
                "e1",
                serde_json::json!({"outcome": "rolled_back"}),
            ),
            entry(
                1,
                10,
                "gate.decision",
                "e1/Production",
                serde_json::json!({"summary": "bake time 1h of 2h"}),
            ),
            entry(
                2,
                20,
                "gate.decision",
                "e2/Production",
                serde_json::json!({"summary": "other execution"}),
            ),
            entry(
                4,
                40,
                "rollback.notified",
                "e9",
                serde_json::json!({"detail": "rollback execution e1 of shop / Production started"}),
            ),
            entry(5, 50, "gate.decision", "e10/Production", serde_json::json!({})),
        ];
        let picked = execution_actions(&entries, "e1");
        assert_eq!(picked.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3, 4]);
        let text = actions(&picked);
        assert!(text.starts_with("  actions\n"), "{text}");
        assert!(text.contains("09:10:00  gate.decision"), "{text}");
        assert!(text.contains("bake time 1h of 2h"), "{text}");
        assert!(!text.contains("other execution"), "{text}");
        assert_eq!(actions(&[]), "");
    }
}
