//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

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
        expected: &'static str,
    },
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        let table_name = required("TOLLGATE_TABLE_NAME")?;
        let topic_arn = required("TOLLGATE_TOPIC_ARN")?;
        let retention_days = match get("TOLLGATE_RETENTION_DAYS") {
            None => 400,
            Some(v) => v.trim().parse().ok().filter(|d| *d > 0).ok_or(ConfigError::Invalid {
                name: "TOLLGATE_RETENTION_DAYS",
                value: v,
                expected: "a positive number of days",
            })?,
        };
        let baseline_name = get("TOLLGATE_BASELINE")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| tollgate_domain::policy::DEFAULT_BASELINE_NAME.to_string());
        Ok(Config {
            table_name,
            topic_arn,
            retention_days,
            baseline_name,
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
