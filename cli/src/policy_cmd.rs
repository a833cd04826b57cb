//! `tollgate policy validate --baseline`, `tollgate policy effective` and `tollgate policy publish-baseline`: a
//! pipeline's policy checked against, and merged with, the organisation baseline (docs/policy.md, "The organisation
//! baseline"), and the baseline written to the control plane.

use std::collections::BTreeMap;
use std::path::Path;

use tollgate_domain::gate::policy::{
    effective, parse_baseline, parse_policy, Applicable, Baseline, Policy, PolicyError, PolicyErrorKind, StageRef,
    MAX_POLICY_BYTES,
};

/// Which stage a policy is for, as far as the command line says: rules are matched on what is given.
#[derive(Debug, Clone, Default)]
pub struct StageArgs {
    pub stage: Option<String>,
    pub pipeline: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// Parses `KEY=VALUE` (a `--tag`).
pub fn parse_tag(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// A file's text, or an error naming it as the policy parser does.
pub fn read_text(path: &Path) -> Result<String, PolicyError> {
    let name = path.display().to_string();
    let io = |m: String| PolicyError::new(&name, PolicyErrorKind::Io, None, m);
    let size = std::fs::metadata(path)
        .map_err(|e| io(format!("cannot read it: {e}")))?
        .len();
    if size > MAX_POLICY_BYTES as u64 {
        return Err(io(format!(
            "it is {size} bytes, more than the {MAX_POLICY_BYTES}-byte limit"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| io(format!("cannot read it: {e}")))?;
    String::from_utf8(bytes).map_err(|_| io("cannot read it: it is not UTF-8 text".into()))
}

/// Reads and validates the baseline file.
pub fn read_baseline(path: &Path) -> Result<Baseline, PolicyError> {
    parse_baseline(&path.display().to_string(), &read_text(path)?)
}

/// The classes of the baseline that apply to `stage`. With a stage (and pipeline) given, the one the gate would
/// apply; without, the top level and every rule, since the policy may be used in any stage.
pub fn classes<'a>(baseline: &'a Baseline, stage: &StageArgs) -> Result<Vec<Applicable<'a>>, String> {
    match &stage.stage {
        None => Ok(baseline.all()),
        Some(name) => {
            let s = StageRef {
                pipeline: stage.pipeline.as_deref().unwrap_or(""),
                stage: name,
                tags: Some(&stage.tags),
            };
            Ok(vec![baseline.for_stage(&s)?])
        }
    }
}

/// One file's result: `ok` lines, or every error (a policy error, or each loosening of each class).
pub fn validate_one(file: &Path, baseline: Option<&Baseline>, stage: &StageArgs) -> Result<String, Vec<String>> {
    let name = file.display().to_string();
    let text = read_text(file).map_err(|e| vec![e.to_string()])?;
    let policy = parse_policy(&name, &text).map_err(|e| vec![e.to_string()])?;
    let Some(baseline) = baseline else {
        return Ok(format!("{name}: ok (policy {})", policy.name));
    };
    let mut errors = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let classes = classes(baseline, stage).map_err(|e| vec![format!("{name}: {e}")])?;
    let described: Vec<String> = classes.iter().map(Applicable::describe).collect();
    for class in &classes {
        if let Err(list) = effective(&name, &text, class, &policy) {
            for e in list {
                let line = e.to_string();
                if seen.insert(line.clone()) {
                    errors.push(line);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(format!(
            "{name}: ok (policy {}; tightens {})",
            policy.name,
            described.join("; ")
        ))
    } else {
        Err(errors)
    }
}

/// The effective policy of `file` for `stage`, as YAML in the policy format, with a comment saying what it merges.
pub fn effective_yaml(baseline: &Baseline, file: &Path, stage: &StageArgs) -> Result<String, Vec<String>> {
    let name = file.display().to_string();
    let text = read_text(file).map_err(|e| vec![e.to_string()])?;
    let policy = parse_policy(&name, &text).map_err(|e| vec![e.to_string()])?;
    let class = match &stage.stage {
        None => baseline.top(),
        Some(_) => classes(baseline, stage).map_err(|e| vec![e])?.remove(0),
    };
    let merged = effective(&name, &text, &class, &policy)
        .map_err(|list| list.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let yaml = to_yaml(&merged).map_err(|e| vec![e])?;
    let mut out = format!("# the effective policy: {name} merged with {}", class.describe());
    if let Some(s) = &stage.stage {
        out.push_str(&format!(" (stage {s})"));
    }
    out.push('\n');
    if stage.stage.is_none() && !baseline.rules.is_empty() {
        let names: Vec<&str> = baseline.rules.iter().map(|r| r.name.as_str()).collect();
        out.push_str(&format!(
            "# the baseline's rules ({}) apply by stage and are not merged here: pass --stage\n",
            names.join(", ")
        ));
    }
    out.push_str(&yaml);
    Ok(out)
}

/// A policy as YAML that `parse_policy` reads back as the same policy.
pub fn to_yaml(policy: &Policy) -> Result<String, String> {
    let yaml = serde_yaml::to_string(policy).map_err(|e| format!("cannot write the policy as YAML: {e}"))?;
    match parse_policy("effective policy", &yaml) {
        Ok(again) if &again == policy => Ok(yaml),
        Ok(_) => Err("the effective policy does not read back as itself (a bug); not printed".into()),
        Err(e) => Err(format!(
            "the effective policy does not read back ({e}) (a bug); not printed"
        )),
    }
}

/// Ends the command with this exit status, having printed what it had to say (`gate explain`'s 1 for FAIL and 2 for
/// WAIT are answers, not errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exit status {0}")]
pub struct ExitWith(pub u8);

/// `gate explain`'s exit status: 0 PASS, 1 FAIL, 2 WAIT.
pub fn outcome_status(outcome: &tollgate_domain::gate::policy::Outcome) -> u8 {
    use tollgate_domain::gate::policy::Outcome;
    match outcome {
        Outcome::Pass => 0,
        Outcome::Fail => 1,
        Outcome::Wait { .. } => 2,
    }
}
