//! Assembling what engineers read from what was recorded: an execution's timeline with its builds and deployments.

use std::collections::BTreeMap;

use crate::record::keys::{BuildKey, DeploymentKey, ExecutionKey};
use crate::record::ports::{StoreError, TimelineQueries};
use crate::record::timeline::{fold_build, fold_deployment, ExecutionTimeline, ExternalRun};

/// The timeline of one execution, with the builds and deployments its actions ran. `None` if nothing is recorded.
pub async fn execution_timeline<Q: TimelineQueries + ?Sized>(
    store: &Q,
    key: &ExecutionKey,
) -> Result<Option<ExecutionTimeline>, StoreError> {
    let events = store.execution_events(key).await?;
    if events.is_empty() {
        return Ok(None);
    }
    let mut timeline = ExecutionTimeline::fold(key, &events);
    link_runs(store, &mut timeline).await?;
    Ok(Some(timeline))
}

/// Reads the builds and deployments a timeline's actions ran and attaches them.
pub async fn link_runs<Q: TimelineQueries + ?Sized>(
    store: &Q,
    timeline: &mut ExecutionTimeline,
) -> Result<(), StoreError> {
    let key = ExecutionKey {
        account: timeline.account.clone(),
        region: timeline.region.clone(),
        pipeline: timeline.pipeline.clone(),
        execution_id: timeline.execution_id.clone(),
    };
    let key = &key;
    let (mut builds, mut deployments) = (BTreeMap::new(), BTreeMap::new());
    for run in timeline.external_runs() {
        match run {
            ExternalRun::Build(build_id) => {
                let key = BuildKey {
                    account: key.account.clone(),
                    region: key.region.clone(),
                    build_id: build_id.clone(),
                };
                if let Some(b) = fold_build(&store.build_events(&key).await?) {
                    builds.insert(build_id, b);
                }
            }
            ExternalRun::Deployment(deployment_id) => {
                let key = DeploymentKey {
                    account: key.account.clone(),
                    region: key.region.clone(),
                    deployment_id: deployment_id.clone(),
                };
                if let Some(d) = fold_deployment(&store.deployment_events(&key).await?) {
                    deployments.insert(deployment_id, d);
                }
            }
        }
    }
    timeline.link(&builds, &deployments);
    Ok(())
}
