//! Reading a policy: text to a validated [`Policy`], or an error naming the file, line, column and field.
//!
//! Three passes, each with its own kind of error:
//! 1. syntax: the text must be one YAML document (JSON is YAML, so one parser reads both);
//! 2. shape: serde_yaml through serde_path_to_error, so unknown fields, missing fields, wrong types and values the
//!    value types refuse (a time that is not HH:MM) come with their line, column and field path;
//! 3. meaning: rules across fields (a window must end after it starts). These run on the typed policy, so they have
//!    no position of their own: a probe walks the document again to the field's node and lets serde_yaml report
//!    where that node is.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{Location, PolicyError, PolicyErrorKind};
use super::model::{edit_distance, Policy, NO_VALUE, POLICY_VERSION};
use super::window::freeze_span;

/// Policies larger than this are refused before parsing.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

pub(crate) fn render_path(segs: &[Seg]) -> Option<String> {
    if segs.is_empty() {
        return None;
    }
    let mut out = String::new();
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                // An empty or blank key would vanish from the path (`: unknown field ``): it is shown quoted.
                if k.trim().is_empty() {
                    out.push_str(&format!("{k:?}"));
                } else {
                    out.push_str(k);
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    Some(out)
}

macro_rules! segs {
    ($($seg:expr),* $(,)?) => { vec![$(Seg::from($seg)),*] };
}

impl From<&str> for Seg {
    fn from(k: &str) -> Seg {
        Seg::Key(k.to_string())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Seg {
        Seg::Index(i)
    }
}

/// A rule across fields that the typed policy breaks.
#[derive(Debug)]
pub(crate) struct Problem {
    /// The field the message is about.
    pub path: Vec<Seg>,
    /// Where to point in the text, when that is not `path` itself (a missing `timezone` points at `windows`).
    pub point_at: Option<Vec<Seg>>,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: Vec<Seg>, message: impl Into<String>) -> Problem {
        Problem {
            path,
            point_at: None,
            message: message.into(),
        }
    }
}

/// Reads and validates a policy. `name_for_errors` is how errors name the file (`policies/production.yaml`).
pub fn parse_policy(name_for_errors: &str, text: &str) -> Result<Policy, PolicyError> {
    let file = name_for_errors;
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::new(
            file,
            PolicyErrorKind::Io,
            None,
            format!(
                "the policy is {} bytes, more than the {MAX_POLICY_BYTES}-byte limit",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(PolicyError::new(
            file,
            PolicyErrorKind::Syntax,
            None,
            "the policy is empty (expected a mapping with version, name, max_wait and the checks)",
        ));
    }
    prescan(file, text)?;
    if let Err(e) = serde_yaml::from_str::<IgnoredAny>(text) {
        let mut message = clean_message(&e.to_string(), &[]);
        if message.starts_with("found character that cannot start any token") && text.contains('\t') {
            message.push_str(" (YAML does not allow tabs for indentation)");
        }
        return Err(PolicyError::new(file, PolicyErrorKind::Syntax, None, message).at(location_of(&e)));
    }
    let policy: Policy = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| shape_error(file, text, e))?;
    validate(&policy).map_err(|p| {
        let location = locate(text, p.point_at.as_deref().unwrap_or(&p.path), &Target::Value);
        PolicyError::new(file, PolicyErrorKind::Semantic, render_path(&p.path), p.message).at(location)
    })?;
    Ok(policy)
}

/// Reads and validates the policy file at `path` (what `tollgate policy validate FILE` runs).
pub fn validate_file(path: impl AsRef<std::path::Path>) -> Result<Policy, PolicyError> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |message: String| PolicyError::new(&name, PolicyErrorKind::Io, None, message);
    let size = std::fs::metadata(path)
        .map_err(|e| io(format!("cannot read the policy: {e}")))?
        .len();
    if size > MAX_POLICY_BYTES as u64 {
        return Err(io(format!(
            "the policy is {size} bytes, more than the {MAX_POLICY_BYTES}-byte limit"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| io(format!("cannot read the policy: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // Where the first byte that is not UTF-8 is: the line and column (in characters) after the valid text.
        let valid = e.utf8_error().valid_up_to();
        let before = std::str::from_utf8(&e.as_bytes()[..valid]).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        io(format!(
            "cannot read the policy: it is not UTF-8 text (byte 0x{:02X} at offset {valid}); save it as UTF-8",
            e.as_bytes()[valid]
        ))
        .at(Some(Location { line, column }))
    })?;
    parse_policy(&name, &text)
}

/// Deepest flow nesting (`[` and `{`) a policy may use; real policies use two or three.
pub const MAX_FLOW_DEPTH: usize = 32;

/// Refuses, before the YAML parser sees them, the constructs a policy never needs and a hostile file could use to
/// stall or exhaust the gate: anchors and aliases (which the parser expands without a bound on size) and deep flow
/// nesting (whose scanning time grows with the square of the depth).
///
/// It fails closed rather than re-tokenising YAML (every attempt to skip quotes, comments or block scalars left a way
/// past it): every `[` and `{` counts toward the depth wherever it stands; any `&` or `*` that starts a word is taken
/// for an anchor or alias when it starts a token (after a space, `[`, `{`, `,`, `:` or at the start of a line), even
/// in quoted or block text (`*` after `/`, as in ARN patterns, is fine; elsewhere quote-and-rephrase);
/// and line breaks other than LF and CRLF (a lone CR, NEL, LS, PS), which YAML honours and a line scan would not, are
/// refused.
pub(crate) fn prescan(file: &str, text: &str) -> Result<(), PolicyError> {
    let refuse = |line: usize, column: usize, message: String| {
        Err(PolicyError::new(file, PolicyErrorKind::Syntax, None, message).at(Some(Location { line, column })))
    };
    let mut depth = 0usize;
    for (n, line) in text.split('\n').enumerate() {
        let chars: Vec<char> = line.strip_suffix('\r').unwrap_or(line).chars().collect();
        // Backslashes just before the current character.
        let mut backslashes = 0usize;
        for (i, &c) in chars.iter().enumerate() {
            let (line_no, column) = (n + 1, i + 1);
            let prev = if i == 0 { ' ' } else { chars[i - 1] };
            if i > 0 {
                backslashes = if prev == '\\' { backslashes + 1 } else { 0 };
            }
            match c {
                '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => {
                    return refuse(
                        line_no,
                        column,
                        format!(
                            "line break U+{:04X} is not allowed in a policy (use LF or CRLF line endings)",
                            c as u32
                        ),
                    )
                }
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return refuse(
                            line_no,
                            column,
                            format!("lists and mappings are nested more than {MAX_FLOW_DEPTH} levels deep"),
                        );
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                // YAML refuses control characters raw at 1:1, wherever they are, and JSON reads DEL and the C1
                // controls: refused here, where they are, so a JSON policy gets one answer with the right position.
                '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => {
                    return refuse(
                        line_no,
                        column,
                        format!(
                            "control character U+{:04X} is not allowed in a policy (remove it)",
                            c as u32
                        ),
                    )
                }
                // The escapes that make those characters, or a line break YAML honours (`\N`, `\L`, `\P`): a value
                // holding one would not read back from the policy's JSON form.
                // After an even run of backslashes one starts an escape (`\\` is a backslash).
                '\\' if backslashes % 2 == 0 => {
                    if let Some(escape) = unrepresentable_escape(&chars[i + 1..]) {
                        return refuse(
                            line_no,
                            column,
                            format!("the escape `\\{escape}` is not allowed in a policy (it makes a control character or a line break)"),
                        );
                    }
                }
                '&' | '*'
                    if (prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':'))
                        && chars
                            .get(i + 1)
                            .is_some_and(|n| !n.is_whitespace() && !",[]{}".contains(*n)) =>
                {
                    return refuse(
                        line_no,
                        column,
                        format!(
                            "YAML {} are not allowed in a policy, and `{c}` may not start a word anywhere in one \
                             (write the value out, or rephrase)",
                            if c == '&' { "anchors" } else { "aliases" }
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The escape after a `\` (the text following it) when it makes DEL, a C1 control or a line break other than LF:
/// `\N`, `\L`, `\P`, or `\x`/`\u`/`\U` with such a code point. Fails closed: it does not know whether the `\` is in a
/// double-quoted string, where alone YAML reads escapes.
fn unrepresentable_escape(after: &[char]) -> Option<String> {
    let (&kind, rest) = after.split_first()?;
    let digits = match kind {
        'N' | 'L' | 'P' => return Some(kind.to_string()),
        'x' => 2,
        'u' => 4,
        'U' => 8,
        _ => return None,
    };
    let hex: String = rest.iter().take(digits).collect();
    let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == digits)?;
    matches!(code, 0x7f..=0x9f | 0x2028 | 0x2029).then(|| format!("{kind}{hex}"))
}

pub(crate) fn location_of(e: &serde_yaml::Error) -> Option<Location> {
    e.location().map(|l| Location {
        line: l.line(),
        column: l.column(),
    })
}

pub(crate) fn segs_of(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// An error of the typed pass, with serde_yaml's position and serde_path_to_error's path.
pub(crate) fn shape_error(file: &str, text: &str, e: serde_path_to_error::Error<serde_yaml::Error>) -> PolicyError {
    let mut segs = segs_of(e.path());
    let mut location = location_of(e.inner());
    let mut message = clean_message(&e.inner().to_string(), &segs);
    let kind = classify(&message);
    match kind {
        PolicyErrorKind::DuplicateField => {
            // serde reports a repeated key at the mapping; point at the repetition instead.
            if let Some(key) = between_backticks(&message).into_iter().next() {
                let target = Target::Key {
                    key: key.clone(),
                    occurrence: 2,
                };
                location = locate(text, &segs, &target).or(location);
                segs.push(Seg::Key(key));
            }
        }
        PolicyErrorKind::UnknownField => {
            let names = between_backticks(&message);
            if let Some((unknown, expected)) = names.split_first() {
                let near = expected
                    .iter()
                    .map(|e| (edit_distance(unknown, e), e))
                    .filter(|(d, _)| *d <= 2)
                    .min();
                if let Some((_, near)) = near {
                    message.push_str(&format!(" (did you mean `{near}`?)"));
                }
            }
        }
        PolicyErrorKind::InvalidValue if message == NO_VALUE => {
            // Raised once the empty value was read, so serde_yaml placed it at the parent mapping.
            location = locate(text, &segs, &Target::Value).or(location);
            return PolicyError::new(file, PolicyErrorKind::WrongType, render_path(&segs), message).at(location);
        }
        _ => {}
    }
    PolicyError::new(file, kind, render_path(&segs), message).at(location)
}

fn classify(message: &str) -> PolicyErrorKind {
    if message.starts_with("unknown field") {
        PolicyErrorKind::UnknownField
    } else if message.starts_with("missing field") {
        PolicyErrorKind::MissingField
    } else if message.starts_with("duplicate field") || message.starts_with("duplicate key") {
        PolicyErrorKind::DuplicateField
    } else if message.starts_with("invalid type") {
        PolicyErrorKind::WrongType
    } else {
        PolicyErrorKind::InvalidValue
    }
}

fn between_backticks(message: &str) -> Vec<String> {
    message.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// serde_yaml's message without the position (reported separately) and without its own copy of the path.
pub(crate) fn clean_message(message: &str, segs: &[Seg]) -> String {
    let mut out = strip_positions(message);
    // "expected struct Window" names a Rust type; the reader wrote YAML.
    if let Some(i) = out.find("expected struct ") {
        let end = out[i + "expected struct ".len()..]
            .find(|c: char| !c.is_alphanumeric())
            .map_or(out.len(), |j| i + "expected struct ".len() + j);
        out.replace_range(i..end, "expected a mapping");
    }
    // The other Rust words (`expected u32`, `as u128`, `field identifier`) in the format's.
    let mut out = crate::record::parse::format_words(&out, "a mapping");
    // serde_yaml prefixes the path of the node it was at: the error's path or one of its ancestors.
    for len in (1..=segs.len()).rev() {
        if let Some(prefix) = render_path(&segs[..len]) {
            if let Some(rest) = out.strip_prefix(&format!("{prefix}: ")) {
                out = rest.to_string();
                break;
            }
        }
    }
    out
}

/// Removes every ` at line L column C` and ` at position N`.
fn strip_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = [" at line ", " at position "]
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, *p)))
            .min();
        let Some((i, pattern)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..i]);
        let after = &rest[i + pattern.len()..];
        let skip_digits = |s: &str| s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let mut consumed = skip_digits(after);
        if consumed == 0 {
            out.push_str(pattern);
            rest = after;
            continue;
        }
        if pattern == " at line " {
            if let Some(col) = after[consumed..].strip_prefix(" column ") {
                consumed += " column ".len() + skip_digits(col);
            }
        }
        rest = &after[consumed..];
    }
}

// -------------------------------------------------------------------------------------------------------------------
// Meaning: rules across fields.

fn non_empty(value: &str, path: Vec<Seg>) -> Result<(), Problem> {
    if value.trim().is_empty() {
        return Err(Problem::new(path, "must not be empty"));
    }
    Ok(())
}

/// The rules a typed policy must also follow. The first broken one, in document order.
pub(crate) fn validate(p: &Policy) -> Result<(), Problem> {
    if p.version != POLICY_VERSION {
        return Err(Problem::new(
            segs!["version"],
            format!(
                "unsupported policy version {} (this Tollgate reads version {POLICY_VERSION})",
                p.version
            ),
        ));
    }
    non_empty(&p.name, segs!["name"])?;
    let calendar = [("windows", p.windows.is_some()), ("freezes", p.freezes.is_some())]
        .into_iter()
        .find_map(|(name, present)| present.then_some(name));
    if let (None, Some(calendar)) = (p.timezone, calendar) {
        return Err(Problem {
            path: segs!["timezone"],
            point_at: Some(segs![calendar]),
            message: format!(
                "missing: the policy has {calendar}, whose times need a zone (add e.g. `timezone: Europe/Berlin`)"
            ),
        });
    }
    let tz = p.zone();
    if let Some(windows) = &p.windows {
        if windows.is_empty() {
            return Err(Problem::new(
                segs!["windows"],
                "an empty list allows no deployment at any time; list the windows, or remove `windows` to allow any \
                 time",
            ));
        }
        for (i, w) in windows.iter().enumerate() {
            if w.days.is_empty() {
                return Err(Problem::new(
                    segs!["windows", i, "days"],
                    "no days: list at least one (mon … sun)",
                ));
            }
            if w.from >= w.to {
                return Err(Problem::new(
                    segs!["windows", i, "to"],
                    format!(
                        "the window ends at {} but starts at {}: a window must end after it starts and cannot cross \
                         midnight; write it as two windows (e.g. 22:00–24:00, then 00:00–06:00 on the next day)",
                        w.to, w.from
                    ),
                ));
            }
        }
    }
    for (i, f) in p.freezes.iter().flatten().enumerate() {
        non_empty(&f.name, segs!["freezes", i, "name"])?;
        let Some((start, end)) = freeze_span(f, tz) else {
            return Err(Problem::new(segs!["freezes", i], "the freeze's dates are out of range"));
        };
        if end <= start {
            return Err(Problem::new(
                segs!["freezes", i, "to"],
                format!("the freeze ends ({}) before it starts ({})", f.to, f.from),
            ));
        }
    }
    if let Some(a) = &p.alarms {
        if a.names.is_empty() && a.tags.is_empty() {
            return Err(Problem::new(
                segs!["alarms"],
                "names no alarm: give `names`, `tags`, or both",
            ));
        }
        for (i, name) in a.names.iter().enumerate() {
            non_empty(name, segs!["alarms", "names", i])?;
        }
        for key in a.tags.keys() {
            non_empty(key, segs!["alarms", "tags"])?;
        }
    }
    if let Some(b) = &p.bake {
        non_empty(&b.after_stage, segs!["bake", "after_stage"])?;
        if let Some(pipeline) = &b.pipeline {
            non_empty(pipeline, segs!["bake", "pipeline"])?;
        }
        if let Some(m) = &b.min_requests {
            non_empty(&m.namespace, segs!["bake", "min_requests", "namespace"])?;
            non_empty(&m.metric, segs!["bake", "min_requests", "metric"])?;
            if !(m.at_least.is_finite() && m.at_least > 0.0) {
                return Err(Problem::new(
                    segs!["bake", "min_requests", "at_least"],
                    format!("must be more than 0 (is {})", m.at_least),
                ));
            }
        }
    }
    if let Some(u) = &p.upstream {
        non_empty(&u.pipeline, segs!["upstream", "pipeline"])?;
        if let Some(stage) = &u.stage {
            non_empty(stage, segs!["upstream", "stage"])?;
        }
    }
    if let Some(a) = &p.approval {
        if a.approvers.is_empty() && a.groups.is_empty() {
            return Err(Problem::new(
                segs!["approval"],
                "no one can approve: give `approvers` (IAM ARN patterns), `groups`, or both",
            ));
        }
        for (i, g) in a.groups.iter().enumerate() {
            non_empty(g, segs!["approval", "groups", i])?;
            // Where the policy declares groups, a name it does not declare is a typo: it would approve no one.
            // (A policy that declares none keeps reading, as before groups were declared; its groups have no
            // members, and the approval check says so.)
            let undeclared = p.groups.as_ref().is_some_and(|d| d.get(g).is_none());
            if undeclared {
                let names: Vec<&str> = p.groups.iter().flat_map(|d| d.0.keys()).map(String::as_str).collect();
                let hint = names
                    .iter()
                    .map(|n| (edit_distance(g, n), *n))
                    .filter(|(d, _)| *d <= 2)
                    .min()
                    .map(|(_, n)| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(Problem::new(
                    segs!["approval", "groups", i],
                    format!(
                        "group `{g}` is not declared{hint}: declare its members under the policy's top-level \
                         `groups` (`{g}: [IAM ARN patterns or sso:<account>:<permission set>]`)"
                    ),
                ));
            }
        }
    }
    if let Some(groups) = &p.groups {
        for (name, members) in &groups.0 {
            non_empty(name, segs!["groups"])?;
            if members.is_empty() {
                return Err(Problem::new(
                    segs!["groups", name.as_str()],
                    "has no members: list IAM ARN patterns or sso:<account>:<permission set>, or remove the group",
                ));
            }
        }
    }
    if let Some(c) = &p.concurrency {
        non_empty(&c.environment, segs!["concurrency", "environment"])?;
        if let Some(wave) = &c.wave {
            non_empty(wave, segs!["concurrency", "wave"])?;
        }
    }
    Ok(())
}

// -------------------------------------------------------------------------------------------------------------------
// The probe: where is the node at a path? serde_yaml attaches a node's position to any error raised while that node
// is being deserialized, so the probe walks to the node and fails there on purpose.

const PROBE: &str = "tollgate-policy-probe";

pub(crate) enum Target {
    /// The value at the path.
    Value,
    /// The `occurrence`-th (1-based) key named `key` in the mapping at the path.
    Key { key: String, occurrence: usize },
}

/// The position of the node at `path` (or of a repeated key in it), if the text has one.
pub(crate) fn locate(text: &str, path: &[Seg], target: &Target) -> Option<Location> {
    let probe = Probe { path, target };
    match probe.deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(e) if e.to_string().contains(PROBE) => location_of(&e),
        _ => None,
    }
}

struct Probe<'a> {
    path: &'a [Seg],
    target: &'a Target,
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Probe<'_> {
    fn here<E: de::Error>(&self) -> Result<(), E> {
        match (self.path.is_empty(), self.target) {
            (true, Target::Value) => Err(E::custom(PROBE)),
            _ => Ok(()),
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(PROBE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.here()?;
        match (self.path.split_first(), self.target) {
            (None, Target::Key { key, occurrence }) => {
                let mut seen = 0;
                while map
                    .next_key_seed(KeyProbe {
                        key,
                        occurrence: *occurrence,
                        seen: &mut seen,
                    })?
                    .is_some()
                {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            (Some((Seg::Key(wanted), rest)), target) => {
                while let Some(key) = map.next_key::<serde_yaml::Value>()? {
                    if key.as_str() == Some(wanted.as_str()) {
                        return map.next_value_seed(Probe { path: rest, target });
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
            _ => while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {},
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.here()?;
        if let Some((Seg::Index(wanted), rest)) = self.path.split_first() {
            for _ in 0..*wanted {
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
            }
            seq.next_element_seed(Probe {
                path: rest,
                target: self.target,
            })?;
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.here()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.here()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.here()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.here()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.here()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.here()
    }
}

/// Deserializes a mapping key; fails (at the key's position) on the wanted occurrence of `key`.
struct KeyProbe<'a> {
    key: &'a str,
    occurrence: usize,
    seen: &'a mut usize,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.key {
            *self.seen += 1;
            if *self.seen == self.occurrence {
                return Err(E::custom(PROBE));
            }
        }
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_stripped_from_messages() {
        assert_eq!(
            strip_positions(
                "did not find expected key at line 3 column 1, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_positions("at line up"), "at line up");
        assert_eq!(strip_positions("x at position 12"), "x");
    }

    #[test]
    fn the_probe_finds_nested_nodes() {
        let text = "a: 1\nb:\n  - x: 1\n  - x: 2\n    y: \"z\"\n";
        let at = |segs: Vec<Seg>| locate(text, &segs, &Target::Value).map(|l| (l.line, l.column));
        assert_eq!(at(segs!["a"]), Some((1, 4)));
        assert_eq!(at(segs!["b", 1, "y"]), Some((5, 8)));
        assert_eq!(at(segs!["b", 2]), None);
    }
}
