//! The gate action's UserParameters (which policy, which overrides) and applying overrides to a policy.
//!
//! Overrides tune a check the policy already has (a shorter bake in a test pipeline, another environment for the
//! concurrency check); they cannot add or remove a check, so a pipeline cannot quietly switch off a team's gate.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::error::{Location, PolicyError, PolicyErrorKind};
use super::model::{edit_distance, Duration, OnError, Policy};
use super::parse::{clean_message, render_path, segs_of, validate, Seg};

/// How errors about UserParameters name their source.
pub const USER_PARAMETERS: &str = "UserParameters";

/// The override paths [`Policy::with_overrides`] accepts.
pub const OVERRIDE_PATHS: &[&str] = &[
    "max_wait",
    "on_error",
    "alarms.ok_for",
    "alarms.wait",
    "alarms.on_error",
    "bake.after_stage",
    "bake.pipeline",
    "bake.duration",
    "bake.min_requests.at_least",
    "bake.on_error",
    "upstream.pipeline",
    "upstream.stage",
    "upstream.no_unrestored_failure_for",
    "upstream.on_error",
    "approval.reason_required",
    "approval.on_error",
    "concurrency.environment",
    "concurrency.wave",
    "concurrency.on_error",
];

/// What the gate action's UserParameters say: `{"policy": "policies/production.yaml", "overrides": {...}}`, or just
/// the policy (`production` or `policies/production.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserParameters {
    /// A path relative to the input artifact's root, or a bare name (see [`UserParameters::candidate_paths`]).
    pub policy: String,
    /// Override path (one of [`OVERRIDE_PATHS`]) to value, as text.
    pub overrides: BTreeMap<String, String>,
}

impl UserParameters {
    /// Where to look for the policy in the input artifact, in order: a bare name `production` is
    /// `policies/production.yaml`, then `.yml`, then `.json`; anything else is taken as the path.
    pub fn candidate_paths(&self) -> Vec<String> {
        let p = &self.policy;
        if p.contains('/') || p.contains('.') {
            return vec![p.clone()];
        }
        ["yaml", "yml", "json"]
            .iter()
            .map(|ext| format!("policies/{p}.{ext}"))
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUserParameters {
    policy: String,
    #[serde(default, deserialize_with = "override_map")]
    overrides: BTreeMap<String, String>,
}

fn user_error(kind: PolicyErrorKind, path: Option<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::new(USER_PARAMETERS, kind, path, message)
}

/// Reads the action's UserParameters: a JSON object `{"policy": ..., "overrides": {...}}`, or a policy name.
pub fn parse_user_parameters(text: &str) -> Result<UserParameters, PolicyError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(user_error(
            PolicyErrorKind::UserParameters,
            None,
            "empty: name the policy, e.g. policies/production.yaml or {\"policy\": \"policies/production.yaml\"}",
        ));
    }
    let raw = if trimmed.starts_with('"') {
        let policy: String = serde_json::from_str(text).map_err(|e| json_error(&e, &[]))?;
        RawUserParameters {
            policy,
            overrides: BTreeMap::new(),
        }
    } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawUserParameters =
            serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(e.inner(), &segs_of(e.path())))?;
        de.end().map_err(|e| json_error(&e, &[]))?;
        raw
    } else {
        RawUserParameters {
            policy: trimmed.to_string(),
            overrides: BTreeMap::new(),
        }
    };
    check_policy_path(&raw.policy)?;
    for key in raw.overrides.keys() {
        if !OVERRIDE_PATHS.contains(&key.as_str()) {
            let mut message = format!("unknown override `{key}`");
            // The distance is at least the difference in length: a long key is not compared at all.
            if let Some(near) = OVERRIDE_PATHS
                .iter()
                .find(|p| p.len().abs_diff(key.len()) <= 2 && edit_distance(key, p) <= 2)
            {
                message.push_str(&format!(" (did you mean `{near}`?)"));
            }
            message.push_str(&format!("; supported: {}", OVERRIDE_PATHS.join(", ")));
            // An empty or blank key would make the path `overrides.`: it is shown quoted, as field paths show it.
            let shown = if key.trim().is_empty() {
                format!("{key:?}")
            } else {
                key.clone()
            };
            return Err(user_error(
                PolicyErrorKind::UserParameters,
                Some(format!("overrides.{shown}")),
                message,
            ));
        }
    }
    Ok(UserParameters {
        policy: raw.policy,
        overrides: raw.overrides,
    })
}

fn json_error(e: &serde_json::Error, segs: &[Seg]) -> PolicyError {
    // serde_json says column 0 for an error at the start of a line; positions here count from 1, as the event
    // parser's do.
    let location = (e.line() > 0).then(|| Location {
        line: e.line(),
        column: e.column().max(1),
    });
    let message = clean_message(&e.to_string(), segs);
    user_error(PolicyErrorKind::UserParameters, render_path(segs), message).at(location)
}

/// The policy is read from the input artifact: a relative path that stays inside it.
fn check_policy_path(policy: &str) -> Result<(), PolicyError> {
    let bad = |why: &str| {
        Err(user_error(
            PolicyErrorKind::UserParameters,
            Some("policy".into()),
            format!("{policy:?} {why}"),
        ))
    };
    if policy.trim().is_empty() {
        return bad("is empty: name the policy file");
    }
    if policy.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace: name one policy file");
    }
    if policy.starts_with('/') || policy.contains('\\') || policy.split('/').any(|part| part == "..") {
        return bad("must be a relative path inside the input artifact (no leading /, no ..)");
    }
    Ok(())
}

/// Override values may be written as JSON strings, numbers or booleans; they are kept as text.
fn override_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct Scalar(String);
    impl<'de> Deserialize<'de> for Scalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Scalar;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a string, number or boolean")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                    Ok(Scalar(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }
    struct M;
    impl<'de> Visitor<'de> for M {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of override paths to values")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let Scalar(value) = map.next_value()?;
                if out.insert(key.clone(), value).is_some() {
                    return Err(de::Error::custom(format!("duplicate override `{key}`")));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_map(M)
}

impl Policy {
    /// This policy with `overrides` applied (paths from [`OVERRIDE_PATHS`]), validated again.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<Policy, PolicyError> {
        let mut p = self.clone();
        for (path, value) in overrides {
            apply(&mut p, path, value)
                .map_err(|message| user_error(PolicyErrorKind::Override, Some(format!("overrides.{path}")), message))?;
        }
        validate(&p).map_err(|problem| {
            user_error(
                PolicyErrorKind::Override,
                render_path(&problem.path),
                format!("after overrides: {}", problem.message),
            )
        })?;
        Ok(p)
    }
}

fn section<'a, T>(slot: &'a mut Option<T>, name: &str) -> Result<&'a mut T, String> {
    slot.as_mut()
        .ok_or_else(|| format!("the policy has no `{name}` check; an override can change a check, not add one"))
}

fn duration(value: &str) -> Result<Duration, String> {
    Duration::parse(value)
}

fn on_error(value: &str) -> Result<OnError, String> {
    match value.trim() {
        "fail_closed" => Ok(OnError::FailClosed),
        "fail_open" => Ok(OnError::FailOpen),
        _ => Err(format!("{value:?} is not fail_closed or fail_open")),
    }
}

fn text(value: &str) -> Result<String, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("must not be empty".into());
    }
    // A policy cannot hold these (its parser refuses them), so an override cannot put them in one either.
    if let Some(c) = v
        .chars()
        .find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(format!(
            "must not contain the control character or line break U+{:04X}",
            c as u32
        ));
    }
    Ok(v.to_string())
}

fn boolean(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("{value:?} is not true or false")),
    }
}

fn apply(p: &mut Policy, path: &str, value: &str) -> Result<(), String> {
    match path {
        "max_wait" => p.max_wait = duration(value)?,
        "on_error" => p.on_error = on_error(value)?,
        "alarms.ok_for" => section(&mut p.alarms, "alarms")?.ok_for = Some(duration(value)?),
        "alarms.wait" => section(&mut p.alarms, "alarms")?.wait = Some(duration(value)?),
        "alarms.on_error" => section(&mut p.alarms, "alarms")?.on_error = Some(on_error(value)?),
        "bake.after_stage" => section(&mut p.bake, "bake")?.after_stage = text(value)?,
        "bake.pipeline" => section(&mut p.bake, "bake")?.pipeline = Some(text(value)?),
        "bake.duration" => section(&mut p.bake, "bake")?.duration = duration(value)?,
        "bake.min_requests.at_least" => {
            let bake = section(&mut p.bake, "bake")?;
            let m = section(&mut bake.min_requests, "bake.min_requests")?;
            let n: f64 = value.trim().parse().map_err(|_| format!("{value:?} is not a number"))?;
            if !(n.is_finite() && n > 0.0) {
                return Err(format!("must be more than 0 (is {value})"));
            }
            m.at_least = n;
        }
        "bake.on_error" => section(&mut p.bake, "bake")?.on_error = Some(on_error(value)?),
        "upstream.pipeline" => section(&mut p.upstream, "upstream")?.pipeline = text(value)?,
        "upstream.stage" => section(&mut p.upstream, "upstream")?.stage = Some(text(value)?),
        "upstream.no_unrestored_failure_for" => {
            section(&mut p.upstream, "upstream")?.no_unrestored_failure_for = duration(value)?
        }
        "upstream.on_error" => section(&mut p.upstream, "upstream")?.on_error = Some(on_error(value)?),
        "approval.reason_required" => section(&mut p.approval, "approval")?.reason_required = boolean(value)?,
        "approval.on_error" => section(&mut p.approval, "approval")?.on_error = Some(on_error(value)?),
        "concurrency.environment" => section(&mut p.concurrency, "concurrency")?.environment = text(value)?,
        "concurrency.wave" => section(&mut p.concurrency, "concurrency")?.wave = Some(text(value)?),
        "concurrency.on_error" => section(&mut p.concurrency, "concurrency")?.on_error = Some(on_error(value)?),
        _ => return Err(format!("unknown override; supported: {}", OVERRIDE_PATHS.join(", "))),
    }
    Ok(())
}
