//! A local Lambda Runtime API: the four routes a custom runtime calls (`invocation/next`, `{id}/response`,
//! `{id}/error`, `init/error`), on 127.0.0.1. It records when each `next` arrives, which is how init time is measured
//! (process start to the first request for work), and when each invocation's answer arrives.
//!
//! Use one emulator per function process: a `next` that a killed process left waiting must never take an event
//! meant for the next process, and dropping the emulator releases those waiters.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{read_message, write_message};

const PREFIX: &str = "/2018-06-01/runtime";
/// What the emulator tells the function its deadline is: far enough never to matter.
const DEADLINE: Duration = Duration::from_secs(900);

/// How an invocation ended, as the function reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Response { body: Vec<u8>, at: Instant },
    Error { body: Vec<u8>, at: Instant },
}

impl Outcome {
    pub fn at(&self) -> Instant {
        match self {
            Outcome::Response { at, .. } | Outcome::Error { at, .. } => *at,
        }
    }
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, Vec<u8>)>,
    next_calls: Vec<Instant>,
    outcomes: HashMap<String, Outcome>,
    init_error: Option<String>,
    closed: bool,
    sequence: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection thread must not hide what the others recorded.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The Runtime API of one function process.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Emulator {
    /// Listens on an ephemeral port of 127.0.0.1.
    pub fn start() -> io::Result<Emulator> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let accept_shared = shared.clone();
        thread::Builder::new()
            .name("runtime-api-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    if accept_shared.lock().closed {
                        return;
                    }
                    let conn_shared = accept_shared.clone();
                    let _ = thread::Builder::new()
                        .name("runtime-api-conn".into())
                        .spawn(move || serve(stream, &conn_shared));
                }
            })?;
        Ok(Emulator { addr, shared })
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Queues an event; returns its request id. `request_id` reuses an id (a retried invocation), `None` makes one.
    pub fn invoke(&self, payload: Vec<u8>, request_id: Option<&str>) -> String {
        let mut state = self.shared.lock();
        state.sequence += 1;
        let id = match request_id {
            Some(id) => id.to_string(),
            None => format!("bench-{:08}-{}", state.sequence, std::process::id()),
        };
        state.outcomes.remove(&id);
        state.pending.push_back((id.clone(), payload));
        self.shared.changed.notify_all();
        id
    }

    /// Waits until the function has asked for work `n` times; the time of the `n`th request, or `None` on timeout.
    pub fn wait_next_calls(&self, n: usize, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(at) = state.next_calls.get(n.checked_sub(1)?) {
                return Some(*at);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the answer to an invocation; `None` on timeout.
    pub fn wait_outcome(&self, request_id: &str, timeout: Duration) -> Option<Outcome> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(outcome) = state.outcomes.get(request_id) {
                return Some(outcome.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// How many times the function has asked for work.
    pub fn next_calls(&self) -> usize {
        self.shared.lock().next_calls.len()
    }

    /// The body of an `init/error` report, if the function sent one.
    pub fn init_error(&self) -> Option<String> {
        self.shared.lock().init_error.clone()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        // Wakes the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(write_half) = stream.try_clone() else { return };
    let mut writer = write_half;
    let mut reader = BufReader::new(stream);
    while let Ok(Some(request)) = read_message(&mut reader, false) {
        let (method, target) = request.method_and_target();
        let (method, route) = (
            method.to_string(),
            target.strip_prefix(PREFIX).unwrap_or("").to_string(),
        );
        let answer = match (method.as_str(), route.as_str()) {
            ("GET", "/invocation/next") => match next_invocation(shared) {
                Some((id, payload)) => {
                    let deadline_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| (d + DEADLINE).as_millis())
                        .unwrap_or(0);
                    let headers = vec![
                        ("Content-Type".to_string(), "application/json".to_string()),
                        ("Lambda-Runtime-Aws-Request-Id".to_string(), id),
                        ("Lambda-Runtime-Deadline-Ms".to_string(), deadline_ms.to_string()),
                        (
                            "Lambda-Runtime-Invoked-Function-Arn".to_string(),
                            "arn:aws:lambda:eu-west-1:111122223333:function:tollgate-bench".to_string(),
                        ),
                        (
                            "Lambda-Runtime-Trace-Id".to_string(),
                            "Root=1-00000000-000000000000000000000000;Sampled=0".to_string(),
                        ),
                    ];
                    write_message(&mut writer, "HTTP/1.1 200 OK", &headers, &payload)
                }
                // The emulator was dropped: the process is being stopped.
                None => return,
            },
            ("POST", "/init/error") => {
                let mut state = shared.lock();
                state.init_error = Some(String::from_utf8_lossy(&request.body).into_owned());
                shared.changed.notify_all();
                drop(state);
                accepted(&mut writer)
            }
            ("POST", path) if path.starts_with("/invocation/") => {
                let rest = &path["/invocation/".len()..];
                let at = Instant::now();
                let recorded = if let Some(id) = rest.strip_suffix("/response") {
                    Some((id, Outcome::Response { body: request.body, at }))
                } else {
                    rest.strip_suffix("/error")
                        .map(|id| (id, Outcome::Error { body: request.body, at }))
                };
                match recorded {
                    Some((id, outcome)) => {
                        let mut state = shared.lock();
                        state.outcomes.insert(id.to_string(), outcome);
                        shared.changed.notify_all();
                        drop(state);
                        accepted(&mut writer)
                    }
                    None => not_found(&mut writer),
                }
            }
            _ => not_found(&mut writer),
        };
        if answer.is_err() {
            return;
        }
    }
}

/// Records the request for work, then blocks until there is an event (or the emulator is dropped).
fn next_invocation(shared: &Shared) -> Option<(String, Vec<u8>)> {
    let mut state = shared.lock();
    state.next_calls.push(Instant::now());
    shared.changed.notify_all();
    loop {
        if state.closed {
            return None;
        }
        if let Some(item) = state.pending.pop_front() {
            return Some(item);
        }
        state = shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
    }
}

fn accepted(w: &mut TcpStream) -> io::Result<()> {
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    write_message(w, "HTTP/1.1 202 Accepted", &headers, br#"{"status":"OK"}"#)
}

fn not_found(w: &mut TcpStream) -> io::Result<()> {
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    write_message(w, "HTTP/1.1 404 Not Found", &headers, br#"{"errorType":"NotFound"}"#)
}
