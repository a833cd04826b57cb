//! Mutators shared by the fuzz targets.

use super::*;

// ===================================================================================================================
// Mutators shared by the targets.

pub(super) const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"\\",
    b"\\u",
    b"\\ud800",
    b"\\udc00\\ud800",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"\n",
    b"\t",
    b"\r",
    b"\xef\xbb\xbf",
    b"\0",
    b"\xff",
    b"\xc0\x80",
    b"\xed\xa0\x80",
    b"/*",
    b"NaN",
    b"Infinity",
    b"0x10",
    b"00",
    b".5",
    b"\"\":",
];

pub(super) const YAML_TOKENS: &[&[u8]] = &[
    b": ",
    b"- ",
    b"\t",
    b"  ",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!str ",
    b"!!binary ",
    b"? ",
    b"|\n",
    b">\n",
    b"---\n",
    b"...\n",
    b"%YAML 1.1\n",
    b"%TAG ! tag:x,2000:\n",
    b"#",
    b"'",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"~",
    b"\r\n",
    b"\r",
    b"\xef\xbb\xbf",
    b"\xc2\x85",
    b"\xe2\x80\xa8",
    b"\xff",
    b"\0",
    b"@",
    b"`",
    b"%",
];

/// Byte edits: flips, insertions (of format tokens or random bytes), deletions, truncation, duplication, splices.
pub(super) fn mutate_bytes(rng: &mut Rng, data: &mut Vec<u8>, tokens: &[&[u8]], pool: &Pool) {
    let len = data.len();
    let at = rng.below(len + 1);
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.next() as u8;
        }
        2 => {
            let t = rng.pick(tokens);
            data.splice(at..at, t.iter().copied());
        }
        3 => {
            let bytes: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            data.splice(at..at, bytes);
        }
        4 if len > 0 => {
            let start = rng.below(len);
            let n = 1 + rng.size(len - start - 1);
            data.drain(start..start + n);
        }
        5 => data.truncate(at),
        6 if len > 0 => {
            let start = rng.below(len);
            let n = 1 + rng.size(len - start - 1);
            let chunk = data[start..start + n].to_vec();
            let to = rng.below(len + 1);
            data.splice(to..to, chunk);
        }
        7 => {
            let other = pool.pick(rng);
            let from = rng.below(other.len() + 1);
            data.truncate(at);
            data.extend_from_slice(&other[from..]);
        }
        _ => {
            let t = rng.pick(tokens);
            let n = 1 + rng.long(MAX_INPUT_BYTES) / t.len();
            let repeated: Vec<u8> = t.iter().copied().cycle().take(t.len() * n).collect();
            data.splice(at..at, repeated);
        }
    }
}

/// Text substituted for placeholders after serialisation: number literals a `Value` cannot hold, deep nesting,
/// duplicate keys.
#[derive(Default)]
pub(super) struct Raw {
    pub(super) subs: Vec<(String, String)>,
}

impl Raw {
    pub(super) fn placeholder(&mut self, text: String) -> String {
        let p = format!("FUZZRAW{}Z", self.subs.len());
        self.subs.push((p.clone(), text));
        p
    }
}

#[derive(Clone, Copy)]
pub(super) enum Format {
    Json,
    Yaml,
}

pub(super) fn render(rng: &mut Rng, v: &Value, raw: &Raw, format: Format) -> Vec<u8> {
    let mut text = match format {
        Format::Json if rng.chance(2) => serde_json::to_string_pretty(v).unwrap_or_default(),
        Format::Json => serde_json::to_string(v).unwrap_or_default(),
        Format::Yaml => serde_yaml::to_string(v).unwrap_or_default(),
    };
    for (p, text_for) in &raw.subs {
        let quoted = format!("\"{p}\"");
        text = if text.contains(&quoted) {
            text.replacen(&quoted, text_for, 1)
        } else {
            text.replacen(p.as_str(), text_for, 1)
        };
    }
    text.into_bytes()
}

/// What the tree mutator puts where, per target.
pub(super) struct Dict {
    /// A string for a value under `key`.
    pub(super) string_for: fn(&mut Rng, Option<&str>) -> String,
    /// Mutations that only make sense at the document's root.
    pub(super) root: fn(&mut Rng, &mut Value),
}

pub(super) const EVENT_DICT: Dict = Dict {
    string_for: event_string,
    root: event_root,
};

pub(super) const POLICY_DICT: Dict = Dict {
    string_for: policy_value,
    root: policy_root,
};

pub(super) const USER_PARAMETERS_DICT: Dict = Dict {
    string_for: policy_value,
    root: mutate_overrides,
};

pub(super) fn event_string(rng: &mut Rng, key: Option<&str>) -> String {
    let key = key.unwrap_or("");
    if key == "detail-type" || key == "detailType" {
        return rng.pick(&detail_types()).to_string();
    }
    if key == "source" {
        let sources = [
            "aws.codepipeline",
            "aws.codebuild",
            "aws.codedeploy",
            "aws.cloudformation",
            "aws.cloudwatch",
            "aws.s3",
            "",
        ];
        return rng.pick(&sources).to_string();
    }
    rng.pick(EVENT_STRINGS).to_string()
}

/// Swaps the detail-type (so one kind's detail is read as another's), drops envelope fields, wraps the event as a
/// job, an approval or a batch.
pub(super) fn event_root(rng: &mut Rng, v: &mut Value) {
    let types = detail_types();
    match rng.below(6) {
        0 | 1 => {
            if let Some(obj) = v.as_object_mut() {
                let key = if rng.chance(3) { "detailType" } else { "detail-type" };
                obj.insert(key.into(), Value::String(rng.pick(&types).to_string()));
            }
        }
        2 => {
            if let Some(obj) = v.as_object_mut() {
                let key = *rng.pick(&[
                    "account",
                    "source",
                    "region",
                    "time",
                    "detail",
                    "detail-type",
                    "detailType",
                ]);
                obj.remove(key);
            }
        }
        3 => {
            let inner = v.take();
            *v = match rng.below(5) {
                0 => serde_json::json!({ "CodePipeline.job": inner }),
                1 => serde_json::json!({ "approval": inner }),
                2 => serde_json::json!({ "Records": [inner] }),
                3 => serde_json::json!([inner]),
                _ => serde_json::json!({ "detail": inner }),
            };
        }
        4 => {
            if let Some(obj) = v.as_object_mut() {
                let detail = obj.get("detail").cloned().unwrap_or(Value::Null);
                obj.insert("approval".into(), detail.clone());
                if rng.chance(2) {
                    obj.insert("CodePipeline.job".into(), detail);
                }
            }
        }
        _ => {
            if let Some(obj) = v.as_object_mut() {
                obj.remove("account");
                let arn = rng.pick(EVENT_STRINGS).to_string();
                obj.insert("resources".into(), serde_json::json!([arn, 7, null]));
            }
        }
    }
}

/// A value for a policy field (or UserParameters key), from the dictionary of what that field is read as.
pub(super) fn policy_value(rng: &mut Rng, key: Option<&str>) -> String {
    let key = key.unwrap_or("");
    if OVERRIDE_PATHS.contains(&key) {
        return rng.pick(override_values(key)).to_string();
    }
    let list: &[&str] = match key {
        "max_wait" | "ok_for" | "wait" | "duration" | "no_unrestored_failure_for" => DURATIONS,
        "from" | "to" if rng.chance(2) => TIMES,
        "from" | "to" => DATES,
        "timezone" => ZONES,
        "days" => DAYS,
        "on_error" => ON_ERROR,
        "statistic" => STATISTICS,
        "approvers" => ARNS,
        "policy" => &[
            "production",
            "policies/production.yaml",
            "/etc/passwd",
            "../x",
            "policies/../../x",
            "a b",
            "C:\\x",
            "//x",
            ".",
            "..",
            "",
        ],
        _ => YAML_SCALARS,
    };
    rng.pick(list).to_string()
}

/// Adds or removes a whole check or calendar section.
pub(super) fn policy_root(rng: &mut Rng, v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
    let sections: [(&str, Value); 9] = [
        ("timezone", Value::String(rng.pick(ZONES).to_string())),
        (
            "windows",
            serde_json::json!([{"days": [rng.pick(DAYS)], "from": rng.pick(TIMES), "to": rng.pick(TIMES)}]),
        ),
        (
            "freezes",
            serde_json::json!([{"name": "f", "from": rng.pick(DATES), "to": rng.pick(DATES)}]),
        ),
        (
            "alarms",
            serde_json::json!({"names": ["a"], "ok_for": rng.pick(DURATIONS)}),
        ),
        (
            "bake",
            serde_json::json!({"after_stage": "S", "duration": rng.pick(DURATIONS)}),
        ),
        (
            "upstream",
            serde_json::json!({"pipeline": "p", "no_unrestored_failure_for": "1h"}),
        ),
        ("approval", serde_json::json!({"approvers": [rng.pick(ARNS)]})),
        ("concurrency", serde_json::json!({"environment": "prod", "wave": 1})),
        ("version", serde_json::json!(rng.pick(&[0u64, 1, 2, 4_294_967_296]))),
    ];
    let (key, value) = &sections[rng.below(sections.len())];
    if obj.contains_key(*key) && rng.chance(2) {
        obj.remove(*key);
    } else {
        obj.insert(key.to_string(), value.clone());
    }
}

/// A random node, by a random walk from the root: its JSON pointer and the key it is under (the nearest object key
/// above it, for array elements).
pub(super) fn random_node(rng: &mut Rng, root: &Value) -> (String, Option<String>) {
    let mut pointer = String::new();
    let mut key = None;
    let mut node = root;
    loop {
        let children = match node {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if children == 0 || rng.chance(4) {
            return (pointer, key);
        }
        let i = rng.below(children);
        match node {
            Value::Object(m) => {
                let (k, child) = m.iter().nth(i).unwrap();
                pointer.push('/');
                pointer.push_str(&k.replace('~', "~0").replace('/', "~1"));
                key = Some(k.clone());
                node = child;
            }
            Value::Array(a) => {
                pointer.push_str(&format!("/{i}"));
                node = &a[i];
            }
            _ => unreachable!(),
        }
    }
}

/// One tree edit at a random node: delete it, change its type, replace it with a huge string, an extreme number, a
/// value from the field's dictionary, deep nesting or a subtree of another input; add unknown or duplicate keys;
/// or a root-level edit of the target's own.
pub(super) fn mutate_tree(rng: &mut Rng, root: &mut Value, raw: &mut Raw, dict: &Dict, pool: &Pool) {
    let (pointer, key) = random_node(rng, root);
    let op = rng.below(12);
    if op == 0 {
        // Delete the node from its parent.
        if let Some(cut) = pointer.rfind('/') {
            let last = pointer[cut + 1..].replace("~1", "/").replace("~0", "~");
            match root.pointer_mut(&pointer[..cut]) {
                Some(Value::Object(m)) => {
                    m.remove(&last);
                }
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        a.remove(i);
                    }
                }
                _ => {}
            }
        }
        return;
    }
    if op == 11 {
        return (dict.root)(rng, root);
    }
    if op == 6 || op == 7 {
        // An unknown key, or (through a placeholder) a key the object already has.
        let at = if root.pointer(&pointer).is_some_and(Value::is_object) {
            pointer.as_str()
        } else {
            parent(&pointer)
        };
        if let Some(Value::Object(m)) = root.pointer_mut(at) {
            let value = Value::String((dict.string_for)(rng, key.as_deref()));
            if op == 6 && !m.is_empty() {
                let existing = m.keys().nth(rng.below(m.len())).unwrap().clone();
                let p = raw.placeholder(serde_json::to_string(&existing).unwrap());
                m.insert(p, value);
            } else {
                m.insert(rng.pick(POLICY_KEYS).to_string(), value);
            }
        }
        return;
    }
    let other = if op == 8 {
        let picked = pool.pick(rng);
        serde_json::from_slice::<Value>(picked)
            .ok()
            .or_else(|| yaml_tree(picked))
    } else {
        None
    };
    let Some(node) = root.pointer_mut(&pointer) else { return };
    match op {
        1 => *node = retype(rng, node),
        2 => {
            let c = *rng.pick(&["a", "é", "\\", "\"", "\u{0}", "\n", "𝄞"]);
            *node = Value::String(c.repeat(rng.long(MAX_INPUT_BYTES) / c.len()));
        }
        3 => *node = Value::String(raw.placeholder(rng.pick(NUMBER_LITERALS).to_string())),
        4 => *node = Value::String((dict.string_for)(rng, key.as_deref())),
        5 => {
            let depth = *rng.pick(&[2, 64, 127, 128, 129, 200, 10_000]);
            let (open, close) = *rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
            let nested = format!("{}0{}", open.repeat(depth), close.repeat(depth));
            *node = Value::String(raw.placeholder(nested));
        }
        8 => {
            if let Some(other) = other {
                let (p, _) = random_node(rng, &other);
                *node = other.pointer(&p).cloned().unwrap_or(Value::Null);
            }
        }
        9 => {
            *node = rng
                .pick(&[
                    Value::Null,
                    serde_json::json!({}),
                    serde_json::json!([]),
                    serde_json::json!(""),
                ])
                .clone()
        }
        _ => {
            // Many copies of the node in an array.
            let copies = rng.size(16 * 1024 / node.to_string().len().max(1));
            *node = Value::Array(vec![node.clone(); copies]);
        }
    }
}

pub(super) fn parent(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |i| &pointer[..i])
}

pub(super) fn retype(rng: &mut Rng, v: &Value) -> Value {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match rng.below(6) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or(serde_json::json!(rng.next() as i64)),
        3 => Value::String(text),
        4 => Value::Array(vec![v.clone()]),
        _ => serde_json::json!({ "value": v.clone() }),
    }
}
