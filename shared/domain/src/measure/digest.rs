//! The weekly digest of delivery metrics, as a notification.

use crate::tell::notify::{human_duration, Notification, NotificationKind, Severity};

use crate::measure::metrics::{
    Band, Bands, LeadTimeStats, MetricsReport, Period, PipelineMetrics, TeamMetrics, TimeToRestoreStats,
    UNASSIGNED_TEAM,
};

/// At most this many teams, and pipelines per team, are listed in a digest (worst first); the rest are counted.
const DIGEST_MAX_TEAMS: usize = 20;
const DIGEST_MAX_PIPELINES_PER_TEAM: usize = 10;

/// The weekly digest of delivery metrics: per team, then per pipeline, deployments (with the deployment frequency
/// band), change failure rate, median lead time and median time to restore, each with its DORA band. Teams and
/// pipelines are listed worst first, so the first pipeline listed is the worst-performing one.
///
/// "Worst" compares, in order: the sum of the pipeline's DORA band levels (elite 0 to low 3; a failure never restored
/// counts as a low time to restore), its worst single band, its failed deployments, its change failure rate. A
/// pipeline without a production deployment in the period has no band and is listed after those that have one.
///
/// Its key, `weekly_digest@<period end, yyyy-mm-dd>`, names the period, so every attempt to send the digest of one
/// period decides the same key.
pub fn weekly_digest(report: &MetricsReport, period: &Period) -> Notification {
    let last_day = (period.to - chrono::Duration::days(1)).max(period.from);
    let title = format!(
        "Delivery digest: {} to {}",
        period.from.format("%Y-%m-%d"),
        last_day.format("%Y-%m-%d")
    );
    let common = |values: Vec<&str>| -> String {
        let mut values = values;
        values.sort_unstable();
        values.dedup();
        match values.as_slice() {
            [] => String::new(),
            [one] => one.to_string(),
            _ => "multiple".to_string(),
        }
    };
    let mut n = Notification {
        key: format!("weekly_digest@{}", period.to.format("%Y-%m-%d")),
        kind: NotificationKind::WeeklyDigest,
        severity: Severity::Info,
        account: common(report.pipelines.iter().map(|p| p.account.as_str()).collect()),
        region: common(report.pipelines.iter().map(|p| p.region.as_str()).collect()),
        pipeline: None,
        thread: String::new(),
        title,
        lines: Vec::new(),
        next_steps: Vec::new(),
        link: None,
        resources: Vec::new(),
    };
    n.thread = n.key.clone();
    if report.pipelines.is_empty() {
        n.lines
            .push("No pipeline activity was recorded in the period.".to_string());
        return n;
    }

    let deployments: u64 = report.teams.iter().map(|t| t.deployments).sum();
    let failed: u64 = report.teams.iter().map(|t| t.failed_deployments).sum();
    n.lines.push(format!(
        "{deployments} production deployment{} ({failed} failed) in {} pipeline{} of {} team{}.",
        plural(deployments as usize),
        report.pipelines.len(),
        plural(report.pipelines.len()),
        report.teams.len(),
        plural(report.teams.len())
    ));

    // Pipelines of each team, worst first; teams by their worst pipeline.
    let mut teams: Vec<RankedTeam> = report
        .teams
        .iter()
        .map(|team| {
            let mut pipelines: Vec<_> = report
                .pipelines
                .iter()
                .filter(|p| p.team.as_deref().unwrap_or(UNASSIGNED_TEAM) == team.team)
                .map(|p| {
                    let rank = DigestRank::of(
                        &p.bands,
                        &p.time_to_restore_seconds,
                        p.failed_deployments,
                        p.change_failure_rate,
                    );
                    (rank, p)
                })
                .collect();
            pipelines.sort_by(|a, b| {
                (&a.0, &a.1.pipeline, &a.1.account, &a.1.region).cmp(&(&b.0, &b.1.pipeline, &b.1.account, &b.1.region))
            });
            let worst = pipelines.first().map(|(r, _)| r.clone()).unwrap_or_default();
            (worst, team, pipelines)
        })
        .collect();
    teams.sort_by(|a, b| (&a.0, &a.1.team).cmp(&(&b.0, &b.1.team)));

    if let Some((rank, worst)) = teams.first().and_then(|(_, _, p)| p.first()) {
        if rank.needs_attention() {
            n.lines.push(format!(
                "Needs attention most: *{}* ({})",
                worst.pipeline,
                worst.team.as_deref().unwrap_or(UNASSIGNED_TEAM)
            ));
            if worst.failed_deployments > 0 {
                n.next_steps.push(format!(
                    "Review the {} failed deployment{} of {} and what it took to restore service",
                    worst.failed_deployments,
                    plural(worst.failed_deployments as usize),
                    worst.pipeline
                ));
            }
        }
    }

    for (_, team, pipelines) in teams.iter().take(DIGEST_MAX_TEAMS) {
        n.lines.push(String::new());
        n.lines.push(format!(
            "*Team {}* ({} pipeline{}): {}",
            team.team,
            pipelines.len(),
            plural(pipelines.len()),
            dora_summary(
                team.deployments,
                team.deployment_frequency_per_day,
                team.change_failure_rate,
                &team.lead_time_seconds,
                &team.time_to_restore_seconds,
                &team.bands,
            )
        ));
        for (_, p) in pipelines.iter().take(DIGEST_MAX_PIPELINES_PER_TEAM) {
            let figures = if p.deployments == 0 {
                format!(
                    "no production deployment ({} execution{} started)",
                    p.executions,
                    plural(p.executions as usize)
                )
            } else {
                dora_summary(
                    p.deployments,
                    p.deployment_frequency_per_day,
                    p.change_failure_rate,
                    &p.lead_time_seconds,
                    &p.time_to_restore_seconds,
                    &p.bands,
                )
            };
            n.lines.push(format!("• *{}*: {figures}", p.pipeline));
        }
        if pipelines.len() > DIGEST_MAX_PIPELINES_PER_TEAM {
            let more = pipelines.len() - DIGEST_MAX_PIPELINES_PER_TEAM;
            n.lines.push(format!("• and {more} more pipeline{}", plural(more)));
        }
    }
    if teams.len() > DIGEST_MAX_TEAMS {
        let more = teams.len() - DIGEST_MAX_TEAMS;
        n.lines.push(String::new());
        n.lines.push(format!("And {more} more team{}.", plural(more)));
    }
    n.next_steps
        .push("Compare with previous weeks in the Tollgate/Delivery metrics".to_string());
    n
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn band_text(band: Option<Band>) -> &'static str {
    match band {
        Some(Band::Elite) => "elite",
        Some(Band::High) => "high",
        Some(Band::Medium) => "medium",
        Some(Band::Low) => "low",
        None => "no band",
    }
}

/// `2 deployments, 0.29/day (high) · CFR 50% (low) · lead time 25m 02s (elite) · restore 1h 05m (high)`.
fn dora_summary(
    deployments: u64,
    per_day: f64,
    change_failure_rate: Option<f64>,
    lead_time: &LeadTimeStats,
    restore: &TimeToRestoreStats,
    bands: &Bands,
) -> String {
    let mut parts = vec![format!(
        "{deployments} deployment{}, {per_day:.2}/day ({})",
        plural(deployments as usize),
        band_text(bands.deployment_frequency)
    )];
    parts.push(match change_failure_rate {
        Some(rate) => format!("CFR {:.0}% ({})", rate * 100.0, band_text(bands.change_failure_rate)),
        None => "CFR –".to_string(),
    });
    parts.push(match lead_time.median {
        Some(secs) => format!("lead time {} ({})", human_duration(secs), band_text(bands.lead_time)),
        None => "lead time –".to_string(),
    });
    let mut restored = match restore.median {
        Some(secs) => format!(
            "restore {} ({})",
            human_duration(secs),
            band_text(bands.time_to_restore)
        ),
        None => "restore –".to_string(),
    };
    if restore.unrestored > 0 {
        restored.push_str(&format!(", {} not restored", restore.unrestored));
    }
    parts.push(restored);
    parts.join(" · ")
}

/// A team with its rank (its worst pipeline's) and its pipelines, ranked, worst first.
type RankedTeam<'a> = (DigestRank, &'a TeamMetrics, Vec<(DigestRank, &'a PipelineMetrics)>);

/// How badly a pipeline performs, for ordering the digest: smaller sorts first, so the worst compares smallest.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct DigestRank {
    /// True when the pipeline has no band at all (no production deployment): those sort last.
    no_data: bool,
    /// Sum of band levels (elite 0 .. low 3): the higher, the earlier.
    level_sum: std::cmp::Reverse<u32>,
    worst_band: std::cmp::Reverse<u32>,
    failed: std::cmp::Reverse<u64>,
    /// Change failure rate in basis points.
    failure_rate: std::cmp::Reverse<u64>,
}

impl DigestRank {
    fn of(bands: &Bands, restore: &TimeToRestoreStats, failed: u64, change_failure_rate: Option<f64>) -> DigestRank {
        let level = |b: Band| match b {
            Band::Elite => 0,
            Band::High => 1,
            Band::Medium => 2,
            Band::Low => 3,
        };
        // A failure never restored is as bad as the slowest restore.
        let restore_band = bands.time_to_restore.or((restore.unrestored > 0).then_some(Band::Low));
        let levels: Vec<u32> = [
            bands.deployment_frequency,
            bands.lead_time,
            bands.change_failure_rate,
            restore_band,
        ]
        .into_iter()
        .flatten()
        .map(level)
        .collect();
        DigestRank {
            no_data: levels.is_empty(),
            level_sum: std::cmp::Reverse(levels.iter().sum()),
            worst_band: std::cmp::Reverse(levels.iter().copied().max().unwrap_or(0)),
            failed: std::cmp::Reverse(failed),
            failure_rate: std::cmp::Reverse(change_failure_rate.map(|r| (r * 10_000.0).round() as u64).unwrap_or(0)),
        }
    }

    /// True when some band is below elite (or a failure was never restored).
    fn needs_attention(&self) -> bool {
        self.worst_band.0 > 0
    }
}
