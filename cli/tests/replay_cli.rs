//! The `tollgate` binary end to end: simulate, replay, report, and their errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn tollgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("tollgate runs")
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tollgate-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn replay_json_is_the_same_for_a_shuffled_and_duplicated_stream() {
    let clean = temp("clean.jsonl");
    let messy = temp("messy.jsonl");
    let common = ["simulate", "--seed", "9", "--pipelines", "4", "--executions", "12"];
    let mut a = common.to_vec();
    a.extend([
        "--duplicates",
        "0",
        "--reorder-window",
        "0",
        "--out",
        clean.to_str().unwrap(),
    ]);
    let mut b = common.to_vec();
    b.extend([
        "--duplicates",
        "0.5",
        "--reorder-window",
        "25",
        "--out",
        messy.to_str().unwrap(),
    ]);
    stdout(&tollgate(&a));
    stdout(&tollgate(&b));
    let lines = |p: &PathBuf| std::fs::read_to_string(p).unwrap().lines().count();
    assert!(
        lines(&messy) > lines(&clean) * 13 / 10,
        "the messy stream has duplicates"
    );
    let clean_json = stdout(&tollgate(&[
        "replay",
        "--quiet",
        "--format",
        "json",
        clean.to_str().unwrap(),
    ]));
    let messy_json = stdout(&tollgate(&[
        "replay",
        "--quiet",
        "--format",
        "json",
        messy.to_str().unwrap(),
    ]));
    assert_eq!(clean_json, messy_json);
    let doc: serde_json::Value = serde_json::from_str(&clean_json).unwrap();
    assert_eq!(doc["executions"].as_array().unwrap().len(), 48);
    let p = &doc["metrics"]["pipelines"][0];
    for field in [
        "deployments",
        "failed_deployments",
        "change_failure_rate",
        "lead_time_seconds",
        "time_to_restore_seconds",
        "builds",
        "average_build_seconds",
    ] {
        assert!(p.get(field).is_some(), "documented field {field} is present");
    }
    assert!(p["lead_time_seconds"].get("median").is_some() && p["lead_time_seconds"].get("p90").is_some());
    let e = &doc["executions"][0];
    assert!(e["state"].is_string() && e["stages"][0]["duration_seconds"].is_number());
}

#[test]
fn replay_reads_arrays_single_events_json_lines_and_folders() {
    let folder = temp("mixed");
    std::fs::create_dir_all(&folder).unwrap();
    let story: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string("../events/story/failed-deploy-and-fix.json").unwrap()).unwrap();
    // The story split three ways: an array, JSON lines, and one pretty-printed event per file.
    std::fs::write(folder.join("a.json"), serde_json::to_string(&story[..20]).unwrap()).unwrap();
    let lines: Vec<String> = story[20..40].iter().map(|e| e.to_string()).collect();
    std::fs::write(folder.join("b.jsonl"), lines.join("\n")).unwrap();
    for (i, e) in story[40..].iter().enumerate() {
        std::fs::write(
            folder.join(format!("c{i:02}.json")),
            serde_json::to_string_pretty(e).unwrap(),
        )
        .unwrap();
    }
    std::fs::write(folder.join("notes.txt"), "not events").unwrap();
    let split = stdout(&tollgate(&[
        "replay",
        "--quiet",
        "--format",
        "json",
        folder.to_str().unwrap(),
    ]));
    let whole = stdout(&tollgate(&[
        "replay",
        "--quiet",
        "--format",
        "json",
        "events/story/failed-deploy-and-fix.json",
    ]));
    assert_eq!(split, whole);
    let doc: serde_json::Value = serde_json::from_str(&whole).unwrap();
    assert_eq!(doc["events"], 55);
    assert_eq!(doc["metrics"]["pipelines"][0]["failed_deployments"], 1);
}

#[test]
fn bad_input_and_arguments_get_clear_errors() {
    let bad = temp("bad.jsonl");
    std::fs::write(&bad, "{\"source\": \"aws.codepipeline\"}\nnot json\n").unwrap();
    let out = tollgate(&["replay", "--format", "json", bad.to_str().unwrap()]);
    assert!(out.status.success(), "rejected events are reported, not fatal");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:1") && err.contains("`detail-type` is missing"),
        "{err}"
    );
    assert!(
        err.contains("bad.jsonl:2") && err.contains("invalid JSON at line 1, column 2"),
        "{err}"
    );

    let missing = tollgate(&["replay", "no/such/file.json"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read no/such/file.json"));

    let period = tollgate(&["replay", "--from", "2026-11-20", "events/"]);
    assert!(String::from_utf8_lossy(&period.stderr).contains("give both --from and --to"));

    let rate = tollgate(&["simulate", "--duplicates", "1.5"]);
    assert!(String::from_utf8_lossy(&rate.stderr).contains("1.5 is not between 0 and 1"));

    let date = tollgate(&["replay", "--from", "yesterday", "--to", "2026-11-21", "events/"]);
    assert!(String::from_utf8_lossy(&date.stderr).contains("neither a date"));
}

#[test]
fn report_writes_a_page() {
    let page = temp("report.html");
    let out = tollgate(&[
        "report",
        "--quiet",
        "--html",
        page.to_str().unwrap(),
        "events/story/failed-deploy-and-fix.json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("checkout-service") && html.contains("<svg"));
}
