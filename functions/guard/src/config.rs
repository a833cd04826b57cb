//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};

use chrono::Duration;
use tollgate_domain::rollback::guard::{GuardPolicy, Mode};

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: the DynamoDB table (deployment index, rollback records, audit trail).
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: the SNS topic rollbacks are announced on.
    pub topic_arn: String,
    /// `TOLLGATE_RETENTION_DAYS` (default 400): how long rollback records are kept.
    pub retention_days: i64,
    /// `TOLLGATE_GUARD_DEPLOYMENTS`, `TOLLGATE_GUARD_STAGES`, `TOLLGATE_GUARD_STACKS` (`act` or `notify`, default
    /// `act`), `TOLLGATE_GUARD_WINDOW_MINUTES` (default 30), `TOLLGATE_GUARD_MAX_ALARM_AGE_MINUTES` (default 15),
    /// `TOLLGATE_GUARD_LEASE_SECONDS` (default 300).
    pub policy: GuardPolicy,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set: the guard function cannot start without it (see docs/guard.md)")]
    Missing(&'static str),
    #[error("environment variable {name} is {value:?}, expected {expected} (see docs/guard.md)")]
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
        let number = |name: &'static str, default: i64, expected: &str| {
            env.parse_where(name, default, expected, |n| *n > 0 && *n <= 100_000)
        };
        let mode = |name: &'static str| match env.optional(name) {
            None => Ok(Mode::Act),
            Some(v) => Mode::parse(&v).ok_or_else(|| EnvError::invalid(name, v, "`act` or `notify`")),
        };
        let table_name = env.required("TOLLGATE_TABLE_NAME")?;
        let topic_arn = env.required("TOLLGATE_TOPIC_ARN")?;
        let retention_days = env.retention_days()?;
        let policy = GuardPolicy {
            deployments: mode("TOLLGATE_GUARD_DEPLOYMENTS")?,
            stages: mode("TOLLGATE_GUARD_STAGES")?,
            stacks: mode("TOLLGATE_GUARD_STACKS")?,
            window: Duration::minutes(number(
                "TOLLGATE_GUARD_WINDOW_MINUTES",
                30,
                "a positive number of minutes",
            )?),
            max_alarm_age: Duration::minutes(number(
                "TOLLGATE_GUARD_MAX_ALARM_AGE_MINUTES",
                15,
                "a positive number of minutes",
            )?),
            lease: Duration::seconds(number(
                "TOLLGATE_GUARD_LEASE_SECONDS",
                300,
                "a positive number of seconds",
            )?),
        };
        Ok(Config {
            table_name,
            topic_arn,
            retention_days,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(k: &str) -> Option<String> {
        match k {
            "TOLLGATE_TABLE_NAME" => Some("t".into()),
            "TOLLGATE_TOPIC_ARN" => Some("arn".into()),
            _ => None,
        }
    }

    #[test]
    fn missing_variables_are_named() {
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TOPIC_ARN").then(|| "arn".to_string())).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TABLE_NAME"));
        assert!(err.to_string().contains("TOLLGATE_TABLE_NAME"), "{err}");
    }

    #[test]
    fn defaults_act_everywhere_with_a_thirty_minute_window() {
        let config = Config::from_lookup(base).unwrap();
        assert_eq!(config.policy, GuardPolicy::default());
        assert_eq!(config.policy.window, Duration::minutes(30));
        assert_eq!(config.retention_days, 400);
    }

    #[test]
    fn modes_and_durations_are_read_and_nonsense_is_refused() {
        let config = Config::from_lookup(|k| match k {
            "TOLLGATE_GUARD_STACKS" => Some("notify".into()),
            "TOLLGATE_GUARD_WINDOW_MINUTES" => Some("45".into()),
            _ => base(k),
        })
        .unwrap();
        assert_eq!(config.policy.stacks, Mode::Notify);
        assert_eq!(config.policy.deployments, Mode::Act);
        assert_eq!(config.policy.window, Duration::minutes(45));
        let err = Config::from_lookup(|k| match k {
            "TOLLGATE_GUARD_DEPLOYMENTS" => Some("rollback".into()),
            _ => base(k),
        })
        .unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_GUARD_DEPLOYMENTS"), "{err}");
        let err = Config::from_lookup(|k| match k {
            "TOLLGATE_GUARD_WINDOW_MINUTES" => Some("0".into()),
            _ => base(k),
        })
        .unwrap_err();
        assert!(err.to_string().contains("TOLLGATE_GUARD_WINDOW_MINUTES"), "{err}");
    }
}
