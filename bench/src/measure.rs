//! Runs one function binary against its own Runtime API emulator and measures it: init time (process start to the
//! first request for work), wall time per invocation, peak RSS (VmHWM), AWS requests per event at the counting
//! proxy, and, under callgrind, instruction counts of whole runs (per-event counts are differences of runs).

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::emulator::{Emulator, Outcome};
use crate::functions::{Delivery, FunctionSpec};
use crate::proxy::{difference, CountingProxy, Counts};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("{name}: cannot start {binary}: {source} (build it first: scripts/bench.sh builds every binary)")]
    Spawn {
        name: String,
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{name}: exited ({status}) before asking for work; the last lines it wrote:\n{log_tail}")]
    DidNotStart {
        name: String,
        status: String,
        log_tail: String,
    },
    #[error("{name}: {what} took longer than {timeout:?}; see {log}")]
    Timeout {
        name: String,
        what: String,
        timeout: Duration,
        log: String,
    },
    #[error("{name}: exited ({status}) while {what}; see {log}")]
    Exited {
        name: String,
        status: String,
        what: String,
        log: String,
    },
    #[error("{name}: invocation failed ({delivery:?}): {detail}")]
    Invocation {
        name: String,
        delivery: Delivery,
        detail: String,
    },
    #[error("{name}: callgrind wrote no totals to {file}: {detail}")]
    Callgrind { name: String, file: String, detail: String },
    #[error("cannot write the benchmark's files under {path}: {source}")]
    Files {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A function to run: its row of the table, its binary and its full environment.
pub struct Target<'a> {
    /// The label in the report (the binary, or a baseline with its clients).
    pub name: String,
    pub binary: PathBuf,
    pub env: Vec<(String, String)>,
    pub spec: &'a FunctionSpec,
}

/// What the runs share: the counting proxy, where logs go, and the per-run uniqueness of events.
pub struct Bench<'a> {
    pub proxy: &'a CountingProxy,
    pub out_dir: PathBuf,
    pub nonce: String,
    pub sequence: std::cell::Cell<u64>,
    pub timeout: Duration,
}

/// The figures of one run without valgrind.
#[derive(Debug, Clone, Default)]
pub struct NativeRun {
    pub init: Duration,
    /// The first invocation after init: it pays for lazily built state (HTTP client, TLS, credentials).
    pub first_event: Duration,
    pub new_events: Vec<Duration>,
    pub duplicates: Vec<Duration>,
    pub peak_rss_kb: u64,
    pub first_requests: Counts,
    /// Requests of all the steady new events together (divide by their number).
    pub new_requests: Counts,
    pub duplicate_requests: Counts,
}

/// Instruction counts of four callgrind runs, from which per-event figures are derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Instructions {
    /// Start to the first request for work.
    pub init: u64,
    /// The first invocation.
    pub first_event: u64,
    /// A steady-state new event.
    pub new_event: u64,
    /// A steady-state duplicate.
    pub duplicate: u64,
}

struct Process {
    child: Child,
    emulator: Emulator,
    started: Instant,
    log: PathBuf,
}

impl Bench<'_> {
    fn invocation(&self, target: &Target, delivery: Delivery) -> crate::functions::Invocation {
        let seq = self.sequence.get() + 1;
        self.sequence.set(seq);
        (target.spec.event)(delivery, &self.nonce, seq)
    }

    fn spawn(&self, target: &Target, callgrind_out: Option<&Path>) -> Result<Process, MeasureError> {
        let emulator = Emulator::start().map_err(|source| self.files_error(&self.out_dir, source))?;
        let logs = self.out_dir.join("logs");
        fs::create_dir_all(&logs).map_err(|source| self.files_error(&logs, source))?;
        let log = logs.join(format!("{}.log", target.name.replace(['[', ']', ','], "_")));
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|source| self.files_error(&log, source))
        };
        let (stdout, stderr): (File, File) = (open()?, open()?);
        let mut command = match callgrind_out {
            Some(out) => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", out.display()))
                    .arg(&target.binary);
                c
            }
            None => Command::new(&target.binary),
        };
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", emulator.address())
            .envs(lambda_env(&target.name, self.proxy.endpoint()))
            .envs(target.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let started = Instant::now();
        let child = command.spawn().map_err(|source| MeasureError::Spawn {
            name: target.name.clone(),
            binary: target.binary.display().to_string(),
            source,
        })?;
        Ok(Process {
            child,
            emulator,
            started,
            log,
        })
    }

    fn files_error(&self, path: &Path, source: std::io::Error) -> MeasureError {
        MeasureError::Files {
            path: path.display().to_string(),
            source,
        }
    }

    /// Waits for the `n`th request for work, watching for the process dying meanwhile.
    fn wait_ready(&self, target: &Target, p: &mut Process, n: usize, what: &str) -> Result<Instant, MeasureError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(at) = p.emulator.wait_next_calls(n, Duration::from_millis(50)) {
                return Ok(at);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(if n == 1 {
                    MeasureError::DidNotStart {
                        name: target.name.clone(),
                        status: status.to_string(),
                        log_tail: tail(&p.log, 8),
                    }
                } else {
                    MeasureError::Exited {
                        name: target.name.clone(),
                        status: status.to_string(),
                        what: what.to_string(),
                        log: p.log.display().to_string(),
                    }
                });
            }
            if Instant::now() > deadline {
                return Err(MeasureError::Timeout {
                    name: target.name.clone(),
                    what: what.to_string(),
                    timeout: self.timeout,
                    log: p.log.display().to_string(),
                });
            }
        }
    }

    /// One invocation, answered and the function back asking for work; its wall time (queued to answered).
    fn invoke(&self, target: &Target, p: &mut Process, delivery: Delivery) -> Result<Duration, MeasureError> {
        let invocation = self.invocation(target, delivery);
        let calls = p.emulator.next_calls();
        let queued = Instant::now();
        let id = p.emulator.invoke(
            invocation.payload.to_string().into_bytes(),
            invocation.request_id.as_deref(),
        );
        self.wait_ready(target, p, calls + 1, "processing an event")?;
        let failed = |detail: String| MeasureError::Invocation {
            name: target.name.clone(),
            delivery,
            detail,
        };
        match p.emulator.wait_outcome(&id, Duration::from_secs(1)) {
            Some(Outcome::Response { body, at }) => {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                (target.spec.check)(&value).map_err(failed)?;
                Ok(at.duration_since(queued))
            }
            Some(Outcome::Error { body, .. }) => Err(failed(String::from_utf8_lossy(&body).into_owned())),
            None => Err(failed("asked for more work without answering this invocation".into())),
        }
    }

    /// A run without valgrind: init, the first event, `n` new events, then `n` duplicates of one event.
    pub fn native_run(&self, target: &Target, n: usize) -> Result<NativeRun, MeasureError> {
        let mut p = self.spawn(target, None)?;
        let result = self.native_steps(target, &mut p, n);
        let _ = p.child.kill();
        let _ = p.child.wait();
        result
    }

    fn native_steps(&self, target: &Target, p: &mut Process, n: usize) -> Result<NativeRun, MeasureError> {
        let mut run = NativeRun {
            init: self.wait_ready(target, p, 1, "init")?.duration_since(p.started),
            ..NativeRun::default()
        };
        let before = self.proxy.snapshot();
        run.first_event = self.invoke(target, p, Delivery::New)?;
        let after_first = self.proxy.snapshot();
        run.first_requests = difference(&after_first, &before);
        for _ in 0..n {
            run.new_events.push(self.invoke(target, p, Delivery::New)?);
        }
        let after_new = self.proxy.snapshot();
        run.new_requests = difference(&after_new, &after_first);
        // The duplicate's first delivery is a new event; only the repeats count.
        self.invoke(target, p, Delivery::Duplicate)?;
        let before_duplicates = self.proxy.snapshot();
        for _ in 0..n {
            run.duplicates.push(self.invoke(target, p, Delivery::Duplicate)?);
        }
        run.duplicate_requests = difference(&self.proxy.snapshot(), &before_duplicates);
        run.peak_rss_kb = peak_rss_kb(p.child.id()).unwrap_or(0);
        Ok(run)
    }

    /// Instructions of a run under callgrind that delivers `plan` and is stopped once idle again.
    pub fn callgrind_run(&self, target: &Target, plan: &[Delivery], label: &str) -> Result<u64, MeasureError> {
        let dir = self.out_dir.join("callgrind");
        fs::create_dir_all(&dir).map_err(|source| self.files_error(&dir, source))?;
        let file = dir.join(format!("{}.{label}.out", target.name.replace(['[', ']', ','], "_")));
        let _ = fs::remove_file(&file);
        let mut p = self.spawn(target, Some(&file))?;
        let steps = (|| {
            self.wait_ready(target, &mut p, 1, "init under callgrind")?;
            for delivery in plan {
                self.invoke(target, &mut p, *delivery)?;
            }
            Ok(())
        })();
        // SIGTERM, not SIGKILL: the client dies of the signal's default action and valgrind still runs callgrind's
        // final dump (SIGKILL would end valgrind too, with nothing written).
        let _ = Command::new("kill").arg("-TERM").arg(p.child.id().to_string()).status();
        let _ = p.child.wait();
        steps?;
        callgrind_total(&file).map_err(|detail| MeasureError::Callgrind {
            name: target.name.clone(),
            file: file.display().to_string(),
            detail,
        })
    }

    /// The four callgrind runs: 0 events, 1 new, 1 + `n` new, 1 new then 1 + `n` duplicates.
    pub fn instructions(&self, target: &Target, n: usize) -> Result<Instructions, MeasureError> {
        let n = n.max(1);
        let t0 = self.callgrind_run(target, &[], "init")?;
        let t1 = self.callgrind_run(target, &[Delivery::New], "first")?;
        let news = vec![Delivery::New; n + 1];
        let tn = self.callgrind_run(target, &news, "new")?;
        let mut dups = vec![Delivery::New];
        dups.extend(vec![Delivery::Duplicate; n + 1]);
        let td = self.callgrind_run(target, &dups, "duplicate")?;
        let per_new = tn.saturating_sub(t1) / n as u64;
        // The first duplicate delivery is a new event (per_new); the other `n` are the duplicates.
        let per_duplicate = td.saturating_sub(t1).saturating_sub(per_new) / n as u64;
        Ok(Instructions {
            init: t0,
            first_event: t1.saturating_sub(t0),
            new_event: per_new,
            duplicate: per_duplicate,
        })
    }
}

/// What Lambda sets for every function, and the AWS settings that point the SDK at the counting proxy.
pub fn lambda_env(name: &str, endpoint: String) -> Vec<(String, String)> {
    let fixed = [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/tollgate-bench"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]bench"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
        // One attempt: a failing request shows as a failure instead of inflating the request counts.
        ("TOLLGATE_MAX_ATTEMPTS", "1"),
    ];
    let mut env: Vec<(String, String)> = fixed.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    env.push(("AWS_LAMBDA_FUNCTION_NAME".into(), format!("tollgate-bench-{name}")));
    env.push(("AWS_ENDPOINT_URL".into(), endpoint));
    env
}

/// Peak resident set (VmHWM) of a live process, in KiB.
pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The total instruction count (`Ir`) a callgrind output file records.
pub fn callgrind_total(file: &Path) -> Result<u64, String> {
    let text = fs::read_to_string(file).map_err(|e| e.to_string())?;
    parse_callgrind_total(&text).ok_or_else(|| "no `summary:` or `totals:` line".to_string())
}

fn parse_callgrind_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The median of some durations (zero for none).
pub fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    match sorted.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callgrind_summary_line_is_the_total() {
        let text = "version: 1\ncmd: ./ingest\nevents: Ir\nsummary: 123456789\ntotals: 123456789\n";
        assert_eq!(parse_callgrind_total(text), Some(123_456_789));
        assert_eq!(parse_callgrind_total("events: Ir\n"), None);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(&[ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(median(&[ms(4), ms(1), ms(2), ms(3)]), Duration::from_micros(2500));
        assert_eq!(median(&[]), Duration::ZERO);
    }
}
