//! The fuzz targets: the event parsers, the policy parser, UserParameters and overrides, and the properties
//! every error they return must have.

use super::*;

// ===================================================================================================================
// Properties of errors.

/// Event parser errors say what and where: a JSON error its line and column, a field error its path, an envelope
/// error the field it is about; an oversized input the size and the limit.
pub(super) fn check_parse_error(run: &mut Run, what: &'static str, e: &ParseError, input_len: usize) {
    let shown = e.to_string();
    run.refused(&shown);
    let mut bad = |problem: &str| {
        run.violate(
            format!("{problem}|{what}|{}", message_key(&shown)),
            format!("{what}: {problem}: {shown:?}"),
        );
    };
    if shown.trim().is_empty() {
        bad("empty message");
    }
    match e {
        ParseError::TooLarge { size, limit } => {
            if input_len <= MAX_INPUT_BYTES {
                bad("refused as too large below the limit");
            } else if *size != input_len || *limit != MAX_INPUT_BYTES || !shown.contains("limit") {
                bad("oversize error does not give the size and the limit");
            }
        }
        ParseError::Json { line, column, message } => {
            if *line == 0 || *column == 0 || !shown.contains(&format!("line {line}, column {column}")) {
                bad("JSON error without a position");
            }
            if message.trim().is_empty() {
                bad("JSON error without a message");
            }
        }
        ParseError::NotAnEvent(message) => {
            let names_field = message.contains('`');
            let whole = message.starts_with("expected a JSON object") || message.starts_with("this is a");
            if !names_field && !whole {
                bad("envelope error names no field");
            }
        }
        ParseError::Field { path, problem, .. } => {
            let rooted = ["detail", "CodePipeline.job", "approval"]
                .iter()
                .any(|root| path.starts_with(root));
            if path.is_empty() || !rooted || !shown.contains(path.as_str()) {
                bad("field error without a field path");
            }
            if problem.trim().is_empty() {
                bad("field error without a problem");
            }
        }
    }
    if input_len > MAX_INPUT_BYTES && !matches!(e, ParseError::TooLarge { .. }) {
        bad("oversized input not refused as too large");
    }
    if let Some(word) = rust_type_name(&shown) {
        run.violate(
            format!("Rust type name in the message|{what}|{word}"),
            format!("{what}: Rust type name in the message ({word}): {shown:?}"),
        );
    }
}

/// A Rust type name in a message (outside the quoted parts, which repeat the input): serde's words (`expected u32`,
/// `expected field identifier`, `expected struct Window`), which the reader of a policy or an event did not write.
pub(super) fn rust_type_name(message: &str) -> Option<&'static str> {
    let mut plain = String::new();
    let mut quote = None;
    let mut escaped = false;
    for c in message.chars() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '`' => quote = Some(c),
            None => plain.push(c),
        }
    }
    let words: Vec<&str> = plain.split(|c: char| !c.is_alphanumeric()).collect();
    let types = [
        "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128", "f32", "f64", "usize", "isize",
    ];
    if let Some(t) = types.iter().find(|t| words.contains(t)) {
        return Some(t);
    }
    ["field identifier", "struct ", "enum ", "newtype", "tuple struct"]
        .into_iter()
        .find(|phrase| plain.contains(phrase))
}

/// Where a policy error came from, for what it must say.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Source {
    /// `parse_policy` or `validate_file`: the text is known, so positions are.
    PolicyText,
    /// `parse_user_parameters`.
    UserParameters,
    /// `Policy::with_overrides`: no text of its own, so a path but no position.
    Overrides,
}

pub(super) fn check_policy_error(run: &mut Run, what: &'static str, e: &PolicyError, source: Source, input_len: usize) {
    let shown = e.to_string();
    run.refused(&shown);
    let mut bad = |problem: &str| {
        run.violate(
            format!("{problem}|{what}|{:?}|{}", e.kind, message_key(&e.message)),
            format!("{what}: {problem}: {shown:?}"),
        );
    };
    if e.message.trim().is_empty() {
        bad("empty message");
    }
    if let Some(l) = e.location {
        if l.line == 0 || l.column == 0 {
            bad("position with a zero line or column");
        }
    }
    if e.path.as_deref().is_some_and(|p| p.trim().is_empty()) {
        bad("empty field path");
    }

    let names_field = e.path.is_some() || e.message.contains('`');
    use PolicyErrorKind::*;
    match (source, e.kind) {
        (Source::PolicyText, Io) => {
            let oversize = input_len > MAX_POLICY_BYTES;
            if oversize && !(e.message.contains("limit") && e.message.contains(&input_len.to_string())) {
                bad("oversize error does not give the size and the limit");
            }
            if !oversize && !e.message.contains("cannot read") {
                bad("I/O error on a readable input");
            }
        }
        (Source::PolicyText, Syntax) => {
            let whole_document = e.message.contains("document") || e.message.contains("empty");
            if e.location.is_none() && !whole_document {
                bad("syntax error without a position");
            }
        }
        (Source::PolicyText, UnknownField | MissingField | DuplicateField) => {
            if !names_field {
                bad("field error names no field");
            }
            if e.location.is_none() {
                bad("field error without a position");
            }
        }
        (Source::PolicyText, WrongType | InvalidValue) => {
            // A value of the document itself (not a mapping, a tag) has no field path: its position says where.
            if e.location.is_none() {
                bad("field error without a position");
            }
        }
        (Source::PolicyText, Semantic) => {
            if e.path.is_none() {
                bad("semantic error without a field path");
            }
            if e.location.is_none() {
                bad("semantic error without a position");
            }
        }
        (Source::UserParameters, UserParameters) => {
            if e.location.is_none() && e.path.is_none() && !e.message.starts_with("empty") {
                bad("UserParameters error without a position or field");
            }
        }
        (Source::Overrides, Override) => {
            if e.path.is_none() {
                bad("override error without a field path");
            }
        }
        _ => bad("unexpected error kind"),
    }
    if source == Source::PolicyText && input_len > MAX_POLICY_BYTES && e.kind != Io {
        bad("oversized policy not refused as too large");
    }
    if let Some(word) = rust_type_name(&e.message) {
        run.violate(
            format!("Rust type name in the message|{what}|{word}"),
            format!("{what}: Rust type name in the message ({word}): {shown:?}"),
        );
    }
}

// ===================================================================================================================
// Target 1: the event parsers.

pub(super) fn check_event(input: &[u8], run: &mut Run) {
    let event = run.call("parse_event", || parse_event(input));
    let inbound = run.call("parse_inbound", || parse_inbound(input));
    if let Some(Err(e)) = &event {
        check_parse_error(run, "parse_event", e, input.len());
    }
    if let Some(Err(e)) = &inbound {
        check_parse_error(run, "parse_inbound", e, input.len());
    }
    if let Some(Ok(i)) = &inbound {
        run.accepted(match i {
            Inbound::Event(e) => format!("event {:?}", e.kind()),
            Inbound::PipelineJob(_) => "job".into(),
            Inbound::ApprovalRequest(_) => "approval".into(),
        });
    }
    let Some(Ok(e)) = &event else { return };
    run.accepted(format!("event {:?}", e.kind()));
    let value: Value = serde_json::from_slice(input).expect("what parse_event read is JSON");
    // The same event through parse_inbound, unless it also carries an approval (which parse_inbound reads first).
    let has_approval = value.get("approval").is_some();
    match &inbound {
        Some(Ok(Inbound::Event(e2))) if e2 == e => {}
        Some(Ok(Inbound::ApprovalRequest(_))) | Some(Err(_)) if has_approval => {}
        None => {}
        other => run.violate(
            "parse_event and parse_inbound disagree".into(),
            format!("parse_event read {e:?}, parse_inbound {other:?}"),
        ),
    }
    // The identity is of the content: formatting and key order do not change it.
    let reformatted = serde_json::to_vec_pretty(&value).expect("a JSON value serialises");
    if reformatted.len() <= MAX_INPUT_BYTES {
        match run.call("parse_event", || parse_event(&reformatted)) {
            Some(Ok(again)) if again.id == e.id => {}
            Some(other) => run.violate(
                "identity depends on formatting".into(),
                format!("{} after re-serialising: {other:?}", e.id),
            ),
            None => {}
        }
    }
}

pub(super) fn mutate_event(rng: &mut Rng, input: &[u8], pool: &Pool) -> Vec<u8> {
    if rng.chance(64) {
        return special_event(rng, input);
    }
    if rng.chance(3) {
        let mut out = input.to_vec();
        mutate_bytes(rng, &mut out, JSON_TOKENS, pool);
        return out;
    }
    match serde_json::from_slice::<Value>(input) {
        Ok(mut v) => {
            let mut raw = Raw::default();
            for _ in 0..1 + rng.below(3) {
                mutate_tree(rng, &mut v, &mut raw, &EVENT_DICT, pool);
            }
            render(rng, &v, &raw, Format::Json)
        }
        Err(_) => {
            let mut out = input.to_vec();
            mutate_bytes(rng, &mut out, JSON_TOKENS, pool);
            out
        }
    }
}

/// Inputs at the edges of the limits: oversized, exactly at the limit, deeply nested, very wide.
pub(super) fn special_event(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let limit = MAX_INPUT_BYTES;
    match rng.below(6) {
        0 => pad(input, limit + 1 + rng.size(4096), rng),
        1 => pad(input, limit, rng),
        2 => {
            let depth = *rng.pick(&[127, 128, 129, 10_000, 100_000]);
            let (open, close) = *rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
            format!("{}{}{}", open.repeat(depth), "1", close.repeat(depth)).into_bytes()
        }
        3 => {
            // The event, with `detail` nested deep inside.
            let depth = *rng.pick(&[120, 200, 10_000]);
            let text = String::from_utf8_lossy(input);
            text.replacen("\"detail\":", &format!("\"detail\":{}", "[".repeat(depth)), 1)
                .into_bytes()
        }
        4 => {
            // A very wide object (many keys) or array.
            let n = rng.size(40_000);
            let body: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
            format!("{{\"detail\":{{{}}}}}", body.join(",")).into_bytes()
        }
        _ => {
            // A string field grown to just under or over the limit.
            let text = String::from_utf8_lossy(input);
            let grow = limit.saturating_sub(text.len()) + rng.below(64);
            text.replacen(":\"", &format!(":\"{}", "x".repeat(grow)), 1)
                .into_bytes()
        }
    }
}

/// The input padded with whitespace to `len` bytes (around the document, so it stays what it was).
pub(super) fn pad(input: &[u8], len: usize, rng: &mut Rng) -> Vec<u8> {
    let fill = len.saturating_sub(input.len());
    let ws = *rng.pick(b" \n\t\r");
    let before = rng.below(fill + 1);
    let mut out = vec![ws; before];
    out.extend_from_slice(input);
    out.resize(len.max(input.len()), ws);
    out
}

// ===================================================================================================================
// Target 2: the policy parser.

pub(super) const POLICY_FILE: &str = "fuzz/policy.yaml";

pub(super) fn check_policy(input: &[u8], run: &mut Run) {
    match std::str::from_utf8(input) {
        Ok(text) => {
            if let Some(result) = run.call("parse_policy", || parse_policy(POLICY_FILE, text)) {
                check_policy_result(run, result, input.len());
            }
        }
        Err(_) => {
            // What `tollgate policy validate` and the gate do with bytes: read the file.
            let file = std::env::temp_dir().join(format!("tollgate-fuzz-{}.yaml", std::process::id()));
            std::fs::write(&file, input).expect("write a temporary policy");
            let result = run.call("validate_file", || validate_file(&file));
            let _ = std::fs::remove_file(&file);
            match result {
                Some(Ok(p)) => run.violate(
                    "invalid UTF-8 accepted".into(),
                    format!("validate_file accepted bytes that are not UTF-8: {p:?}"),
                ),
                Some(Err(e)) => {
                    if input.len() > MAX_POLICY_BYTES {
                        check_policy_error(run, "validate_file", &e, Source::PolicyText, input.len());
                    } else {
                        run.refused(&e.to_string());
                        let valid_up_to = std::str::from_utf8(input).map_err(|u| u.valid_up_to()).unwrap_err();
                        let line = 1 + input[..valid_up_to].iter().filter(|b| **b == b'\n').count();
                        if !e.message.contains("UTF-8") {
                            run.violate(
                                "invalid UTF-8 not named".into(),
                                format!("validate_file on bytes that are not UTF-8: {e}"),
                            );
                        } else if e.location.is_none() {
                            run.violate(
                                "invalid UTF-8 without a position|validate_file".into(),
                                format!("validate_file: {e:?} (the first invalid byte is on line {line})"),
                            );
                        }
                    }
                }
                None => {}
            }
            // A lenient reader might replace the bad bytes instead; that text must read cleanly too.
            let text = String::from_utf8_lossy(input);
            if let Some(result) = run.call("parse_policy", || parse_policy(POLICY_FILE, &text)) {
                check_policy_result(run, result, text.len());
            }
        }
    }
}

pub(super) fn check_policy_result(run: &mut Run, result: Result<Policy, PolicyError>, input_len: usize) {
    match result {
        Err(e) => check_policy_error(run, "parse_policy", &e, Source::PolicyText, input_len),
        Ok(p) => {
            run.accepted(policy_kind(&p));
            round_trip(run, &p);
        }
    }
}

pub(super) fn policy_kind(p: &Policy) -> String {
    let checks = [
        ("windows", p.windows.is_some()),
        ("freezes", p.freezes.is_some()),
        ("alarms", p.alarms.is_some()),
        ("bake", p.bake.is_some()),
        ("upstream", p.upstream.is_some()),
        ("approval", p.approval.is_some()),
        ("concurrency", p.concurrency.is_some()),
    ];
    let names: Vec<&str> = checks.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect();
    format!("policy [{}] in {}", names.join(","), p.zone().name())
}

/// A valid policy written out again (as YAML and as JSON) reads back as the same policy.
pub(super) fn round_trip(run: &mut Run, p: &Policy) {
    let texts = [
        ("YAML", serde_yaml::to_string(p).map_err(|e| e.to_string())),
        ("JSON", serde_json::to_string(p).map_err(|e| e.to_string())),
    ];
    for (format, text) in texts {
        // Aliases can make a policy longer written out than read in: over the limit, it is refused, rightly.
        if text.as_ref().is_ok_and(|t| t.len() > MAX_POLICY_BYTES) {
            continue;
        }
        let again = text.map(|t| parse_policy("round-trip", &t).map_err(|e| e.to_string()));
        match again {
            Ok(Ok(q)) if &q == p => {}
            other => run.violate(
                format!("policy does not round-trip through {format}"),
                format!("{p:?} became {other:?}"),
            ),
        }
    }
}

pub(super) fn mutate_policy(rng: &mut Rng, input: &[u8], pool: &Pool) -> Vec<u8> {
    if rng.chance(48) {
        return special_policy(rng, input, pool.strict);
    }
    // Bytes that are not UTF-8 are refused before anything is parsed: mutating them further finds little, so they
    // are made text again (byte edits and the specials make new ones).
    let text = String::from_utf8_lossy(input);
    let text = text.as_ref();
    match rng.below(8) {
        0 | 1 => {
            let mut out = input.to_vec();
            mutate_bytes(rng, &mut out, YAML_TOKENS, pool);
            out
        }
        2..=4 => mutate_yaml_lines(rng, text).into_bytes(),
        _ => match yaml_tree(text.as_bytes()) {
            Some(mut v) => {
                let mut raw = Raw::default();
                for _ in 0..1 + rng.below(3) {
                    mutate_tree(rng, &mut v, &mut raw, &POLICY_DICT, pool);
                }
                let format = if rng.chance(4) { Format::Json } else { Format::Yaml };
                render(rng, &v, &raw, format)
            }
            None => mutate_yaml_lines(rng, text).into_bytes(),
        },
    }
}

/// The input as a tree, for tree edits; not for inputs that would make the mutator itself slow (deep flow nesting
/// is quadratic to scan, aliases are expanded).
pub(super) fn yaml_tree(input: &[u8]) -> Option<Value> {
    if input.len() > 16 * 1024 || flow_depth(input) > 100 || input.contains(&b'&') {
        return None;
    }
    serde_yaml::from_slice(input).ok()
}

/// Line edits: indentation, tabs, repeated and dropped lines, unknown keys, values from the field's dictionary,
/// reversed windows, anchors and aliases, comments, line endings, more documents.
pub(super) fn mutate_yaml_lines(rng: &mut Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    if lines.is_empty() {
        lines.push(String::new());
    }
    let n = lines.len();
    let i = rng.below(n);
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    match rng.below(13) {
        0 => {
            let by = *rng.pick(&[1usize, 2, 4]);
            if rng.chance(2) {
                lines[i].insert_str(0, &" ".repeat(by));
            } else {
                let drop = indent(&lines[i]).min(by);
                lines[i].drain(..drop);
            }
        }
        1 => {
            let k = indent(&lines[i]);
            if k > 0 && rng.chance(2) {
                lines[i].replace_range(..k, &"\t".repeat(k.div_ceil(2)));
            } else {
                lines[i] = lines[i].replacen(": ", ":\t", 1);
            }
        }
        2 => {
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        3 => {
            lines.remove(i);
        }
        4 => lines.swap(i, rng.below(n)),
        5 => {
            let k = indent(&lines[i]);
            let key = rng.pick(POLICY_KEYS);
            let value = rng.pick(YAML_SCALARS);
            lines.insert(i, format!("{}{key}: {value}\n", " ".repeat(k)));
        }
        6 => {
            if let Some(j) = pick_line(rng, &lines, |l| l.contains(": ")) {
                let (head, _) = lines[j].split_once(": ").unwrap();
                let key = head.trim().trim_start_matches("- ").trim().to_string();
                let value = policy_value(rng, Some(&key));
                let value = if rng.chance(2) { format!("{value:?}") } else { value };
                lines[j] = format!("{head}: {value}\n");
            }
        }
        7 => {
            // A reversed window or freeze: swap the values of a `from` and the next `to`.
            if let Some(f) = pick_line(rng, &lines, |l| l.trim_start().starts_with("from:")) {
                if let Some(t) = (f..n).find(|&j| lines[j].trim_start().starts_with("to:")) {
                    let fv = lines[f].split_once(':').unwrap().1.to_string();
                    let tv = lines[t].split_once(':').unwrap().1.to_string();
                    lines[f] = format!("{}:{tv}", lines[f].split_once(':').unwrap().0);
                    lines[t] = format!("{}:{fv}", lines[t].split_once(':').unwrap().0);
                }
            }
        }
        8 => {
            // An anchor on one value and an alias (or a merge key) elsewhere.
            if let Some(a) = pick_line(rng, &lines, |l| l.contains(": ")) {
                let name = format!("a{}", rng.below(4));
                lines[a] = lines[a].replacen(": ", &format!(": &{name} "), 1);
                let b = rng.below(n);
                if rng.chance(2) {
                    if let Some((head, _)) = lines[b].clone().split_once(": ") {
                        lines[b] = format!("{head}: *{name}\n");
                    }
                } else {
                    let k = indent(&lines[b]);
                    lines.insert(b, format!("{}<<: *{name}\n", " ".repeat(k)));
                }
            }
        }
        9 => {
            let k = indent(&lines[i]);
            lines[i].insert(k, '#');
        }
        10 => {
            return match rng.below(5) {
                0 => text.replace('\n', "\r\n"),
                1 => format!("\u{feff}{text}"),
                2 => format!("{text}---\n{text}"),
                3 => format!("{text}...\n"),
                _ => format!("%YAML 1.1\n---\n{text}"),
            };
        }
        11 => {
            // A typo in a key.
            if let Some(j) = pick_line(rng, &lines, |l| l.contains(':')) {
                let k = indent(&lines[j]);
                let colon = lines[j].find(':').unwrap();
                if colon > k {
                    let at = k + rng.below(colon - k);
                    if lines[j].is_char_boundary(at) && lines[j].is_char_boundary(at + 1) {
                        lines[j].remove(at);
                    }
                }
            }
        }
        _ => {
            // Flow style for a block, or the other way round.
            lines[i] = lines[i].replacen("- ", "- {", 1).replacen('\n', "}\n", 1);
        }
    }
    lines.concat()
}

pub(super) fn pick_line(rng: &mut Rng, lines: &[String], want: impl Fn(&str) -> bool) -> Option<usize> {
    let candidates: Vec<usize> = (0..lines.len())
        .filter(|&j| want(&lines[j]) && !lines[j].trim_start().starts_with('#'))
        .collect();
    (!candidates.is_empty()).then(|| *rng.pick(&candidates))
}

/// Policies at the edges: alias bombs and alias amplification, more than one document, deep nesting, oversized,
/// bytes that are not UTF-8.
pub(super) fn special_policy(rng: &mut Rng, input: &[u8], strict: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(input).into_owned();
    match rng.below(8) {
        0 => {
            let places: [&str; 3] = ["names", "key", "unknown"];
            let place = *rng.pick(&places);
            billion_laughs(9, 9, place).into_bytes()
        }
        1 => {
            // Small amplification, so the memory bound (not the machine) catches a parser that expands it.
            // Up to 16 MiB expanded (256 MiB in strict mode, over the memory bound but under the ceiling).
            let size = 1 << (6 + rng.below(if strict { 11 } else { 8 }));
            let copies = 1 << (4 + rng.below(if strict { 11 } else { 9 }));
            let lead = *rng.pick(PLAIN_SCALAR_LEADS);
            let aliases = vec!["*s"; copies].join(", ");
            wrap_value(rng, &format!("[{lead}&s {}, {aliases}]", "x".repeat(size))).into_bytes()
        }
        2 => format!("{text}\n---\n{text}").into_bytes(),
        3 => {
            let depth = *rng.pick(&[33, 127, 128, 129, 10_000, 100_000]);
            let lead = *rng.pick(PLAIN_SCALAR_LEADS);
            let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let value = if lead.is_empty() {
                nested
            } else {
                format!("[{lead}{nested}]")
            };
            wrap_value(rng, &value).into_bytes()
        }
        4 => {
            let depth = rng.size(600);
            let mut s = String::from("version: 1\nname: g\nmax_wait: 6h\napproval:\n");
            for d in 1..=depth {
                s.push_str(&format!("{}groups:\n", " ".repeat(2 * d)));
            }
            s.into_bytes()
        }
        5 => pad(input, MAX_POLICY_BYTES + 1 + rng.size(4096), rng),
        6 => pad(input, MAX_POLICY_BYTES, rng),
        _ => {
            let mut out = input.to_vec();
            let at = rng.below(out.len() + 1);
            let invalid: [&[u8]; 5] = [b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf"];
            let bad = *rng.pick(&invalid);
            out.splice(at..at, bad.iter().copied());
            out
        }
    }
}

/// Plain scalars with a quote character in them, which a scanner may take for the start of a quoted string.
pub(super) const PLAIN_SCALAR_LEADS: &[&str] = &["", "a \"b, ", "a 'b, ", "a:\"b, ", "a:'b, "];

/// A policy with `value` where a list of names is read, reached in the ways YAML allows that a line-based scanner may
/// read differently: after a comment ended by a line break other than `\n`, or as the field after a block scalar
/// indicator in a list item.
pub(super) fn wrap_value(rng: &mut Rng, value: &str) -> String {
    let head = "version: 1\nname: g\ntimezone: UTC\nmax_wait: 6h\n";
    match rng.below(4) {
        0 => {
            let breaks = ["\r", "\u{85}", "\u{2028}", "\u{2029}"];
            let line_break = *rng.pick(&breaks);
            format!("{head}alarms: # c{line_break}  names: {value}\n")
        }
        1 => format!("{head}windows:\n  - days: |\n    from: {value}\n"),
        _ => format!("{head}alarms:\n  names: {value}\n"),
    }
}

/// The classic "billion laughs": `depth` levels, each a list of `width` aliases to the level below.
pub(super) fn billion_laughs(depth: usize, width: usize, place: &str) -> String {
    let mut s = String::from("version: 1\nname: g\nmax_wait: 6h\n");
    let mut defs = String::from("  - &l0 [lol]\n");
    for d in 1..=depth {
        let refs = vec![format!("*l{}", d - 1); width].join(", ");
        defs.push_str(&format!("  - &l{d} [{refs}]\n"));
    }
    match place {
        // Anchors defined inside a field that is read, the bomb where a list of strings belongs.
        "names" => s.push_str(&format!("alarms:\n  tags: {{}}\n  names:\n{defs}  - *l{depth}\n")),
        // The bomb as a mapping key.
        "key" => s.push_str(&format!(
            "bake:\n  after_stage:\n{defs}  duration: 1h\n  ? *l{depth}\n  : x\n"
        )),
        _ => s.push_str(&format!("x:\n{defs}y: *l{depth}\n")),
    }
    s
}

/// One anchored string of `size` bytes and `copies` aliases to it, where a list of strings is read: a few bytes
/// of text that a parser which copies aliases expands to `size × copies` bytes.
pub(super) fn alias_amplification(size: usize, copies: usize) -> String {
    let aliases = vec!["*s"; copies].join(", ");
    format!(
        "version: 1\nname: g\nmax_wait: 6h\nalarms:\n  names: [&s {}, {aliases}]\n",
        "x".repeat(size)
    )
}

// ===================================================================================================================
// Target 3: UserParameters and overrides.

pub(super) fn base_policies() -> &'static [Policy] {
    static BASES: std::sync::OnceLock<Vec<Policy>> = std::sync::OnceLock::new();
    BASES.get_or_init(|| {
        BASE_POLICIES
            .iter()
            .map(|text| parse_policy("base", text).unwrap_or_else(|e| panic!("a base policy must be valid: {e}")))
            .collect()
    })
}

pub(super) fn check_user_parameters(input: &[u8], run: &mut Run) {
    // UserParameters reach the gate as a JSON string inside the job event: always UTF-8.
    let text = String::from_utf8_lossy(input);
    let Some(result) = run.call("parse_user_parameters", || parse_user_parameters(&text)) else {
        return;
    };
    let up = match result {
        Err(e) => return check_policy_error(run, "parse_user_parameters", &e, Source::UserParameters, text.len()),
        Ok(up) => up,
    };
    run.accepted(format!("user parameters with {} overrides", up.overrides.len()));
    for path in up.candidate_paths() {
        if path.starts_with('/') || path.split('/').any(|p| p == "..") || path.contains('\\') {
            run.violate(
                "policy path leaves the artifact".into(),
                format!("{path:?} from {up:?}"),
            );
        }
    }
    let mut round_tripped = false;
    for (i, base) in base_policies().iter().enumerate() {
        let Some(result) = run.call("with_overrides", || base.with_overrides(&up.overrides)) else {
            continue;
        };
        match result {
            Err(e) => check_policy_error(run, "with_overrides", &e, Source::Overrides, text.len()),
            Ok(p) => {
                run.accepted(format!("overrides applied to base {i}"));
                // Overrides tune checks; they never add or remove one.
                let checks = |p: &Policy| {
                    [
                        p.windows.is_some(),
                        p.freezes.is_some(),
                        p.alarms.is_some(),
                        p.bake.is_some(),
                        p.upstream.is_some(),
                        p.approval.is_some(),
                        p.concurrency.is_some(),
                        p.bake.as_ref().is_some_and(|b| b.min_requests.is_some()),
                    ]
                };
                if checks(&p) != checks(base) {
                    run.violate(
                        "an override added or removed a check".into(),
                        format!("{:?} on base {i}", up.overrides),
                    );
                }
                // One round trip per input is enough: the bases differ in their checks, not in how they are written.
                if !round_tripped {
                    round_trip(run, &p);
                    round_tripped = true;
                }
            }
        }
    }
}

pub(super) fn mutate_user_parameters(rng: &mut Rng, input: &[u8], pool: &Pool) -> Vec<u8> {
    match rng.below(5) {
        0 => {
            let mut out = input.to_vec();
            mutate_bytes(rng, &mut out, JSON_TOKENS, pool);
            out
        }
        1 if rng.chance(16) => {
            // A huge policy name, override key or value.
            // Outside strict mode at most 64 KiB: in a debug build the did-you-mean suggestion for a 256 KiB key
            // takes over a second (a tenth of that in release).
            let big = "x".repeat(if pool.strict {
                rng.long(MAX_INPUT_BYTES)
            } else {
                rng.size(64 * 1024)
            });
            let which = rng.below(3);
            let v = match which {
                0 => serde_json::json!({ "policy": big }),
                1 => serde_json::json!({ "policy": "p", "overrides": { big: "1h" } }),
                _ => serde_json::json!({ "policy": "p", "overrides": { "bake.after_stage": big } }),
            };
            v.to_string().into_bytes()
        }
        _ => {
            let mut v = serde_json::from_slice::<Value>(input)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| serde_json::json!({ "policy": String::from_utf8_lossy(input) }));
            let mut raw = Raw::default();
            if rng.chance(2) {
                mutate_overrides(rng, &mut v);
            } else {
                mutate_tree(rng, &mut v, &mut raw, &USER_PARAMETERS_DICT, pool);
            }
            render(rng, &v, &raw, Format::Json)
        }
    }
}

/// Adds, changes or removes overrides, with keys from the supported paths (or near them) and values of their kind.
pub(super) fn mutate_overrides(rng: &mut Rng, v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    if rng.chance(8) {
        obj.insert("policy".into(), Value::String(policy_value(rng, Some("policy"))));
    }
    let overrides = obj.entry("overrides").or_insert_with(|| Value::Object(Map::new()));
    let Some(map) = overrides.as_object_mut() else {
        *overrides = Value::Object(Map::new());
        return;
    };
    if !map.is_empty() && rng.chance(4) {
        let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
        map.remove(&key);
        return;
    }
    let mut key = rng.pick(OVERRIDE_PATHS).to_string();
    if rng.chance(6) {
        let at = rng.below(key.len());
        key.remove(at);
    }
    let value = match rng.below(8) {
        0 => Value::Bool(rng.chance(2)),
        1 => serde_json::json!(rng.next() as i64 >> rng.below(64)),
        2 => Value::Null,
        3 => serde_json::json!([]),
        _ => Value::String(rng.pick(override_values(&key)).to_string()),
    };
    map.insert(key, value);
}
