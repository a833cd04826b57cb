//! `tollgate report --html`: one self-contained HTML page (inline CSS and SVG, no script, nothing fetched) with the
//! delivery metrics of recorded timelines: deployments and lead time week by week, change failure rate and time to
//! restore per pipeline, per-stage durations, and the per-pipeline and per-team tables.
//!
//! It reads the metrics through their documented JSON fields (docs/metrics.md), the same contract `replay --format
//! json` prints.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use tollgate_domain::measure::metrics::{compute, MetricsReport, Period, PipelineConfig};
use tollgate_domain::record::timeline::ExecutionTimeline;
use tollgate_domain::tell::notify::human_duration;

const COLORS: [&str; 8] = [
    "#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#dc2626", "#4b5563", "#db2777",
];
const FAILED: &str = "#dc2626";
const OK: &str = "#16a34a";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn secs(v: &Value) -> String {
    v.as_i64().map(human_duration).unwrap_or_else(|| "–".into())
}

fn pct(v: &Value) -> String {
    num(v)
        .map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn band(v: &Value) -> String {
    match v.as_str() {
        Some(b) => format!("<span class=\"band {b}\">{b}</span>"),
        None => "–".into(),
    }
}

/// One bucket of the period (a day, or a week for periods over five weeks): its start and the metrics over it.
struct Week {
    start: DateTime<Utc>,
    metrics: Value,
}

/// The bucket length for a period: days up to five weeks, weeks beyond.
fn bucket(period: &Period) -> (Duration, &'static str) {
    if period.to - period.from <= Duration::days(35) {
        (Duration::days(1), "day")
    } else {
        (Duration::days(7), "week")
    }
}

fn weeks(timelines: &[ExecutionTimeline], configs: &BTreeMap<String, PipelineConfig>, period: &Period) -> Vec<Week> {
    let mut out = Vec::new();
    let mut start = period.from;
    let (step, _) = bucket(period);
    while start < period.to {
        let end = (start + step).min(period.to);
        let m = compute(timelines, configs, &Period { from: start, to: end });
        out.push(Week {
            start,
            metrics: serde_json::to_value(&m).unwrap_or(Value::Null),
        });
        start = end;
    }
    out
}

/// A bar chart of deployments per week, failed ones stacked in red.
fn deployments_chart(weeks: &[Week]) -> String {
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let totals: Vec<(f64, f64)> = weeks
        .iter()
        .map(|wk| {
            let ps = wk.metrics["pipelines"].as_array().cloned().unwrap_or_default();
            let d: f64 = ps.iter().filter_map(|p| num(&p["deployments"])).sum();
            let f: f64 = ps.iter().filter_map(|p| num(&p["failed_deployments"])).sum();
            (d, f)
        })
        .collect();
    let max = totals.iter().map(|t| t.0).fold(1.0, f64::max);
    let bw = (w - 2.0 * pad) / totals.len().max(1) as f64;
    let mut svg = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Deployments per week\">");
    axis(&mut svg, w, h, pad, max, "deployments");
    for (i, (d, f)) in totals.iter().enumerate() {
        let x = pad + i as f64 * bw + bw * 0.15;
        let scale = (h - 2.0 * pad) / max;
        let (hd, hf) = (d * scale, f * scale);
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{OK}\"><title>{} deployments, {} failed</title></rect>",
            h - pad - hd,
            bw * 0.7,
            hd - hf,
            d,
            f
        );
        if *f > 0.0 {
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{hf:.1}\" fill=\"{FAILED}\"/>",
                h - pad - hf,
                bw * 0.7
            );
        }
        if totals.len() <= 16 || i % (totals.len() / 8).max(1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                x + bw * 0.35,
                h - pad + 14.0,
                weeks[i].start.format("%m-%d")
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The weekly median lead time across all production deployments, as a line.
fn lead_time_chart(weeks: &[Week]) -> String {
    let (w, h, pad) = (720.0, 220.0, 36.0);
    let points: Vec<Option<f64>> = weeks
        .iter()
        .map(|wk| {
            let mut v: Vec<f64> = wk.metrics["pipelines"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| num(&p["lead_time_seconds"]["median"]))
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).map(|s| s / 3600.0)
        })
        .collect();
    let max = points.iter().flatten().copied().fold(1.0, f64::max);
    let step = (w - 2.0 * pad) / points.len().max(1) as f64;
    let mut svg = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Median lead time per week\">");
    axis(&mut svg, w, h, pad, max, "hours");
    let mut path = String::new();
    for (i, p) in points.iter().enumerate() {
        if let Some(v) = p {
            let x = pad + (i as f64 + 0.5) * step;
            let y = h - pad - v / max * (h - 2.0 * pad);
            let _ = write!(path, "{}{x:.1},{y:.1} ", if path.is_empty() { "M" } else { "L" });
            let _ = write!(
                svg,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"><title>week of {}: {:.1} h</title></circle>",
                COLORS[0],
                weeks[i].start.format("%Y-%m-%d"),
                v
            );
        }
    }
    let _ = write!(
        svg,
        "<path d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
        COLORS[0]
    );
    svg.push_str("</svg>");
    svg
}

fn axis(svg: &mut String, w: f64, h: f64, pad: f64, max: f64, unit: &str) {
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" class=\"axis\"/><line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{0}\" class=\"axis\"/>",
        h - pad,
        w - pad
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = h - pad - (h - 2.0 * pad) * k as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text><line x1=\"{pad}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/>",
            pad - 4.0,
            y + 4.0,
            if max >= 10.0 { format!("{v:.0}") } else { format!("{v:.1}") },
            w - pad
        );
    }
    let _ = write!(
        svg,
        "<text x=\"4\" y=\"{:.1}\" class=\"tick\">{unit}</text>",
        pad - 12.0
    );
}

/// Horizontal bars, one per row, with a label and a formatted value.
fn bars(rows: &[(String, Option<f64>, String)], color: &str, label: &str) -> String {
    let row_h = 22.0;
    let (w, left) = (720.0, 200.0);
    let h = row_h * rows.len().max(1) as f64 + 10.0;
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(label)
    );
    for (i, (name, v, text)) in rows.iter().enumerate() {
        let y = 5.0 + i as f64 * row_h;
        let len = v.map(|v| v / max * (w - left - 90.0)).unwrap_or(0.0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}</text><rect x=\"{left}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{}</text>",
            left - 6.0,
            y + 14.0,
            esc(name),
            row_h - 6.0,
            left + len + 6.0,
            y + 14.0,
            esc(text)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Mean duration of each stage, per pipeline, as stacked bars in stage order.
fn stage_chart(timelines: &[ExecutionTimeline]) -> String {
    let mut per: BTreeMap<String, Vec<(String, f64, usize)>> = BTreeMap::new();
    for t in timelines {
        let stages = per.entry(t.pipeline.clone()).or_default();
        for s in &t.stages {
            let Some(d) = s.duration_secs else { continue };
            match stages.iter_mut().find(|x| x.0 == s.name) {
                Some(x) => {
                    x.1 += d as f64;
                    x.2 += 1;
                }
                None => stages.push((s.name.clone(), d as f64, 1)),
            }
        }
    }
    let mut stage_names: Vec<String> = Vec::new();
    for stages in per.values() {
        for s in stages {
            if !stage_names.contains(&s.0) {
                stage_names.push(s.0.clone());
            }
        }
    }
    let row_h = 24.0;
    let (w, left) = (720.0, 200.0);
    let h = row_h * per.len().max(1) as f64 + 40.0;
    let totals: Vec<f64> = per.values().map(|s| s.iter().map(|x| x.1 / x.2 as f64).sum()).collect();
    let max = totals.iter().copied().fold(1.0, f64::max);
    let mut svg = format!("<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Mean stage durations\">");
    for (i, (pipeline, stages)) in per.iter().enumerate() {
        let y = 5.0 + i as f64 * row_h;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}</text>",
            left - 6.0,
            y + 15.0,
            esc(pipeline)
        );
        let mut x = left;
        for s in stages {
            let mean = s.1 / s.2 as f64;
            let len = mean / max * (w - left - 80.0);
            let color = COLORS[stage_names.iter().position(|n| *n == s.0).unwrap_or(0) % COLORS.len()];
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{len:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{}: {}</title></rect>",
                row_h - 8.0,
                esc(&s.0),
                human_duration(mean as i64)
            );
            x += len;
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{}</text>",
            x + 6.0,
            y + 15.0,
            human_duration(totals[i] as i64)
        );
    }
    let ly = h - 18.0;
    let mut lx = left;
    for (i, name) in stage_names.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{lx:.1}\" y=\"{ly:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"label\">{}</text>",
            COLORS[i % COLORS.len()],
            lx + 14.0,
            ly + 9.0,
            esc(name)
        );
        lx += 24.0 + 7.0 * name.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

/// The whole page.
pub fn html(
    timelines: &[ExecutionTimeline],
    configs: &BTreeMap<String, PipelineConfig>,
    report: &MetricsReport,
    generated_at: DateTime<Utc>,
) -> String {
    let period = Period {
        from: report.period_from,
        to: report.period_to,
    };
    let m = serde_json::to_value(report).unwrap_or(Value::Null);
    let pipelines = m["pipelines"].as_array().cloned().unwrap_or_default();
    let teams = m["teams"].as_array().cloned().unwrap_or_default();
    let weeks = weeks(timelines, configs, &period);
    let label = |p: &Value| p["pipeline"].as_str().unwrap_or("?").to_string();
    let cfr_rows: Vec<(String, Option<f64>, String)> = pipelines
        .iter()
        .map(|p| {
            (
                label(p),
                num(&p["change_failure_rate"]),
                format!(
                    "{} ({} of {})",
                    pct(&p["change_failure_rate"]),
                    p["failed_deployments"],
                    p["deployments"]
                ),
            )
        })
        .collect();
    let ttr_rows: Vec<(String, Option<f64>, String)> = pipelines
        .iter()
        .map(|p| {
            let t = &p["time_to_restore_seconds"];
            let unrestored = t["unrestored"].as_u64().unwrap_or(0);
            let extra = if unrestored > 0 {
                format!(", {unrestored} not restored")
            } else {
                String::new()
            };
            (label(p), num(&t["median"]), format!("{}{extra}", secs(&t["median"])))
        })
        .collect();

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tollgate delivery report</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1240px; padding: 0 1rem; color: #111827; }}
h1 {{ margin-bottom: 0.2rem; }} .sub {{ color: #6b7280; margin-top: 0; }}
section {{ margin: 2rem 0; }} svg {{ width: 100%; max-width: 760px; height: auto; display: block; }}
.axis {{ stroke: #9ca3af; }} .grid {{ stroke: #e5e7eb; }} .tick, .label {{ font-size: 11px; fill: #374151; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }} th, td {{ padding: 0.3rem 0.5rem; white-space: nowrap; border-bottom: 1px solid #e5e7eb; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }} th {{ background: #f9fafb; }}
.band {{ padding: 0.05rem 0.4rem; border-radius: 0.6rem; font-size: 0.8rem; }} .elite {{ background: #dcfce7; }}
.high {{ background: #dbeafe; }} .medium {{ background: #fef9c3; }} .low {{ background: #fee2e2; }}
.kpis {{ display: flex; gap: 1rem; flex-wrap: wrap; }} .kpi {{ border: 1px solid #e5e7eb; border-radius: 0.5rem; padding: 0.6rem 1rem; min-width: 150px; }}
.kpi b {{ display: block; font-size: 1.4rem; }}
</style></head><body>
<h1>Tollgate delivery report</h1>
<p class="sub">{} to {} (UTC) · {} pipelines · {} executions · generated {}</p>
"#,
        period.from.format("%Y-%m-%d"),
        period.to.format("%Y-%m-%d"),
        pipelines.len(),
        timelines.len(),
        generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    let total = |k: &str| pipelines.iter().filter_map(|p| p[k].as_u64()).sum::<u64>();
    let (deploys, failed) = (total("deployments"), total("failed_deployments"));
    let days = ((period.to - period.from).num_hours() as f64 / 24.0).max(1.0 / 24.0);
    let _ = write!(
        out,
        "<div class=\"kpis\"><div class=\"kpi\">Production deployments<b>{deploys}</b>{:.2} per day</div><div class=\"kpi\">Change failure rate<b>{}</b>{failed} failed</div><div class=\"kpi\">Builds<b>{}</b></div><div class=\"kpi\">Changes reaching production<b>{}</b></div></div>",
        deploys as f64 / days,
        if deploys > 0 { format!("{:.0}%", failed as f64 * 100.0 / deploys as f64) } else { "–".into() },
        total("builds"),
        total("changes_reaching_production"),
    );
    let _ = write!(
        out,
        "<section><h2>Deployment frequency</h2><p class=\"sub\">Production deployments per {}; failed ones in red.</p>{}</section>",
        bucket(&period).1,
        deployments_chart(&weeks)
    );
    let _ = write!(
        out,
        "<section><h2>Lead time for changes</h2><p class=\"sub\">Median over pipelines of each pipeline's median lead time per {}, in hours.</p>{}</section>",
        bucket(&period).1,
        lead_time_chart(&weeks)
    );
    let _ = write!(
        out,
        "<section><h2>Change failure rate</h2>{}</section>",
        bars(&cfr_rows, FAILED, "Change failure rate per pipeline")
    );
    let _ = write!(
        out,
        "<section><h2>Time to restore</h2><p class=\"sub\">Median time from a failed production deployment to the next successful one.</p>{}</section>",
        bars(&ttr_rows, COLORS[2], "Time to restore per pipeline")
    );
    let _ = write!(
        out,
        "<section><h2>Stage durations</h2><p class=\"sub\">Mean duration of each stage, per pipeline.</p>{}</section>",
        stage_chart(timelines)
    );
    out.push_str("<section><h2>Pipelines</h2><p class=\"sub\">DORA bands in the order frequency, lead time, change failure rate, time to restore.</p><table><tr><th>pipeline</th><th>team</th><th>deploys</th><th>failed</th><th>per day</th><th>lead time p50 / p90</th><th>failure rate</th><th>restore</th><th>builds</th><th>avg build</th><th>DORA bands</th></tr>");
    for p in &pipelines {
        let b = &p["bands"];
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {} {} {}</td></tr>",
            esc(&label(p)),
            esc(p["team"].as_str().unwrap_or("–")),
            p["deployments"],
            p["failed_deployments"],
            num(&p["deployment_frequency_per_day"]).unwrap_or(0.0),
            secs(&p["lead_time_seconds"]["median"]),
            secs(&p["lead_time_seconds"]["p90"]),
            pct(&p["change_failure_rate"]),
            secs(&p["time_to_restore_seconds"]["median"]),
            p["builds"],
            num(&p["average_build_seconds"]).map(|s| human_duration(s as i64)).unwrap_or_else(|| "–".into()),
            band(&b["deployment_frequency"]),
            band(&b["lead_time"]),
            band(&b["change_failure_rate"]),
            band(&b["time_to_restore"]),
        );
    }
    out.push_str("</table></section>");
    out.push_str("<section><h2>Teams</h2><table><tr><th>team</th><th>pipelines</th><th>deployments</th><th>failed</th><th>change failure rate</th><th>lead time (median)</th><th>time to restore</th></tr>");
    for t in &teams {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(t["team"].as_str().unwrap_or("?")),
            t["pipelines"].as_array().map(|a| a.len()).unwrap_or(0),
            t["deployments"],
            t["failed_deployments"],
            pct(&t["change_failure_rate"]),
            secs(&t["lead_time_seconds"]["median"]),
            secs(&t["time_to_restore_seconds"]["median"]),
        );
    }
    out.push_str("</table></section>");
    automation_section(&mut out, &m["automation"]);
    out.push_str("<p class=\"sub\">Definitions: docs/metrics.md. Made by Tollgate from recorded CodePipeline, CodeBuild and CodeDeploy events.</p></body></html>\n");
    out
}

/// Tollgate's own actions by family and the manual fallbacks (docs/metrics.md, "Automation health"). Without an
/// audit trail (offline replay) only the fallbacks the timelines show are there, and the section says so.
fn automation_section(out: &mut String, a: &Value) {
    out.push_str("<section><h2>Automation health</h2>");
    if a["audit_entries"].as_u64().unwrap_or(0) == 0 {
        out.push_str("<p class=\"sub\">No audit trail was read: Tollgate's own actions are not counted here; manual rollbacks and deployment stops come from the timelines.</p>");
    }
    out.push_str("<table><tr><th>action family</th><th>actions</th><th>errors</th><th>error rate</th><th>latency p50 / p90</th></tr>");
    let ms = |v: &Value| {
        v.as_i64()
            .map_or("–".to_string(), |ms| secs(&Value::from((ms + 500) / 1000)))
    };
    if let Some(families) = a["families"].as_object() {
        for (family, f) in families {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
                esc(family),
                f["actions"],
                f["errors"],
                pct(&f["error_rate"]),
                ms(&f["latency_ms"]["median"]),
                ms(&f["latency_ms"]["p90"]),
            );
        }
    }
    let _ = write!(
        out,
        "<tr><th>all</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></table>",
        a["actions"],
        a["errors"],
        pct(&a["error_rate"])
    );
    let m = &a["manual"];
    let _ = write!(
        out,
        "<p>Manual fallbacks: {} ({} per production deployment): {} approvals, {} overrides, {} manual rollbacks, {} deployments stopped by hand.</p></section>",
        m["total"],
        m["per_production_deployment"].as_f64().map_or("–".to_string(), |r| format!("{r:.2}")),
        m["approvals"],
        m["overrides"],
        m["manual_rollbacks"],
        m["manual_deployment_stops"],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn story_timelines() -> Vec<ExecutionTimeline> {
        crate::replay::story().await.timelines().await.unwrap()
    }

    #[tokio::test]
    async fn report_is_self_contained_and_shows_every_chart_and_pipeline() {
        let timelines = story_timelines().await;
        let period = Period {
            from: "2026-11-20T00:00:00Z".parse().unwrap(),
            to: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let mut configs = BTreeMap::new();
        configs.insert(
            "checkout-service".to_string(),
            PipelineConfig {
                team: Some("shop <&> co".into()),
                production_stages: vec![],
            },
        );
        let report = compute(&timelines, &configs, &period);
        let page = html(&timelines, &configs, &report, Utc::now());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 5, "five charts");
        for forbidden in ["<script", "src=", "href=", "http://", "https://", "@import"] {
            assert!(
                !page.contains(forbidden),
                "the page must not load anything: found {forbidden}"
            );
        }
        assert!(page.contains("checkout-service"));
        assert!(page.contains("shop &lt;&amp;&gt; co"), "team names are escaped");
        assert!(!page.contains("shop <&> co"));
        assert!(page.contains("50%"), "the story's change failure rate");
        assert!(page.contains("1h 05m"), "the story's time to restore");
        assert!(page.contains("<h2>Automation health</h2>"));
        assert!(
            page.contains("No audit trail was read"),
            "replayed events have no audit trail"
        );
        assert!(page.contains("Manual fallbacks: 0 (0.00 per production deployment)"));
    }

    #[tokio::test]
    async fn the_report_shows_each_action_family_with_its_errors_and_latency() {
        use tollgate_domain::audit::{AuditEntry, GENESIS};
        let timelines = story_timelines().await;
        let period = Period {
            from: "2026-11-20T00:00:00Z".parse().unwrap(),
            to: "2026-11-21T00:00:00Z".parse().unwrap(),
        };
        let entry = |seq: u64, outcome: &str, ms: i64| AuditEntry {
            scope: "global".into(),
            seq,
            at: "2026-11-20T12:00:00Z".parse().unwrap(),
            actor: "tollgate:guard".into(),
            action: "rollback.stop_deployment".into(),
            subject: "d-1".into(),
            detail: serde_json::json!({ "outcome": outcome, "duration_ms": ms }),
            prev_hash: GENESIS.into(),
            hash: String::new(),
        };
        let audit = [entry(1, "ok", 60_000), entry(2, "refused", 120_000)];
        let report =
            tollgate_domain::measure::metrics::compute_with_audit(&timelines, &BTreeMap::new(), &period, &audit, &[]);
        let page = html(&timelines, &BTreeMap::new(), &report, Utc::now());
        assert!(!page.contains("No audit trail was read"));
        assert!(
            page.contains("<tr><td>rollback</td><td>2</td><td>1</td><td>50%</td><td>1m 00s / 2m 00s</td></tr>"),
            "{}",
            &page[page.find("Automation health").unwrap_or(0)..]
        );
    }
}
