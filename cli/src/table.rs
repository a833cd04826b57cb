//! Commands that read the deployed table: `status`, `timeline` and `metrics`. The table and endpoint come from
//! flags or the environment (`TOLLGATE_TABLE_NAME`, `AWS_ENDPOINT_URL`, the usual AWS credentials and region).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeSet;
use std::future::Future;

use tollgate_aws::gate_store::DynamoDbGateStore;
use tollgate_aws::DynamoDbStore;
use tollgate_domain::audit::{action, pipeline_scope, AuditEntry, AuditLog, GLOBAL_SCOPE};
use tollgate_domain::gate::{GateDecision, GateDecisions};
use tollgate_domain::measure::metrics::{compute_with_audit, MetricsReport, Period, PipelineConfig};
use tollgate_domain::memory::MemoryStore;
use tollgate_domain::record::keys::{ExecutionKey, PipelineKey};
use tollgate_domain::record::ports::{StoreError, TimelineQueries};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;

/// The latest executions of every pipeline that ran between `from` and `to`, one line each, newest pipeline first.
pub async fn status<Q: TimelineQueries + ?Sized>(
    store: &Q,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<String, StoreError> {
    let keys = store.executions_started_between(from, to).await?;
    let mut latest: BTreeMap<PipelineKey, Vec<ExecutionKey>> = BTreeMap::new();
    for k in keys {
        latest.entry(k.pipeline_key()).or_default().push(k);
    }
    let mut rows = Vec::new();
    for (pipeline, _) in latest {
        let summaries = store.executions(&pipeline, 5).await?;
        let Some(last) = summaries.first() else { continue };
        let r = last.resolved();
        let history: String = summaries
            .iter()
            .map(|s| match s.resolved().state.as_str() {
                "SUCCEEDED" => '✓',
                "FAILED" => '✗',
                "STARTED" | "RESUMED" | "UNKNOWN" => '…',
                _ => '·',
            })
            .collect();
        rows.push((
            last.started_at,
            pipeline,
            last.key.execution_id.clone(),
            r.state,
            history,
        ));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out = format!(
        "{:<30} {:<14} {:<10} {:<20} {:<38} {}\n",
        "pipeline", "account", "region", "latest started", "execution", "state (last 5, newest first)"
    );
    for (started, p, exec, state, history) in rows {
        let _ = writeln!(
            out,
            "{:<30} {:<14} {:<10} {:<20} {:<38} {state} {history}",
            p.pipeline,
            p.account,
            p.region,
            started.format("%Y-%m-%d %H:%M:%S"),
            exec
        );
    }
    Ok(out)
}

/// One execution's timeline: the given one, or the pipeline's latest.
pub async fn timeline<Q: TimelineQueries + ?Sized>(
    store: &Q,
    pipeline: &PipelineKey,
    execution_id: Option<&str>,
) -> Result<Option<ExecutionTimeline>, StoreError> {
    let key = match execution_id {
        Some(id) => ExecutionKey {
            account: pipeline.account.clone(),
            region: pipeline.region.clone(),
            pipeline: pipeline.pipeline.clone(),
            execution_id: id.to_string(),
        },
        None => match store.executions(pipeline, 1).await?.into_iter().next() {
            Some(s) => s.key,
            None => return Ok(None),
        },
    };
    execution_timeline(store, &key).await
}

/// Delivery metrics over `period`, from every execution started up to 30 days before it (so restores and MTBF see
/// the runs before the period), with the automation-health figures of the store's audit trail.
pub async fn metrics<Q: TimelineQueries + AutomationTrail + ?Sized>(
    store: &Q,
    configs: &BTreeMap<String, PipelineConfig>,
    period: &Period,
) -> Result<MetricsReport, StoreError> {
    let keys = store
        .executions_started_between(period.from - Duration::days(30), period.to)
        .await?;
    let mut timelines = Vec::new();
    for k in keys {
        if let Some(t) = execution_timeline(store, &k).await? {
            timelines.push(t);
        }
    }
    let (audit, decisions) = store.automation_records(&timelines, period).await?;
    Ok(compute_with_audit(&timelines, configs, period, &audit, &decisions))
}

/// Where a store keeps the audit trail and the gate decisions the automation-health figures read.
pub trait AutomationTrail {
    /// The audit entries of the timelines' pipelines and of `global` from a day before `period` on, and the gate
    /// decisions the period's `gate.decision` entries name (as the metrics function reads them).
    fn automation_records(
        &self,
        timelines: &[ExecutionTimeline],
        period: &Period,
    ) -> impl Future<Output = Result<(Vec<AuditEntry>, Vec<GateDecision>), StoreError>> + Send;
}

impl AutomationTrail for DynamoDbStore {
    async fn automation_records(
        &self,
        timelines: &[ExecutionTimeline],
        period: &Period,
    ) -> Result<(Vec<AuditEntry>, Vec<GateDecision>), StoreError> {
        // The gate decisions are items of the same table, read through their own adapter.
        let sdk = tollgate_aws::config::sdk_config().await;
        let gate = DynamoDbGateStore::new(aws_sdk_dynamodb::Client::new(&sdk), self.table(), 400);
        automation_records(self, &gate, timelines, period).await
    }
}

/// The in-memory store has no audit trail: its figures come from the timelines alone (`audit_entries` 0).
impl AutomationTrail for MemoryStore {
    async fn automation_records(
        &self,
        _: &[ExecutionTimeline],
        _: &Period,
    ) -> Result<(Vec<AuditEntry>, Vec<GateDecision>), StoreError> {
        Ok((Vec::new(), Vec::new()))
    }
}

/// The most entries read of one scope, newest first (the metrics function's bound).
const AUDIT_MAX_ENTRIES: usize = 65_536;

/// [`AutomationTrail::automation_records`] over any audit log and gate decisions.
pub async fn automation_records<L: AuditLog + ?Sized, G: GateDecisions + ?Sized>(
    audit: &L,
    gate: &G,
    timelines: &[ExecutionTimeline],
    period: &Period,
) -> Result<(Vec<AuditEntry>, Vec<GateDecision>), StoreError> {
    let mut scopes: BTreeSet<String> = timelines
        .iter()
        .map(|t| {
            pipeline_scope(&PipelineKey {
                account: t.account.clone(),
                region: t.region.clone(),
                pipeline: t.pipeline.clone(),
            })
        })
        .collect();
    scopes.insert(GLOBAL_SCOPE.to_string());
    let since = period.from - Duration::days(1);
    let mut entries = Vec::new();
    for scope in scopes {
        // Newest first, doubling the page until it reaches before `since`: a long history is not read.
        let mut limit = 64;
        loop {
            let newest = audit.recent(&scope, limit).await?;
            if newest.len() < limit || newest.last().is_some_and(|e| e.at < since) || limit >= AUDIT_MAX_ENTRIES {
                entries.extend(newest);
                break;
            }
            limit = (limit * 2).min(AUDIT_MAX_ENTRIES);
        }
    }
    let ids: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.action == action::GATE_DECISION && period.contains(e.at))
        .filter_map(|e| e.detail.get("decision_id").and_then(|v| v.as_str()))
        .collect();
    let mut decisions = Vec::new();
    for id in ids {
        decisions.extend(gate.decision(id).await?);
    }
    Ok((entries, decisions))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tollgate_domain::memory::MemoryStore;

    use super::*;

    async fn story_store() -> Arc<MemoryStore> {
        crate::replay::story().await.store().clone()
    }

    fn checkout() -> PipelineKey {
        PipelineKey {
            account: "111122223333".into(),
            region: "eu-west-1".into(),
            pipeline: "checkout-service".into(),
        }
    }

    #[tokio::test]
    async fn status_lists_the_latest_execution_and_recent_history() {
        let store = story_store().await;
        let out = status(
            store.as_ref(),
            "2026-11-20T00:00:00Z".parse().unwrap(),
            "2026-11-21T00:00:00Z".parse().unwrap(),
        )
        .await
        .unwrap();
        let line = out.lines().nth(1).expect("one pipeline");
        assert!(line.starts_with("checkout-service"), "{out}");
        assert!(line.contains("ab085ce4-dd66-42b3-88e3-098729751027"), "{out}");
        assert!(line.ends_with("SUCCEEDED ✓✗"), "{out}");
    }

    #[tokio::test]
    async fn timeline_defaults_to_the_latest_execution() {
        let store = story_store().await;
        let t = timeline(store.as_ref(), &checkout(), None).await.unwrap().unwrap();
        assert_eq!(t.state, "SUCCEEDED");
        let t = timeline(
            store.as_ref(),
            &checkout(),
            Some("ed085d02-372a-4b03-ba8a-c1df62a84ced"),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(t.state, "FAILED");
        assert!(timeline(store.as_ref(), &checkout(), Some("nope"))
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn metrics_from_the_store_match_the_story() {
        let store = story_store().await;
        let period = Period {
            from: "2026-11-20T00:00:00Z".parse().unwrap(),
            to: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let report = metrics(store.as_ref(), &BTreeMap::new(), &period).await.unwrap();
        let p = &report.pipelines[0];
        assert_eq!((p.deployments, p.failed_deployments), (2, 1));
        assert_eq!(
            report.automation.audit_entries, 0,
            "the in-memory store has no audit trail"
        );
    }

    #[tokio::test]
    async fn automation_records_are_the_periods_audit_entries_and_the_gate_decisions_they_name() {
        use tollgate_domain::audit::NewAuditEntry;
        use tollgate_domain::memory::MemoryAuditLog;
        use tollgate_domain::memory::MemoryGateStore;

        let timelines: Vec<ExecutionTimeline> = crate::replay::story().await.timelines().await.unwrap();
        let period = Period {
            from: "2026-11-20T00:00:00Z".parse().unwrap(),
            to: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let (audit, gate) = (MemoryAuditLog::default(), MemoryGateStore::new());
        let checkout = pipeline_scope(&checkout());
        for (scope, at, actor, action, detail) in [
            (
                checkout.as_str(),
                "2026-11-20T09:00:00Z",
                "tollgate:gate",
                "gate.decision",
                serde_json::json!({ "decision_id": "j-1", "outcome": "fail", "summary": "the gate cannot evaluate: x" }),
            ),
            (
                checkout.as_str(),
                "2026-11-20T09:10:00Z",
                "arn:aws:sts::111122223333:assumed-role/R/alice",
                "override",
                serde_json::json!({}),
            ),
            (
                "global",
                "2026-11-18T09:00:00Z",
                "arn:aws:sts::111122223333:assumed-role/R/alice",
                "freeze",
                serde_json::json!({}),
            ),
            (
                "pipeline:111122223333/eu-west-1/other",
                "2026-11-20T09:00:00Z",
                "tollgate:gate",
                "gate.decision",
                serde_json::json!({}),
            ),
        ] {
            audit
                .append(NewAuditEntry {
                    scope: scope.into(),
                    at: at.parse().unwrap(),
                    actor: actor.into(),
                    action: action.into(),
                    subject: "s".into(),
                    detail,
                })
                .await
                .unwrap();
        }
        let (entries, decisions) = automation_records(&audit, &gate, &timelines, &period).await.unwrap();
        // The pipeline's two entries and global's (read, though before the period); not the other pipeline's.
        assert_eq!(entries.len(), 3);
        assert!(decisions.is_empty(), "j-1 has no record");
        let report = compute_with_audit(&timelines, &BTreeMap::new(), &period, &entries, &decisions);
        let a = &report.automation;
        assert_eq!((a.audit_entries, a.actions, a.errors, a.manual.overrides), (2, 1, 1, 1));
    }
}
