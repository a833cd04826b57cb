//! Bounded, deterministic, structure-aware fuzzing of everything Tollgate reads from outside: EventBridge events,
//! CodePipeline job events and Manual approval messages (`parse_event`, `parse_inbound`), gate policies
//! (`parse_policy`, `validate_file`), and the gate action's UserParameters with their overrides
//! (`parse_user_parameters`, `Policy::with_overrides`).
//!
//! No coverage feedback (stable Rust has no sanitizer coverage without nightly), so the mutators know the formats
//! instead: they edit JSON and YAML as trees and as lines, with dictionaries of the values each field is read as.
//! Inputs whose outcome is new (an error message of a shape not seen before, a new kind of accepted value) join the
//! pool that later inputs are mutated from. A run is a pure function of the seed and the iteration count.
//!
//! Properties, for every input: no panic; each call within the time bound and the memory bound; every error's text
//! says what is wrong and where (a line and column for syntax errors, a field path for field errors); input over
//! the documented limits is refused with an error that says so, before anything is parsed; what is accepted
//! round-trips. `docs/fuzzing.md` explains how to run a long campaign and lists the findings.
//!
//! Budget: `TOLLGATE_FUZZ_ITERATIONS` (inputs per target), `TOLLGATE_FUZZ_SEED`, `TOLLGATE_FUZZ_SLOW_MS`,
//! `TOLLGATE_FUZZ_STRICT=1` (fail on the known findings too, see `KNOWN`), `TOLLGATE_FUZZ_TRACE=1` (write each input
//! to a file before it is run, for a crash that kills the process).

#[path = "fuzz/corpus.rs"]
mod corpus;
#[path = "fuzz/direct.rs"]
mod direct;
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tollgate_domain::gate::policy::{
    parse_policy, parse_user_parameters, validate_file, Policy, PolicyError, PolicyErrorKind, MAX_POLICY_BYTES,
    OVERRIDE_PATHS,
};
use tollgate_domain::record::parse::{parse_event, parse_inbound, Inbound, ParseError, MAX_INPUT_BYTES};

use corpus::*;
use mutate::*;
use targets::*;

// ===================================================================================================================
// Budget.

const DEFAULT_SEED: u64 = 0x7011_6A7E_F022_5EED;
/// A call that allocates more than this (on top of what it returns with) is a finding.
const MEMORY_BOUND: usize = 64 << 20;
/// A call that allocates more than this is stopped: the allocation fails and the process aborts, rather than the
/// machine running out of memory. Run with `TOLLGATE_FUZZ_TRACE=1` to keep the input that did it.
const MEMORY_CEILING: usize = 2 << 30;

struct Config {
    /// `TOLLGATE_FUZZ_ITERATIONS`: inputs per target; each target has its own default otherwise.
    iterations: Option<u64>,
    seed: u64,
    slow: Duration,
    /// A call still running after this long stops the process with the input printed.
    hang: Duration,
    trace: bool,
    /// Known findings fail the run too, and the generators make inputs that hit them at full size.
    strict: bool,
}

fn env_u64(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    let t = text.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    Some(parsed.unwrap_or_else(|_| panic!("{name}={text:?} is not a number (decimal, or hex with 0x)")))
}

fn config() -> Config {
    // Debug builds run the parsers about ten times slower than release builds; the bound is for release.
    let default_slow = if cfg!(debug_assertions) { 2_000 } else { 500 };
    let slow = Duration::from_millis(env_u64("TOLLGATE_FUZZ_SLOW_MS").unwrap_or(default_slow));
    Config {
        iterations: env_u64("TOLLGATE_FUZZ_ITERATIONS"),
        seed: env_u64("TOLLGATE_FUZZ_SEED").unwrap_or(DEFAULT_SEED),
        slow,
        hang: (slow * 20).max(Duration::from_secs(20)),
        trace: std::env::var("TOLLGATE_FUZZ_TRACE").is_ok_and(|v| v == "1"),
        strict: std::env::var("TOLLGATE_FUZZ_STRICT").is_ok_and(|v| v == "1"),
    }
}

// ===================================================================================================================
// A small deterministic RNG (splitmix64).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A length for a long value: mostly up to 4 KiB; sometimes up to 64 KiB; sometimes around `limit`, on either
    /// side (refusing those costs nothing, parsing inputs just under the limit is what costs).
    fn long(&mut self, limit: usize) -> usize {
        match self.below(64) {
            0 => limit - self.below(1024),
            1 => limit + self.below(1024),
            2..=5 => self.size(64 * 1024),
            _ => self.size(4096),
        }
    }

    /// A size that is usually small and sometimes large: `0..=max`, log-uniform.
    fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let cap = 1usize << self.below(bits as usize + 1);
        self.below(cap.min(max) + 1)
    }
}

// ===================================================================================================================
// Memory: a counting allocator, per thread, so a call's peak allocation can be measured and bounded.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static CEILING: Cell<isize> = const { Cell::new(isize::MAX) };
}

fn note_alloc(bytes: usize) -> bool {
    LIVE.try_with(|live| {
        let now = live.get().saturating_add(bytes as isize);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        CEILING.try_with(|c| now <= c.get()).unwrap_or(true)
    })
    .unwrap_or(true)
}

fn note_free(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(bytes as isize)));
}

// SAFETY: every method forwards to the system allocator with the same arguments; the bookkeeping uses const-
// initialised thread-locals without destructors, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note_alloc(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note_alloc(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note_free(layout.size());
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            if !note_alloc(new_size - layout.size()) {
                return std::ptr::null_mut();
            }
        } else {
            note_free(layout.size() - new_size);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ===================================================================================================================
// Guarded calls: panics caught and recorded, time and memory measured.

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside a guarded call are recorded (message and location) instead of printed.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message}{at}")));
            } else {
                default(info);
            }
        }));
    });
}

struct Call<T> {
    result: Result<T, String>,
    elapsed: Duration,
    /// Bytes allocated at the peak of the call, beyond what was live before it.
    peak: usize,
}

fn guarded<T>(f: impl FnOnce() -> T) -> Call<T> {
    install_panic_hook();
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    CEILING.with(|c| c.set(before.saturating_add(MEMORY_CEILING as isize)));
    CAPTURING.with(|c| c.set(true));
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let elapsed = start.elapsed();
    CAPTURING.with(|c| c.set(false));
    CEILING.with(|c| c.set(isize::MAX));
    let peak = (PEAK.with(Cell::get) - before).max(0) as usize;
    let result = result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "(panic without a message)".into())
    });
    Call { result, elapsed, peak }
}

// ===================================================================================================================
// Known findings.

/// A finding reported to the lead and reproduced by an `#[ignore]`d test at the end of this file. Until its fix
/// lands, the default run neither runs the inputs that would hit it at great cost (`costly`) nor fails on it (`hit`);
/// it counts both. `TOLLGATE_FUZZ_STRICT=1` runs and fails on everything. Remove the entry when its test is
/// un-ignored.
struct Known {
    name: &'static str,
    target: &'static str,
    /// The `#[ignore]`d test that reproduces it.
    #[allow(dead_code)]
    test: &'static str,
    costly: fn(&[u8]) -> bool,
    hit: fn(&Violation, &[u8]) -> bool,
}

/// Every finding so far is fixed (docs/fuzzing.md): the list is empty until the next one.
const KNOWN: &[Known] = &[];

/// The deepest nesting of flow collections (`[`, `{`), counting brackets in quoted text too: a cheap over-estimate.
fn flow_depth(input: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for &b in input {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

// ===================================================================================================================
// Runs, findings and statistics.

#[derive(Debug, Clone)]
struct Violation {
    /// Stable across inputs that hit the same problem: what kind of problem, in which call, about which message.
    signature: String,
    detail: String,
}

#[derive(Default)]
struct Stats {
    inputs: u64,
    calls: u64,
    accepted: u64,
    refused: u64,
    messages: HashSet<u64>,
    shapes: HashSet<String>,
    accepted_kinds: HashSet<String>,
    bytes: u64,
    /// Time spent making inputs (not in the calls under test).
    mutating: Duration,
    /// Per known finding: inputs not run because they would hit it, and violations tolerated.
    known: BTreeMap<&'static str, (u64, u64)>,
    slowest: (Duration, &'static str, Arc<Vec<u8>>),
    peak: (usize, &'static str, Arc<Vec<u8>>),
}

/// A call in progress: since when, which call, on which input.
type InProgress = (Instant, &'static str, Arc<Vec<u8>>);

/// The slot a watchdog reads.
#[derive(Default)]
struct Slot {
    current: Mutex<Option<InProgress>>,
}

struct Run<'a> {
    slow: Duration,
    stats: &'a mut Stats,
    violations: Vec<Violation>,
    novel: bool,
    input: Arc<Vec<u8>>,
    slot: Option<&'a Slot>,
}

impl Run<'_> {
    fn call<T>(&mut self, what: &'static str, f: impl FnOnce() -> T) -> Option<T> {
        if let Some(slot) = self.slot {
            *slot.current.lock().unwrap() = Some((Instant::now(), what, self.input.clone()));
        }
        let call = guarded(f);
        if let Some(slot) = self.slot {
            *slot.current.lock().unwrap() = None;
        }
        let len = self.input.len();
        self.stats.calls += 1;
        if call.elapsed > self.stats.slowest.0 {
            self.stats.slowest = (call.elapsed, what, self.input.clone());
        }
        if call.peak > self.stats.peak.0 {
            self.stats.peak = (call.peak, what, self.input.clone());
        }
        if call.elapsed > self.slow {
            self.violate(
                format!("slow|{what}"),
                format!(
                    "{what} took {:.1?} on {len} bytes (bound {:?})",
                    call.elapsed, self.slow
                ),
            );
        }
        if call.peak > MEMORY_BOUND {
            self.violate(
                format!("memory|{what}"),
                format!(
                    "{what} allocated {} at its peak on {len} bytes of input (bound {})",
                    mib(call.peak),
                    mib(MEMORY_BOUND)
                ),
            );
        }
        match call.result {
            Ok(v) => Some(v),
            Err(message) => {
                let at = message.rsplit(" at ").next().unwrap_or("").to_string();
                self.violate(format!("panic|{what}|{at}"), format!("{what} panicked: {message}"));
                None
            }
        }
    }

    fn violate(&mut self, signature: String, mut detail: String) {
        if detail.len() > 600 {
            let cut = (0..=600).rev().find(|&i| detail.is_char_boundary(i)).unwrap_or(0);
            detail = format!("{} … ({} bytes)", &detail[..cut], detail.len());
        }
        self.violations.push(Violation { signature, detail });
    }

    /// Counts an error message; a message of a new shape makes the input worth mutating further.
    fn refused(&mut self, message: &str) {
        self.stats.refused += 1;
        self.stats.messages.insert(hash(message));
        if self.stats.shapes.len() < 100_000 && self.stats.shapes.insert(shape(message)) {
            self.novel = true;
        }
    }

    fn accepted(&mut self, kind: String) {
        self.stats.accepted += 1;
        if self.stats.accepted_kinds.insert(kind) {
            self.novel = true;
        }
    }
}

fn hash(x: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// A message with its variable parts (numbers, quoted text) blanked, to count kinds of messages.
fn shape(message: &str) -> String {
    let mut out = String::new();
    let (mut quoted, mut digits) = (false, false);
    for c in message.chars() {
        if c == '"' {
            quoted = !quoted;
            out.push_str(if quoted { "\"…" } else { "\"" });
        } else if quoted {
            continue;
        } else if c.is_ascii_digit() {
            if !digits {
                out.push('#');
            }
            digits = true;
            continue;
        } else {
            out.push(c);
        }
        digits = false;
        if out.len() > 160 {
            break;
        }
    }
    out
}

/// The part of a message that names the problem, for a finding's signature: up to the first quoted value.
fn message_key(message: &str) -> String {
    let s = shape(message);
    let end = s.find(['"', '`']).unwrap_or(s.len());
    s[..end].trim().to_string()
}

/// An input as a Rust literal, shortened when long.
fn show(input: &[u8]) -> String {
    const MAX: usize = 400;
    let (head, more) = if input.len() > MAX {
        (&input[..MAX], format!(" … ({} bytes in all)", input.len()))
    } else {
        (input, String::new())
    };
    match std::str::from_utf8(head) {
        Ok(text) => format!("{text:?}{more}"),
        Err(_) => format!("b\"{}\"{more}", head.escape_ascii()),
    }
}

fn findings_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-findings")
}

// ===================================================================================================================
// The loop.

type Check = fn(&[u8], &mut Run);
type Mutate = fn(&mut Rng, &[u8], &Pool) -> Vec<u8>;

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    notes: Vec<String>,
    mutate: Mutate,
    check: Check,
    /// Inputs to run when `TOLLGATE_FUZZ_ITERATIONS` is not set. The defaults make the file run in about 15 s as a
    /// debug build on two cores (the YAML parser is the slow one in debug builds).
    default_iterations: u64,
    /// Inputs longer than this are cut (the smallest limit that applies, plus a margin to cross it).
    max_len: usize,
}

/// The inputs mutations start from: the seeds, then inputs with new outcomes.
struct Pool {
    items: Vec<Vec<u8>>,
    /// The first `seeds` items are the seeds, never replaced.
    seeds: usize,
    /// Whether generators may make inputs that hit known findings at full size (`TOLLGATE_FUZZ_STRICT=1`).
    strict: bool,
}

impl Pool {
    const CAP: usize = 4_000;
    const MAX_ITEM: usize = 16 * 1024;

    fn pick(&self, rng: &mut Rng) -> &[u8] {
        &self.items[rng.below(self.items.len())]
    }

    fn add(&mut self, rng: &mut Rng, input: Vec<u8>) {
        if input.len() > Self::MAX_ITEM {
            return;
        }
        if self.items.len() < Self::CAP {
            self.items.push(input);
        } else {
            let i = self.seeds + rng.below(self.items.len() - self.seeds);
            self.items[i] = input;
        }
    }
}

struct Finding {
    violation: Violation,
    input: Vec<u8>,
    iteration: u64,
    count: u64,
}

fn fuzz(target: Target) {
    let cfg = config();
    let iterations = cfg.iterations.unwrap_or(target.default_iterations);
    eprintln!(
        "fuzz {}: seed {:#x}, {} inputs; seeds: {}",
        target.name,
        cfg.seed,
        iterations,
        target.notes.join(", ")
    );
    let started = Instant::now();
    let (stats, mut findings) = run_target(&target, &cfg, iterations);
    report(&target, &cfg, &stats, &mut findings, started.elapsed());
}

/// Runs `iterations` inputs: the seeds, then mutations of the pool.
fn run_target(target: &Target, cfg: &Config, iterations: u64) -> (Stats, BTreeMap<String, Finding>) {
    let salt = hash(target.name);
    let mut pool = Pool {
        items: target.seeds.clone(),
        seeds: target.seeds.len(),
        strict: cfg.strict,
    };
    let mut stats = Stats::default();
    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    let slot = Arc::new(Slot::default());
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = spawn_watchdog(target.name, slot.clone(), done.clone(), cfg.hang);
    let trace_file = findings_dir().join(format!("{}-current.bin", target.name));
    if cfg.trace {
        std::fs::create_dir_all(findings_dir()).expect("create the findings directory");
    }
    for i in 0..iterations {
        let mut rng = Rng::new(cfg.seed ^ salt ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let making = Instant::now();
        let input = if (i as usize) < target.seeds.len() {
            target.seeds[i as usize].clone()
        } else {
            let mut x = pool.pick(&mut rng).to_vec();
            for _ in 0..1 + rng.below(3) {
                x = (target.mutate)(&mut rng, &x, &pool);
            }
            x.truncate(target.max_len);
            x
        };
        stats.mutating += making.elapsed();
        if cfg.trace {
            std::fs::write(&trace_file, &input).expect("write the trace file");
        }
        let input = Arc::new(input);
        if !cfg.strict {
            if let Some(k) = KNOWN
                .iter()
                .find(|k| (k.target == target.name || k.target == "*") && (k.costly)(&input))
            {
                stats.known.entry(k.name).or_default().0 += 1;
                continue;
            }
        }
        stats.inputs += 1;
        stats.bytes += input.len() as u64;
        let mut run = Run {
            slow: cfg.slow,
            stats: &mut stats,
            violations: Vec::new(),
            novel: false,
            input: input.clone(),
            slot: Some(&*slot),
        };
        (target.check)(&input, &mut run);
        let (violations, novel) = (run.violations, run.novel);
        for v in violations {
            if !cfg.strict {
                if let Some(k) = KNOWN
                    .iter()
                    .find(|k| (k.target == target.name || k.target == "*") && (k.hit)(&v, &input))
                {
                    stats.known.entry(k.name).or_default().1 += 1;
                    continue;
                }
            }
            let f = findings.entry(v.signature.clone()).or_insert_with(|| Finding {
                violation: v.clone(),
                input: input.to_vec(),
                iteration: i,
                count: 0,
            });
            f.count += 1;
        }
        if novel {
            pool.add(&mut rng, input.to_vec());
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    (stats, findings)
}

fn spawn_watchdog(
    name: &'static str,
    slot: Arc<Slot>,
    done: Arc<AtomicBool>,
    hang: Duration,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let current = slot.current.lock().unwrap().clone();
            if let Some((since, what, input)) = current {
                if since.elapsed() > hang {
                    let dir = findings_dir();
                    let _ = std::fs::create_dir_all(&dir);
                    let file = dir.join(format!("{name}-hang.bin"));
                    let _ = std::fs::write(&file, &*input);
                    eprintln!(
                        "FUZZ FINDING {name}: hang: {what} still running after {hang:?}; input {} (saved to {})",
                        show(&input),
                        file.display()
                    );
                    let _ = std::io::stderr().flush();
                    std::process::exit(101);
                }
            }
        }
    })
}

fn report(target: &Target, cfg: &Config, stats: &Stats, findings: &mut BTreeMap<String, Finding>, elapsed: Duration) {
    // Smaller reproducers, for the problems that do not depend on timing.
    for f in findings.values_mut() {
        if !f.violation.signature.starts_with("slow|") && !f.violation.signature.starts_with("memory|") {
            f.input = minimize(&f.input, target.check, &f.violation.signature, cfg.slow);
        }
    }
    let known: Vec<String> = stats
        .known
        .iter()
        .map(|(name, (skipped, tolerated))| format!("{name}: {skipped} inputs skipped, {tolerated} tolerated"))
        .collect();
    let known = if known.is_empty() {
        String::new()
    } else {
        format!("; known findings ({})", known.join("; "))
    };
    eprintln!(
        "fuzz {}: {} executions on {} inputs (mean {} bytes) in {:.1?} ({:.1?} making inputs); {} accepted, {} refused with {} distinct error \
         messages ({} shapes); slowest {:.2?} ({}, {} bytes); peak allocation {} ({}, {} bytes); {} findings{known}",
        target.name,
        stats.calls,
        stats.inputs,
        stats.bytes / stats.inputs.max(1),
        elapsed,
        stats.mutating,
        stats.accepted,
        stats.refused,
        stats.messages.len(),
        stats.shapes.len(),
        stats.slowest.0,
        stats.slowest.1,
        stats.slowest.2.len(),
        mib(stats.peak.0),
        stats.peak.1,
        stats.peak.2.len(),
        findings.len()
    );
    // The slowest input and the one that allocated most, to look at after a long run.
    let dir = findings_dir();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{}-slowest.bin", target.name)), &*stats.slowest.2);
    let _ = std::fs::write(dir.join(format!("{}-peak.bin", target.name)), &*stats.peak.2);
    if findings.is_empty() {
        return;
    }
    let mut lines = Vec::new();
    for (n, f) in findings.values().enumerate() {
        let file = dir.join(format!("{}-{n}.bin", target.name));
        let _ = std::fs::write(&file, &f.input);
        lines.push(format!(
            "  [{}] {} ({} inputs; first at iteration {}, seed {:#x})\n      input: {} (saved to {})",
            f.violation.signature,
            f.violation.detail,
            f.count,
            f.iteration,
            cfg.seed,
            show(&f.input),
            file.display()
        ));
    }
    panic!(
        "fuzz {}: {} findings:\n{}",
        target.name,
        findings.len(),
        lines.join("\n")
    );
}

/// Removes chunks of the input while the same violation still occurs.
fn minimize(input: &[u8], check: Check, signature: &str, slow: Duration) -> Vec<u8> {
    let still = |candidate: &[u8]| {
        let mut stats = Stats::default();
        let mut run = Run {
            slow,
            stats: &mut stats,
            violations: Vec::new(),
            novel: false,
            input: Arc::new(candidate.to_vec()),
            slot: None,
        };
        check(candidate, &mut run);
        run.violations.iter().any(|v| v.signature == signature)
    };
    let mut best = input.to_vec();
    let mut chunk = (best.len() / 2).max(1);
    let mut tries = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    let budget_left = |tries: usize| tries < 3_000 && Instant::now() < deadline;
    while budget_left(tries) {
        let mut i = 0;
        let mut shrunk = false;
        while i < best.len() && budget_left(tries) {
            let end = (i + chunk).min(best.len());
            let mut candidate = best[..i].to_vec();
            candidate.extend_from_slice(&best[end..]);
            tries += 1;
            if still(&candidate) {
                best = candidate;
                shrunk = true;
            } else {
                i += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    best
}

// ===================================================================================================================
// The targets.

#[test]
fn fuzz_event_parsers() {
    let seeds = event_seeds();
    fuzz(Target {
        name: "events",
        seeds: seeds.inputs,
        notes: seeds.notes,
        mutate: mutate_event,
        check: check_event,
        default_iterations: 20_000,
        max_len: MAX_INPUT_BYTES + 8192,
    });
}

#[test]
fn fuzz_policy_parser() {
    let seeds = policy_seeds();
    fuzz(Target {
        name: "policies",
        seeds: seeds.inputs,
        notes: seeds.notes,
        mutate: mutate_policy,
        check: check_policy,
        default_iterations: 5_000,
        max_len: MAX_POLICY_BYTES + 8192,
    });
}

#[test]
fn fuzz_user_parameters_and_overrides() {
    let seeds = user_parameter_seeds(&event_seeds().inputs);
    let notes = vec![format!("{} hand-written and from job events", seeds.len())];
    fuzz(Target {
        name: "user-parameters",
        seeds,
        notes,
        mutate: mutate_user_parameters,
        check: check_user_parameters,
        default_iterations: 20_000,
        max_len: MAX_INPUT_BYTES,
    });
}

// The harness catches panics with their location (in this file) and measures memory.
#[test]
fn the_harness_catches_panics_and_measures_memory() {
    let call = guarded(|| -> u8 { panic!("on purpose") });
    let message = call.result.unwrap_err();
    assert!(
        message.starts_with("on purpose at ") && message.contains("fuzz.rs"),
        "{message}"
    );
    let call = guarded(|| vec![1u8; 8 << 20].len());
    assert_eq!(call.result, Ok(8 << 20));
    assert!(call.peak >= 8 << 20, "peak {}", call.peak);
    assert!(call.elapsed < Duration::from_secs(5));
}
