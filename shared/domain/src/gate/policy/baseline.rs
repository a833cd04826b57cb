//! The organisation baseline: the checks the platform team requires of every gate (or of a class of stages), which
//! a pipeline's own policy may tighten but never loosen (`tighten.rs` merges the two).
//!
//! A baseline is written in the policy format of docs/policy.md (a plain policy is a baseline that applies to every
//! stage), plus two keys of its own:
//!
//! - `allow_fail_open`: the checks whose `on_error` a pipeline may set to `fail_open`;
//! - `rules`: classes of stages, each with a `match` (stage and pipeline name patterns, pipeline tags) and the
//!   checks it adds to the top level for them. The first rule that matches a stage applies.
//!
//! It is stored in the control plane (the table item `BASELINE#<name>`), never in a pipeline's artifact.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::{PolicyError, PolicyErrorKind};
use super::model::{
    present, AlarmsCheck, ApprovalCheck, BakeCheck, ConcurrencyCheck, Duration, Freeze, Groups, OnError, Policy,
    TimeZone, UpstreamCheck, Window, POLICY_VERSION,
};
use super::parse::{
    clean_message, locate, location_of, prescan, render_path, shape_error, validate, Problem, Seg, Target,
    MAX_POLICY_BYTES,
};
use super::tighten::{effective_policy, Loosening};

/// The checks of a policy that have an `on_error` of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCheck {
    Alarms,
    Bake,
    Upstream,
    Approval,
    Concurrency,
}

impl ErrorCheck {
    pub const ALL: [ErrorCheck; 5] = [
        ErrorCheck::Alarms,
        ErrorCheck::Bake,
        ErrorCheck::Upstream,
        ErrorCheck::Approval,
        ErrorCheck::Concurrency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCheck::Alarms => "alarms",
            ErrorCheck::Bake => "bake",
            ErrorCheck::Upstream => "upstream",
            ErrorCheck::Approval => "approval",
            ErrorCheck::Concurrency => "concurrency",
        }
    }
}

/// Which stages a rule applies to. Every condition given must hold; within a list, any entry. No condition: every
/// stage. Patterns match whole names, `*` matching any run of characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageMatch {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pipelines: Vec<String>,
    /// Pipeline tags: the pipeline must carry every one of them with that value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The stage a gate guards, as a rule sees it. `tags` is `None` when the pipeline's tags were not read.
#[derive(Debug, Clone, Copy)]
pub struct StageRef<'a> {
    pub pipeline: &'a str,
    pub stage: &'a str,
    pub tags: Option<&'a BTreeMap<String, String>>,
}

impl StageMatch {
    /// Whether the rule applies; `Err` when that depends on tags that were not read.
    pub fn matches(&self, s: &StageRef<'_>) -> Result<bool, String> {
        let any = |patterns: &[String], name: &str| patterns.is_empty() || patterns.iter().any(|p| glob(p, name));
        if !any(&self.stages, s.stage) || !any(&self.pipelines, s.pipeline) {
            return Ok(false);
        }
        if self.tags.is_empty() {
            return Ok(true);
        }
        let Some(tags) = s.tags else {
            return Err("the pipeline's tags were not read".into());
        };
        Ok(self.tags.iter().all(|(k, v)| tags.get(k) == Some(v)))
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut i, mut j, mut star) = (0, 0, None::<(usize, usize)>);
    while j < t.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == t[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|b| *b == b'*')
}

/// A rule of the baseline, as written: its name and match, then the checks of a policy, each optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    name: String,
    /// Whether an approver may decide on a change they triggered or authored. Default: on for a production class.
    #[serde(default)]
    separation_of_duties: Option<bool>,
    #[serde(default, rename = "match")]
    matches: StageMatch,
    #[serde(default)]
    allow_fail_open: Option<Vec<ErrorCheck>>,
    #[serde(default)]
    timezone: Option<TimeZone>,
    #[serde(default)]
    max_wait: Option<Duration>,
    #[serde(default)]
    on_error: Option<OnError>,
    #[serde(default, deserialize_with = "present")]
    windows: Option<Vec<Window>>,
    #[serde(default, deserialize_with = "present")]
    freezes: Option<Vec<Freeze>>,
    #[serde(default, deserialize_with = "present")]
    alarms: Option<AlarmsCheck>,
    #[serde(default, deserialize_with = "present")]
    bake: Option<BakeCheck>,
    #[serde(default, deserialize_with = "present")]
    upstream: Option<UpstreamCheck>,
    #[serde(default, deserialize_with = "present")]
    approval: Option<ApprovalCheck>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<ConcurrencyCheck>,
    #[serde(default, deserialize_with = "present")]
    groups: Option<Groups>,
}

/// The baseline as written: a policy's fields, `allow_fail_open` and `rules`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineDoc {
    version: u32,
    name: String,
    #[serde(default)]
    separation_of_duties: Option<bool>,
    #[serde(default)]
    timezone: Option<TimeZone>,
    max_wait: Duration,
    #[serde(default)]
    on_error: OnError,
    #[serde(default, deserialize_with = "present")]
    windows: Option<Vec<Window>>,
    #[serde(default, deserialize_with = "present")]
    freezes: Option<Vec<Freeze>>,
    #[serde(default, deserialize_with = "present")]
    alarms: Option<AlarmsCheck>,
    #[serde(default, deserialize_with = "present")]
    bake: Option<BakeCheck>,
    #[serde(default, deserialize_with = "present")]
    upstream: Option<UpstreamCheck>,
    #[serde(default, deserialize_with = "present")]
    approval: Option<ApprovalCheck>,
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<ConcurrencyCheck>,
    #[serde(default, deserialize_with = "present")]
    groups: Option<Groups>,
    #[serde(default)]
    allow_fail_open: Vec<ErrorCheck>,
    #[serde(default, deserialize_with = "present")]
    rules: Option<Vec<RuleDoc>>,
}

/// A class of stages and the baseline that applies to them: the top level tightened by the rule's checks.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRule {
    pub name: String,
    pub matches: StageMatch,
    /// The whole baseline for the stages this rule matches (top level and rule merged).
    pub policy: Policy,
    pub allow_fail_open: Vec<ErrorCheck>,
    /// An approver may not approve or override a change they triggered or authored.
    pub separation_of_duties: bool,
}

/// A validated organisation baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub name: String,
    /// The top level: what every stage must meet.
    pub policy: Policy,
    pub allow_fail_open: Vec<ErrorCheck>,
    /// Separation of duties for stages no rule matches (default: on for a production stage name).
    pub separation_of_duties: Option<bool>,
    pub rules: Vec<BaselineRule>,
}

/// What applies to one stage: the baseline's top level, or the first rule that matches it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Applicable<'a> {
    /// `None`: the top level (no rule matched).
    pub rule: Option<&'a str>,
    pub policy: &'a Policy,
    pub allow_fail_open: &'a [ErrorCheck],
    /// `None`: not set, so it follows the stage's name ([`is_production_stage`]).
    pub separation_of_duties: Option<bool>,
}

impl Applicable<'_> {
    /// `baseline <name>` or `baseline <name>, rule <rule>`, for messages.
    pub fn describe(&self) -> String {
        match self.rule {
            None => format!("baseline {}", self.policy.name),
            Some(rule) => format!("baseline {}, rule {rule}", self.policy.name),
        }
    }

    pub fn allows_fail_open(&self, check: ErrorCheck) -> bool {
        self.allow_fail_open.contains(&check)
    }
}

impl Baseline {
    /// The baseline for `stage`: the first rule that matches it, else the top level. `Err` when a rule's match
    /// depends on pipeline tags that were not read (the gate then fails closed).
    pub fn for_stage(&self, stage: &StageRef<'_>) -> Result<Applicable<'_>, String> {
        for rule in &self.rules {
            let applies = rule.matches.matches(stage).map_err(|why| {
                format!(
                    "cannot tell whether rule {} of baseline {} applies to {} / {}: {why}",
                    rule.name, self.name, stage.pipeline, stage.stage
                )
            })?;
            if applies {
                return Ok(Applicable {
                    rule: Some(&rule.name),
                    policy: &rule.policy,
                    allow_fail_open: &rule.allow_fail_open,
                    separation_of_duties: Some(rule.separation_of_duties),
                });
            }
        }
        Ok(self.top())
    }

    /// The top level alone (what applies to a stage no rule matches).
    pub fn top(&self) -> Applicable<'_> {
        Applicable {
            rule: None,
            policy: &self.policy,
            allow_fail_open: &self.allow_fail_open,
            separation_of_duties: self.separation_of_duties,
        }
    }

    /// Every class: the top level, then each rule (for validating a policy without knowing its stage).
    pub fn all(&self) -> Vec<Applicable<'_>> {
        let mut out = vec![self.top()];
        out.extend(self.rules.iter().map(|r| Applicable {
            rule: Some(&r.name),
            policy: &r.policy,
            allow_fail_open: &r.allow_fail_open,
            separation_of_duties: Some(r.separation_of_duties),
        }));
        out
    }
}

/// Whether a stage (or a rule's name or stage pattern) names production: `prod` in any case, as in `Production`,
/// `prod-eu` or `Prod*`. Separation of duties is on by default there.
pub fn is_production_stage(name: &str) -> bool {
    name.to_ascii_lowercase().contains("prod")
}

/// Reads and validates a baseline. Errors name the file, line, column and field as a policy's do; a rule that
/// loosens the top level is an error too (a rule may only add to it).
pub fn parse_baseline(name_for_errors: &str, text: &str) -> Result<Baseline, PolicyError> {
    let file = name_for_errors;
    if text.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::new(
            file,
            PolicyErrorKind::Io,
            None,
            format!(
                "the baseline is {} bytes, more than the {MAX_POLICY_BYTES}-byte limit",
                text.len()
            ),
        ));
    }
    if text.trim().is_empty() {
        return Err(PolicyError::new(
            file,
            PolicyErrorKind::Syntax,
            None,
            "the baseline is empty (expected a policy: version, name, max_wait and the checks, and optionally rules)",
        ));
    }
    prescan(file, text)?;
    if let Err(e) = serde_yaml::from_str::<serde::de::IgnoredAny>(text) {
        let message = clean_message(&e.to_string(), &[]);
        return Err(PolicyError::new(file, PolicyErrorKind::Syntax, None, message).at(location_of(&e)));
    }
    let doc: BaselineDoc = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
        .map_err(|e| shape_error(file, text, e))?;
    let semantic = |prefix: Vec<Seg>, p: Problem| {
        let mut path = prefix.clone();
        path.extend(p.path.iter().cloned());
        let mut point = prefix;
        point.extend(p.point_at.unwrap_or(p.path));
        PolicyError::new(file, PolicyErrorKind::Semantic, render_path(&path), p.message).at(locate(
            text,
            &point,
            &Target::Value,
        ))
    };
    let top = Policy {
        version: doc.version,
        name: doc.name.clone(),
        timezone: doc.timezone,
        max_wait: doc.max_wait,
        on_error: doc.on_error,
        windows: doc.windows,
        freezes: doc.freezes,
        alarms: doc.alarms,
        bake: doc.bake,
        upstream: doc.upstream,
        approval: doc.approval,
        concurrency: doc.concurrency,
        groups: doc.groups,
    };
    validate(&top).map_err(|p| semantic(Vec::new(), p))?;
    let mut rules = Vec::new();
    for (i, r) in doc.rules.unwrap_or_default().into_iter().enumerate() {
        let prefix = vec![Seg::Key("rules".into()), Seg::Index(i)];
        if r.name.trim().is_empty() {
            return Err(semantic(
                prefix,
                Problem::new(vec![Seg::Key("name".into())], "is empty: name the rule"),
            ));
        }
        let no_checks = r.windows.is_none()
            && r.freezes.is_none()
            && r.alarms.is_none()
            && r.bake.is_none()
            && r.upstream.is_none()
            && r.approval.is_none()
            && r.concurrency.is_none()
            && r.max_wait.is_none()
            && r.on_error.is_none()
            && r.allow_fail_open.is_none()
            && r.separation_of_duties.is_none();
        if no_checks {
            return Err(semantic(
                prefix,
                Problem::new(
                    Vec::new(),
                    format!(
                        "rule {} adds nothing to the top level: give it checks, or remove it",
                        r.name
                    ),
                ),
            ));
        }
        let rule_policy = Policy {
            version: POLICY_VERSION,
            name: top.name.clone(),
            timezone: r.timezone.or(top.timezone),
            max_wait: r.max_wait.unwrap_or(top.max_wait),
            on_error: r.on_error.unwrap_or(top.on_error),
            windows: r.windows,
            freezes: r.freezes,
            alarms: r.alarms,
            bake: r.bake,
            upstream: r.upstream,
            approval: r.approval,
            concurrency: r.concurrency,
            groups: r.groups,
        };
        validate(&rule_policy).map_err(|p| semantic(prefix.clone(), p))?;
        let allow_fail_open = r.allow_fail_open.unwrap_or_else(|| doc.allow_fail_open.clone());
        let applicable = Applicable {
            rule: None,
            policy: &top,
            allow_fail_open: &doc.allow_fail_open,
            separation_of_duties: doc.separation_of_duties,
        };
        let merged = effective_policy(&applicable, &rule_policy).map_err(|loosenings| {
            let first: &Loosening = &loosenings[0];
            let mut path = prefix.clone();
            path.extend(first.path.iter().cloned());
            PolicyError::new(
                file,
                PolicyErrorKind::Loosens,
                render_path(&path),
                format!("{} (a rule may only add to the baseline's top level)", first.message),
            )
            .at(locate(text, &path, &Target::Value))
        })?;
        let production = is_production_stage(&r.name) || r.matches.stages.iter().any(|s| is_production_stage(s));
        rules.push(BaselineRule {
            separation_of_duties: r.separation_of_duties.unwrap_or(production),
            name: r.name,
            matches: r.matches,
            policy: Policy {
                name: top.name.clone(),
                ..merged
            },
            allow_fail_open,
        });
    }
    Ok(Baseline {
        name: doc.name,
        policy: top,
        allow_fail_open: doc.allow_fail_open,
        separation_of_duties: doc.separation_of_duties,
        rules,
    })
}
