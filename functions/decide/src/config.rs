//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};
use tollgate_domain::gate::policy::ArnPattern;

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: the DynamoDB table (decisions, effective policies, identities, audit).
    pub table_name: String,
    /// `TOLLGATE_ADMINISTRATORS`: the platform team's principals (IAM ARN patterns, comma-separated), who alone may
    /// freeze, unfreeze and link chat identities.
    pub administrators: Vec<ArnPattern>,
    /// `TOLLGATE_RETENTION_DAYS` (default 400).
    pub retention_days: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "environment variable {0} is not set: the decide function cannot start without it (see docs/approvals.md)"
    )]
    Missing(&'static str),
    #[error("environment variable {name} is {value:?}, expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
}

impl From<EnvError> for ConfigError {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::Missing(name) => ConfigError::Missing(name),
            EnvError::Invalid { name, value, expected } => ConfigError::Invalid { name, value, expected },
        }
    }
}

/// Reads `a, b, c` as ARN patterns; at least one.
pub fn parse_administrators(text: &str) -> Result<Vec<ArnPattern>, String> {
    let patterns = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(ArnPattern::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if patterns.is_empty() {
        return Err("no administrator: give at least one IAM ARN pattern".into());
    }
    Ok(patterns)
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(get);
        let table_name = env.required("TOLLGATE_TABLE_NAME")?;
        let text = env.required("TOLLGATE_ADMINISTRATORS")?;
        let administrators = parse_administrators(&text).map_err(|e| {
            EnvError::invalid(
                "TOLLGATE_ADMINISTRATORS",
                text.clone(),
                format!("comma-separated IAM ARN patterns ({e})"),
            )
        })?;
        Ok(Config {
            table_name,
            administrators,
            retention_days: env.retention_days()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(k: &str) -> Option<String> {
        match k {
            "TOLLGATE_TABLE_NAME" => Some("t".into()),
            "TOLLGATE_ADMINISTRATORS" => Some(
                "arn:aws:sts::111122223333:assumed-role/PlatformAdmin/*, arn:aws:iam::111122223333:role/PlatformAdmin"
                    .into(),
            ),
            _ => None,
        }
    }

    #[test]
    fn every_missing_variable_is_named_and_administrators_are_patterns() {
        for name in ["TOLLGATE_TABLE_NAME", "TOLLGATE_ADMINISTRATORS"] {
            let err = Config::from_lookup(|k| if k == name { None } else { base(k) }).unwrap_err();
            assert_eq!(err, ConfigError::Missing(name));
        }
        let c = Config::from_lookup(base).unwrap();
        assert_eq!((c.administrators.len(), c.retention_days), (2, 400));
        for bad in [" , ", "PlatformAdmin"] {
            let err = Config::from_lookup(|k| {
                if k == "TOLLGATE_ADMINISTRATORS" {
                    Some(bad.into())
                } else {
                    base(k)
                }
            })
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::Invalid {
                        name: "TOLLGATE_ADMINISTRATORS",
                        ..
                    }
                ),
                "{bad:?}: {err}"
            );
        }
    }
}
