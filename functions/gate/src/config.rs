//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: the DynamoDB table (timelines read, decisions and approvals).
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: the SNS topic blocked gates are announced on.
    pub topic_arn: String,
    /// `TOLLGATE_RETENTION_DAYS` (default 400): how long decisions are kept before DynamoDB's TTL removes them.
    pub retention_days: i64,
    /// `TOLLGATE_BASELINE` (default `default`): the organisation baseline applied to every policy (table item
    /// `BASELINE#<name>`); with none published, the pipeline's policy alone.
    pub baseline_name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set: the gate function cannot start without it (see infra/README.md)")]
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
            baseline_name: env
                .optional("TOLLGATE_BASELINE")
                .unwrap_or_else(|| tollgate_domain::gate::policy::DEFAULT_BASELINE_NAME.to_string()),
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
        assert!(err.to_string().contains("TOLLGATE_TABLE_NAME"), "{err}");
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TABLE_NAME").then(|| "t".to_string())).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TOPIC_ARN"));
        assert!(err.to_string().contains("TOLLGATE_TOPIC_ARN"), "{err}");
    }

    #[test]
    fn retention_defaults_and_refuses_nonsense() {
        let base = |k: &str| match k {
            "TOLLGATE_TABLE_NAME" => Some("t".to_string()),
            "TOLLGATE_TOPIC_ARN" => Some("arn".to_string()),
            _ => None,
        };
        assert_eq!(Config::from_lookup(base).unwrap().retention_days, 400);
        let err = Config::from_lookup(|k| {
            if k == "TOLLGATE_RETENTION_DAYS" {
                Some("0".into())
            } else {
                base(k)
            }
        })
        .unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_RETENTION_DAYS"), "{err}");
    }
}
