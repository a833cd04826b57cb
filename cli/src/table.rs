//! Commands that read the deployed table: `status`, `timeline` and `metrics`. The table and endpoint come from
//! flags or the environment (`TOLLGATE_TABLE_NAME`, `AWS_ENDPOINT_URL`, the usual AWS credentials and region).

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use tollgate_domain::keys::{ExecutionKey, PipelineKey};
use tollgate_domain::metrics::{compute, MetricsReport, Period, PipelineConfig};
use tollgate_domain::ports::{StoreError, TimelineQueries};
use tollgate_domain::query::execution_timeline;
use tollgate_domain::timeline::ExecutionTimeline;

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
/// the runs before the period).
pub async fn metrics<Q: TimelineQueries + ?Sized>(
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
    Ok(compute(&timelines, configs, period))
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
    }
}
