//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

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
        Ok(Config {
            table_name,
            topic_arn,
            retention_days,
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
