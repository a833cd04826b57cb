//! The policy and gate commands of the binary: `policy validate`, `policy effective`, `policy publish-baseline`
//! and `gate explain` (their logic is in the library's `policy_cmd`; here, reading files and the table, printing).

use std::path::PathBuf;

use crate::{caller_arn, write_stdout, Format, TableArgs};

/// `tollgate policy validate [--baseline BASE] FILE...`: every file's result; an error if any file is invalid or
/// loosens the baseline.
pub(crate) fn policy_validate(
    files: &[PathBuf],
    baseline: Option<&std::path::Path>,
    stage: tollgate::policy_cmd::StageArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = match baseline {
        Some(b) => Some(tollgate::policy_cmd::read_baseline(b).map_err(|e| format!("the baseline: {e}"))?),
        None => None,
    };
    let mut invalid = 0;
    for file in files {
        match tollgate::policy_cmd::validate_one(file, baseline.as_ref(), &stage) {
            Ok(line) => outln!("{line}"),
            Err(errors) => {
                invalid += 1;
                for e in errors {
                    outln!("{e}");
                }
            }
        }
    }
    if invalid > 0 {
        return Err(format!("{invalid} of {} policy file(s) invalid", files.len()).into());
    }
    Ok(())
}

/// `tollgate policy effective --baseline BASE FILE`: the merged policy as YAML, or every loosening.
pub(crate) fn policy_effective(
    baseline: &std::path::Path,
    file: &std::path::Path,
    stage: tollgate::policy_cmd::StageArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = tollgate::policy_cmd::read_baseline(baseline).map_err(|e| format!("the baseline: {e}"))?;
    match tollgate::policy_cmd::effective_yaml(&baseline, file, &stage) {
        Ok(yaml) => {
            out!("{yaml}");
            Ok(())
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            Err(format!("{} loosens the baseline in {} field(s)", file.display(), errors.len()).into())
        }
    }
}

/// `tollgate policy publish-baseline FILE`: validated, then written to the table as the caller.
pub(crate) async fn publish_baseline(
    file: &std::path::Path,
    name: &str,
    table: &TableArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let text = tollgate::policy_cmd::read_text(file)?;
    let baseline = tollgate_domain::gate::policy::parse_baseline(&file.display().to_string(), &text)?;
    let sdk = tollgate_aws::config::sdk_config().await;
    let by = caller_arn(&sdk).await?;
    let store =
        tollgate_aws::baselines::DynamoDbBaselines::new(aws_sdk_dynamodb::Client::new(&sdk), &table.table, name);
    store.publish(&text, &by, chrono::Utc::now()).await?;
    outln!(
        "published baseline {name} ({}, {} rule(s)) to table {} as {by}",
        baseline.name,
        baseline.rules.len(),
        table.table
    );
    Ok(())
}

/// `gate explain`'s baseline: a file, and the pipeline's tags when given on the command line.
pub(crate) struct ExplainBaseline {
    pub(crate) file: Option<PathBuf>,
    pub(crate) tags: Option<std::collections::BTreeMap<String, String>>,
}

/// `tollgate gate explain`: the policy evaluated now with live facts, explained. An empty region is the SDK's.
/// Exits 0 on PASS, 1 on FAIL, 2 on WAIT.
pub(crate) async fn gate_explain(
    policy_file: &std::path::Path,
    mut key: tollgate_domain::record::keys::PipelineKey,
    stage: &str,
    execution: Option<String>,
    table: &TableArgs,
    baseline: &ExplainBaseline,
    format: Format,
) -> Result<(), Box<dyn std::error::Error>> {
    use tollgate::policy_cmd::{outcome_status, ExitWith};
    use tollgate_aws::alarm_tags::ResourceGroupsTaggingAlarms;
    use tollgate_aws::cloudwatch::{CloudWatchAlarms, CloudWatchMetrics};
    use tollgate_aws::gate_store::DynamoDbGateStore;
    use tollgate_domain::gate::{
        apply_override, freeze_scopes, gather_facts, with_ad_hoc_freezes, FactSources, GateControls, JobContext,
        TaggedAlarms,
    };
    use tollgate_domain::record::ports::TimelineQueries;

    let policy = tollgate_domain::gate::policy::validate_file(policy_file)?;
    let mut sdk = tollgate_aws::config::sdk_config().await;
    if key.region.is_empty() {
        key.region = sdk
            .region()
            .map(|r| r.to_string())
            .ok_or("no region: pass --region or set AWS_REGION")?;
    } else {
        sdk = sdk
            .into_builder()
            .region(aws_config::Region::new(key.region.clone()))
            .build();
    }
    // The baseline first: a policy that loosens it fails before any fact is read, as in the gate.
    let (policy, merged_with) = match &baseline.file {
        None => (policy, None),
        Some(file) => {
            let text = tollgate::policy_cmd::read_text(policy_file)?;
            let tags: Box<dyn tollgate_domain::gate::policy::PipelineTags> = match &baseline.tags {
                Some(t) => Box::new(tollgate_domain::gate::policy::MemoryPipelineTags::from_map(t.clone())),
                None => Box::new(tollgate_aws::baselines::CodePipelinePipelineTags::from_sdk_config(&sdk)),
            };
            let base_text = tollgate::policy_cmd::read_text(file)?;
            let source = tollgate_domain::gate::policy::MemoryBaselines::new()
                .with_named(&file.display().to_string(), &base_text);
            let site = tollgate_domain::gate::policy::GateSite {
                account: &key.account,
                region: &key.region,
                pipeline: &key.pipeline,
                stage,
            };
            let name = policy_file.display().to_string();
            match tollgate_domain::gate::policy::apply_baseline(&source, tags.as_ref(), site, &name, &text, policy)
                .await
            {
                Ok(w) => (w.policy, w.applied),
                Err(why) => {
                    match format {
                        Format::Text => {
                            outln!("{} / {}, policy {}", key.pipeline, stage, policy_file.display());
                            outln!("FAIL: {why}");
                        }
                        Format::Json => outln!(
                            "{}",
                            serde_json::to_string_pretty(&serde_json::json!({
                                "pipeline": key.pipeline, "stage": stage, "policy_file": name,
                                "baseline_file": file.display().to_string(),
                                "outcome": "fail", "summary": why, "checks": [],
                            }))?
                        ),
                    }
                    return Err(ExitWith(1).into());
                }
            }
        }
    };
    let store = tollgate_aws::DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.table.clone(), 400);
    let execution_id = match execution {
        Some(id) => id,
        None => store
            .executions(&key, 1)
            .await?
            .into_iter()
            .next()
            .map(|e| e.key.execution_id)
            .ok_or_else(|| {
                format!(
                    "no execution of {} in {} {} recorded in table {}: pass --execution",
                    key.pipeline, key.account, key.region, table.table
                )
            })?,
    };
    let ctx = JobContext {
        account: key.account.clone(),
        region: key.region.clone(),
        pipeline: key.pipeline.clone(),
        stage: stage.to_string(),
        action: "(tollgate gate explain)".into(),
        execution_id,
    };
    let approvals = DynamoDbGateStore::from_sdk_config(&sdk, table.table.clone(), 400);
    let (alarms, metrics) = (
        TaggedAlarms::new(
            ResourceGroupsTaggingAlarms::from_sdk_config(&sdk),
            CloudWatchAlarms::from_sdk_config(&sdk),
        ),
        CloudWatchMetrics::from_sdk_config(&sdk),
    );
    // Leases are only read here: explaining a gate never takes one.
    let sources = FactSources {
        alarms: &alarms,
        metrics: &metrics,
        timelines: &store,
        approvals: &approvals,
        leases: &approvals,
    };
    let now = chrono::Utc::now();
    // Ad-hoc freezes and an override count here as in the gate.
    let freezes = approvals.active_freezes(&freeze_scopes(&ctx)).await?;
    let policy = with_ad_hoc_freezes(&policy, &freezes, now);
    // Explained as if the gate first evaluated now: max_wait shows the whole allowance.
    let facts = gather_facts(&policy, &ctx, now, now, &sources).await;
    let mut decision = tollgate_domain::gate::policy::evaluate(&policy, &facts);
    let explanation = match approvals.latest_override(&ctx.approval_key()).await? {
        Some(o) => apply_override(&policy, &mut decision, &o).0,
        None => decision.explain(),
    };
    let status = outcome_status(&decision.outcome);
    match format {
        Format::Text => {
            outln!(
                "{} / {} (execution {}), policy {} ({})",
                ctx.pipeline,
                ctx.stage,
                ctx.execution_id,
                policy.name,
                policy_file.display()
            );
            if let Some(m) = &merged_with {
                outln!("merged with {m}");
            }
            out!("{explanation}");
        }
        Format::Json => {
            let mut doc = serde_json::json!({
                "pipeline": ctx.pipeline, "stage": ctx.stage, "execution_id": ctx.execution_id,
                "policy": policy.name, "policy_file": policy_file.display().to_string(), "baseline": merged_with,
                "outcome": tollgate_domain::gate::outcome_word(&decision.outcome),
                "summary": decision.summary, "checks": decision.checks, "explanation": explanation,
            });
            if let tollgate_domain::gate::policy::Outcome::Wait { recheck_at } = decision.outcome {
                doc["recheck_at"] = serde_json::json!(recheck_at);
            }
            outln!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    if status != 0 {
        return Err(ExitWith(status).into());
    }
    Ok(())
}
