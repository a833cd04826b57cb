//! The report's JSON contract, and the demo story's figures end to end.

use super::*;

#[test]
fn json_field_names_are_the_documented_contract() {
    let failed = deploy("shop", "e1", nov20("09:30"), "FAILED", nov20("10:00")).done();
    let fixed = deploy("shop", "e2", nov20("11:00"), "SUCCEEDED", nov20("12:00")).done();
    let r = report(&[failed, fixed], day("2026-11-20"));
    let json = serde_json::to_value(&r).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&json),
        ["automation", "period_from", "period_to", "pipelines", "teams"]
    );
    assert_eq!(json["period_from"], "2026-11-20T00:00:00Z");
    let p = &json["pipelines"][0];
    let mut expected = vec![
        "pipeline",
        "account",
        "region",
        "team",
        "production_stage",
        "deployments",
        "failed_deployments",
        "change_failure_rate",
        "deployment_frequency_per_day",
        "deployment_frequency_per_week",
        "lead_time_seconds",
        "time_to_restore_seconds",
        "mtbf_seconds",
        "mttr_seconds",
        "builds",
        "failed_builds",
        "average_build_seconds",
        "stage_lead_time_seconds",
        "changes_reaching_production",
        "approvals",
        "executions",
        "failed_executions",
        "bands",
    ];
    expected.sort();
    assert_eq!(keys(p), expected);
    assert_eq!(keys(&p["lead_time_seconds"]), ["mean", "median", "p90"]);
    assert_eq!(
        keys(&p["time_to_restore_seconds"]),
        ["mean", "median", "restored", "unrestored"]
    );
    assert_eq!(
        keys(&p["bands"]),
        [
            "change_failure_rate",
            "deployment_frequency",
            "lead_time",
            "time_to_restore"
        ]
    );
    assert_eq!(p["bands"]["deployment_frequency"], "elite");
    assert_eq!(p["bands"]["change_failure_rate"], "low");
    assert_eq!(p["bands"]["time_to_restore"], "high");
    assert_eq!(p["team"], Value::Null);
    assert_eq!(p["mtbf_seconds"], Value::Null);
    assert_eq!(p["change_failure_rate"], 0.5);
    let mut team_keys = vec![
        "team",
        "pipelines",
        "deployments",
        "failed_deployments",
        "change_failure_rate",
        "deployment_frequency_per_day",
        "lead_time_seconds",
        "time_to_restore_seconds",
        "bands",
    ];
    team_keys.sort();
    assert_eq!(keys(&json["teams"][0]), team_keys);

    // And it reads back.
    let back: MetricsReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

#[tokio::test]
async fn the_demo_story_one_failure_restored_by_the_fix() {
    let (ingestor, store, _) = ingestor();
    for (i, body) in story_bodies().iter().enumerate() {
        ingestor
            .ingest(body, &ctx(format!("story-{i}")))
            .await
            .expect("recorded");
    }
    let a = execution_timeline(&*store, &exec_key(EXEC_A))
        .await
        .unwrap()
        .expect("A recorded");
    let b = execution_timeline(&*store, &exec_key(EXEC_B))
        .await
        .unwrap()
        .expect("B recorded");
    let a_prod_end = a
        .stage("Production")
        .and_then(|s| s.ended_at)
        .expect("A's Production ended");
    let b_prod_end = b
        .stage("Production")
        .and_then(|s| s.ended_at)
        .expect("B's Production ended");
    let b_started = b.started_at.expect("B started");

    let r = report(&[a.clone(), b.clone()], day("2026-11-20"));
    let p = only(&r);
    assert_eq!(
        (p.pipeline.as_str(), p.account.as_str(), p.region.as_str()),
        (PIPELINE, ACCOUNT, REGION)
    );
    assert_eq!(p.production_stage.as_deref(), Some("Production"));
    assert_eq!((p.deployments, p.failed_deployments), (2, 1));
    assert_eq!(p.change_failure_rate, Some(0.5));
    let ttr = (b_prod_end - a_prod_end).num_seconds();
    assert_eq!(ttr, 3901, "09:25:00 -> 10:30:01");
    assert_eq!(p.time_to_restore_seconds, restore(Some(ttr), Some(ttr), 1, 0));
    let lead_b = (b_prod_end - b_started).num_seconds();
    assert_eq!(lead_b, 1501, "10:05:00 -> 10:30:01");
    assert_eq!(p.lead_time_seconds, lead(lead_b, lead_b, lead_b));
    assert_eq!(p.deployment_frequency_per_day, 1.0);
    assert_eq!((p.executions, p.failed_executions), (2, 1));
    // A (FAILED, 09:00) then B (SUCCEEDED, 10:05).
    assert_eq!((p.mtbf_seconds, p.mttr_seconds), (None, Some(3900)));
    assert_eq!((p.builds, p.failed_builds), (2, 0));
    assert_eq!(p.changes_reaching_production, 1);
    // From each execution's start (09:00:00, 10:05:00) to each stage's end, averaged over A and B (halves round up).
    let stage_lead: Vec<(&str, i64)> = p
        .stage_lead_time_seconds
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        stage_lead,
        [
            ("Build", (404 + 374) / 2),
            ("Production", 1501), // (1500 + 1501) / 2 = 1500.5
            ("Source", 6),
            ("Staging", 678), // (691 + 664) / 2 = 677.5
        ]
    );
    assert_eq!(
        p.bands,
        Bands {
            deployment_frequency: Some(Band::Elite),
            lead_time: Some(Band::Elite),
            change_failure_rate: Some(Band::Low),
            time_to_restore: Some(Band::High),
        }
    );

    // The day before sees nothing; the fix's day alone, from 10:00, sees only B.
    let before = report(&[a.clone(), b.clone()], day("2026-11-19"));
    assert_eq!(only(&before).deployments, 0);
    let from_ten = Period {
        from: nov20("10:00"),
        to: at("2026-11-21T00:00:00Z"),
    };
    let r = report(&[a, b], from_ten);
    assert_eq!((only(&r).deployments, only(&r).failed_deployments), (1, 0));
}
