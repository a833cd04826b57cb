//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: approvals are read there, the audit trail is written there.
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: where risk reports are announced.
    pub topic_arn: String,
    /// `TOLLGATE_RETENTION_DAYS` (default 400).
    pub retention_days: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "environment variable {0} is not set: the changeset function cannot start without it (see docs/changeset.md)"
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

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(get);
        Ok(Config {
            table_name: env.required("TOLLGATE_TABLE_NAME")?,
            topic_arn: env.required("TOLLGATE_TOPIC_ARN")?,
            retention_days: env.retention_days()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_variables_are_named() {
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TOPIC_ARN").then(|| "arn".to_string())).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TABLE_NAME"));
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TABLE_NAME").then(|| "t".to_string())).unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_TOPIC_ARN"), "{err}");
        let c = Config::from_lookup(|k| match k {
            "TOLLGATE_TABLE_NAME" => Some("t".into()),
            "TOLLGATE_TOPIC_ARN" => Some("arn".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.retention_days, 400);
    }
}
