//! `tollgate replay`: recorded EventBridge events through the real ingest and metrics code, offline, with the
//! in-memory store. Files hold one event, a JSON array of events, or JSON lines; folders are walked.
//!
//! The JSON output is a function of the set of distinct events only: replaying the same events in another order, or
//! with duplicates, prints the same document (delivery counts go to the progress output, not into the document).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tollgate_domain::ingest::service::{Ingestor, MessageContext, Outcome};
use tollgate_domain::measure::metrics::{compute, MetricsReport, Period, PipelineConfig};
use tollgate_domain::memory::{MemoryNotifier, MemoryStore};
use tollgate_domain::record::query::execution_timeline;
use tollgate_domain::record::timeline::ExecutionTimeline;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Input { path: String, problem: String },
    #[error("the store failed: {0}")]
    Store(String),
}

/// One input event and where it came from (`file:line` or `file[index]`).
pub struct Located {
    pub at: String,
    pub body: String,
}

/// Every file under the given paths that can hold events, sorted, so a folder replays in a stable order.
pub fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReplayError> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    Ok(out)
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), ReplayError> {
    if path.as_os_str() == "-" {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|source| ReplayError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| ReplayError::Read {
                path: path.display().to_string(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let is_events = e
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "json" | "jsonl" | "ndjson"));
            if e.is_dir() || is_events {
                walk(&e, out)?;
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Reads the events of one file (or standard input for `-`) and hands each to `each`. JSON lines are streamed; a
/// whole-file JSON value (one event or an array) is read at once.
pub fn read_events(path: &Path, mut each: impl FnMut(Located)) -> Result<(), ReplayError> {
    let shown = path.display().to_string();
    let mut reader: Box<dyn BufRead> = if shown == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(std::fs::File::open(path).map_err(|source| {
            ReplayError::Read {
                path: shown.clone(),
                source,
            }
        })?))
    };
    // Peek at the first non-blank byte: '[' is an array; '{' may be one (pretty-printed) event or JSON lines.
    let first = loop {
        let buf = reader.fill_buf().map_err(|source| ReplayError::Read {
            path: shown.clone(),
            source,
        })?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => break Some(buf[i]),
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    match first {
        None => Ok(()),
        Some(b'[') => {
            let mut text = String::new();
            reader.read_to_string(&mut text).map_err(|source| ReplayError::Read {
                path: shown.clone(),
                source,
            })?;
            let items: Vec<Value> = serde_json::from_str(&text).map_err(|e| ReplayError::Input {
                path: shown.clone(),
                problem: format!("not a JSON array of events: {e}"),
            })?;
            for (i, item) in items.into_iter().enumerate() {
                each(Located {
                    at: format!("{shown}[{i}]"),
                    body: item.to_string(),
                });
            }
            Ok(())
        }
        Some(_) => {
            let io = |source| ReplayError::Read {
                path: shown.clone(),
                source,
            };
            let mut first_line = String::new();
            let mut line_no = 0usize;
            while first_line.trim().is_empty() {
                first_line.clear();
                if reader.read_line(&mut first_line).map_err(io)? == 0 {
                    return Ok(());
                }
                line_no += 1;
            }
            // A first line that is a whole JSON value means JSON lines, streamed; otherwise the file is one
            // (pretty-printed) event.
            if serde_json::from_str::<serde::de::IgnoredAny>(&first_line).is_err() {
                let mut rest = String::new();
                reader.read_to_string(&mut rest).map_err(io)?;
                let body = first_line + &rest;
                // A captured SQS Lambda event: replay the bodies of its records.
                if let Some(bodies) = sqs_bodies(&body) {
                    for (i, b) in bodies.into_iter().enumerate() {
                        each(Located {
                            at: format!("{shown} Records[{i}]"),
                            body: b,
                        });
                    }
                    return Ok(());
                }
                each(Located {
                    at: shown.clone(),
                    body,
                });
                return Ok(());
            }
            each(Located {
                at: format!("{shown}:{line_no}"),
                body: first_line.trim_end().to_string(),
            });
            for line in reader.lines() {
                line_no += 1;
                let line = line.map_err(io)?;
                if !line.trim().is_empty() {
                    each(Located {
                        at: format!("{shown}:{line_no}"),
                        body: line,
                    });
                }
            }
            Ok(())
        }
    }
}

/// The message bodies of an SQS Lambda event (`{"Records": [{"body": ...}]}`), if that is what `text` is.
fn sqs_bodies(text: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(text).ok()?;
    let records = v.get("Records")?.as_array()?;
    records
        .iter()
        .map(|r| (r.get("eventSource")?.as_str()? == "aws:sqs").then(|| r.get("body")?.as_str().map(str::to_string))?)
        .collect()
}

/// Pipeline settings for metrics, from a JSON file: `{"pipelines": {"<name>": {"team": "...", "production_stages":
/// ["..."]}}}`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct MetricsConfigFile {
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineEntry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineEntry {
    pub team: Option<String>,
    #[serde(default)]
    pub production_stages: Vec<String>,
}

impl MetricsConfigFile {
    pub fn load(path: &Path) -> Result<MetricsConfigFile, ReplayError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| ReplayError::Input {
            path: path.display().to_string(),
            problem: format!(
                "invalid pipeline settings at line {}, column {}: {e}",
                e.line(),
                e.column()
            ),
        })
    }

    pub fn configs(&self) -> BTreeMap<String, PipelineConfig> {
        self.pipelines
            .iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    PipelineConfig {
                        team: e.team.clone(),
                        production_stages: e.production_stages.clone(),
                    },
                )
            })
            .collect()
    }
}

/// Delivery counts of a replay (not part of the JSON document: they depend on duplicates).
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub read: u64,
    pub recorded: u64,
    pub duplicates: u64,
    pub rejected: u64,
}

/// A rejected input with where it was.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedInput {
    pub reason: String,
}

/// The replay's document.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayReport {
    /// Distinct events recorded.
    pub events: u64,
    /// Distinct reasons of rejected inputs, with how many inputs had each.
    pub rejected: BTreeMap<String, u64>,
    pub metrics: MetricsReport,
    pub executions: Vec<ExecutionSummaryOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExecutionSummaryOut {
    pub pipeline: String,
    pub account: String,
    pub region: String,
    pub execution_id: String,
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i64>,
    pub stages: Vec<StageOut>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageOut {
    pub name: String,
    pub state: String,
    pub duration_seconds: Option<i64>,
}

impl From<&ExecutionTimeline> for ExecutionSummaryOut {
    fn from(t: &ExecutionTimeline) -> Self {
        ExecutionSummaryOut {
            pipeline: t.pipeline.clone(),
            account: t.account.clone(),
            region: t.region.clone(),
            execution_id: t.execution_id.clone(),
            state: t.state.clone(),
            started_at: t.started_at,
            ended_at: t.ended_at,
            duration_seconds: t.duration_secs,
            stages: t
                .stages
                .iter()
                .map(|s| StageOut {
                    name: s.name.clone(),
                    state: s.state.clone(),
                    duration_seconds: s.duration_secs,
                })
                .collect(),
        }
    }
}

/// Replays events in memory.
pub struct Replayer {
    store: Arc<MemoryStore>,
    ingestor: Ingestor<MemoryStore, MemoryNotifier>,
    pub counts: Counts,
    rejected: BTreeMap<String, u64>,
    /// The first rejected inputs with where they were, for the progress output.
    pub first_rejections: Vec<(String, String)>,
}

impl Default for Replayer {
    fn default() -> Self {
        Self::new()
    }
}

impl Replayer {
    pub fn new() -> Replayer {
        let store = Arc::new(MemoryStore::new());
        Replayer {
            ingestor: Ingestor::new(store.clone(), Arc::new(MemoryNotifier::new())),
            store,
            counts: Counts::default(),
            rejected: BTreeMap::new(),
            first_rejections: Vec::new(),
        }
    }

    pub async fn ingest(&mut self, input: Located) -> Result<(), ReplayError> {
        self.counts.read += 1;
        let ctx = MessageContext::new(input.at.clone(), DateTime::<Utc>::UNIX_EPOCH);
        match self.ingestor.ingest(&input.body, &ctx).await {
            Ok(Outcome::Recorded { new: true, .. }) => self.counts.recorded += 1,
            Ok(Outcome::Recorded { new: false, .. }) => self.counts.duplicates += 1,
            Ok(Outcome::Rejected { reason }) => {
                self.counts.rejected += 1;
                if self.first_rejections.len() < 20 {
                    self.first_rejections.push((input.at, reason.clone()));
                }
                *self.rejected.entry(reason).or_default() += 1;
            }
            // The in-memory ports never fail, and offline replay never defers.
            Err(e) => return Err(ReplayError::Store(e.to_string())),
        }
        Ok(())
    }

    /// Every execution's timeline, ordered by pipeline then start.
    pub async fn timelines(&self) -> Result<Vec<ExecutionTimeline>, ReplayError> {
        let mut out = Vec::new();
        for key in self.store.execution_keys() {
            if let Some(t) = execution_timeline(self.store.as_ref(), &key)
                .await
                .map_err(|e| ReplayError::Store(e.to_string()))?
            {
                out.push(t);
            }
        }
        out.sort_by(|a, b| {
            (&a.account, &a.region, &a.pipeline, a.started_at, &a.execution_id).cmp(&(
                &b.account,
                &b.region,
                &b.pipeline,
                b.started_at,
                &b.execution_id,
            ))
        });
        Ok(out)
    }

    /// The report over `period`, or over the whole days the data spans.
    pub async fn report(
        &self,
        configs: &BTreeMap<String, PipelineConfig>,
        period: Option<Period>,
    ) -> Result<(ReplayReport, Vec<ExecutionTimeline>), ReplayError> {
        let timelines = self.timelines().await?;
        let period = period.unwrap_or_else(|| data_span(&timelines));
        let metrics = compute(&timelines, configs, &period);
        let report = ReplayReport {
            events: self.counts.recorded,
            rejected: self.rejected.clone(),
            metrics,
            executions: timelines.iter().map(ExecutionSummaryOut::from).collect(),
        };
        Ok((report, timelines))
    }
}

/// The whole UTC days from the first execution start to the last end.
pub fn data_span(timelines: &[ExecutionTimeline]) -> Period {
    let times = timelines.iter().flat_map(|t| [t.started_at, t.ended_at]).flatten();
    let (mut lo, mut hi) = (None::<DateTime<Utc>>, None::<DateTime<Utc>>);
    for t in times {
        lo = Some(lo.map_or(t, |l| l.min(t)));
        hi = Some(hi.map_or(t, |h| h.max(t)));
    }
    let day = Duration::days(1);
    let from = lo.unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let from = from.duration_trunc(day).unwrap_or(from);
    let to = hi.unwrap_or(from);
    let to = to.duration_trunc(day).unwrap_or(to) + day;
    Period { from, to }
}

/// Parses `YYYY-MM-DD` or an RFC 3339 time.
pub fn parse_time_arg(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("{s:?} is neither a date (2026-11-20) nor an RFC 3339 time (2026-11-20T09:00:00Z)"))
}

/// The demo story, replayed: what the CLI's unit tests read from.
#[cfg(test)]
pub(crate) async fn story() -> Replayer {
    let mut replayer = Replayer::new();
    let events: Vec<Value> = serde_json::from_str(include_str!("../../events/story/failed-deploy-and-fix.json"))
        .expect("the story is a JSON array");
    for (i, e) in events.into_iter().enumerate() {
        replayer
            .ingest(Located {
                at: format!("story[{i}]"),
                body: e.to_string(),
            })
            .await
            .expect("the story replays");
    }
    replayer
}

impl Replayer {
    /// The in-memory store the events were recorded in.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }
}
