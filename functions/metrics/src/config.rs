//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};

use chrono::Weekday;

use crate::handler::Settings;

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: the DynamoDB table.
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: the SNS topic the weekly digest is published to.
    pub topic_arn: String,
    /// `TOLLGATE_METRICS_DAYS` (default 7): the period is the last this many whole UTC days before the invocation.
    pub days: u32,
    /// `TOLLGATE_TEAM_TAG` (default `team`): the pipeline tag that names its team.
    pub team_tag: String,
    /// `TOLLGATE_DIGEST_WEEKDAY` (default `Mon`): the UTC weekday on which the weekly digest is sent.
    pub digest_weekday: Weekday,
}

/// The longest period: a year, so the daily run's reads (one query per day, plus 30 days before) stay bounded.
pub const MAX_DAYS: u32 = 366;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set: the metrics function cannot start without it (see infra/README.md)")]
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
        let table_name = env.required("TOLLGATE_TABLE_NAME")?;
        let topic_arn = env.required("TOLLGATE_TOPIC_ARN")?;
        let days = env.parse_where(
            "TOLLGATE_METRICS_DAYS",
            7,
            "a whole number of days from 1 to 366",
            |d: &u32| (1..=MAX_DAYS).contains(d),
        )?;
        // Set but blank is a mistake here, not a default: a blank tag key would name no team.
        let team_tag = match env.raw("TOLLGATE_TEAM_TAG") {
            None => tollgate_aws::tags::DEFAULT_TEAM_TAG.to_string(),
            Some(v) if v.trim().is_empty() => {
                return Err(EnvError::invalid("TOLLGATE_TEAM_TAG", v, "a tag key, e.g. team").into())
            }
            Some(v) => v.trim().to_string(),
        };
        let digest_weekday = env.parse_or(
            "TOLLGATE_DIGEST_WEEKDAY",
            Weekday::Mon,
            "a weekday in English, e.g. Mon or Monday",
        )?;
        Ok(Config {
            table_name,
            topic_arn,
            days,
            team_tag,
            digest_weekday,
        })
    }

    /// What the handler needs of the configuration.
    pub fn settings(&self) -> Settings {
        Settings {
            days: self.days,
            digest_weekday: self.digest_weekday,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(k: &str) -> Option<String> {
        match k {
            "TOLLGATE_TABLE_NAME" => Some("t".to_string()),
            "TOLLGATE_TOPIC_ARN" => Some("arn".to_string()),
            _ => None,
        }
    }

    fn with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<String> {
        move |k| if k == name { Some(value.to_string()) } else { base(k) }
    }

    #[test]
    fn missing_variables_are_named() {
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TOPIC_ARN").then(|| "arn".to_string())).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TABLE_NAME"));
        assert!(err.to_string().contains("TOLLGATE_TABLE_NAME"), "{err}");
        let err = Config::from_lookup(|k| (k == "TOLLGATE_TABLE_NAME").then(|| "t".to_string())).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TOPIC_ARN"));
    }

    #[test]
    fn defaults_are_a_week_the_team_tag_and_monday() {
        let config = Config::from_lookup(base).unwrap();
        assert_eq!(
            config,
            Config {
                table_name: "t".into(),
                topic_arn: "arn".into(),
                days: 7,
                team_tag: "team".into(),
                digest_weekday: Weekday::Mon,
            }
        );
    }

    #[test]
    fn settings_are_read_and_nonsense_is_refused_with_the_variable_name() {
        assert_eq!(
            Config::from_lookup(with("TOLLGATE_METRICS_DAYS", "28")).unwrap().days,
            28
        );
        assert_eq!(
            Config::from_lookup(with("TOLLGATE_DIGEST_WEEKDAY", "friday"))
                .unwrap()
                .digest_weekday,
            Weekday::Fri
        );
        assert_eq!(
            Config::from_lookup(with("TOLLGATE_TEAM_TAG", "owner"))
                .unwrap()
                .team_tag,
            "owner"
        );
        for (name, value) in [
            ("TOLLGATE_METRICS_DAYS", "0"),
            ("TOLLGATE_METRICS_DAYS", "a week"),
            ("TOLLGATE_METRICS_DAYS", "400"),
            ("TOLLGATE_DIGEST_WEEKDAY", "Lundi"),
            ("TOLLGATE_TEAM_TAG", " "),
        ] {
            let err = Config::from_lookup(with(name, value)).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { name: n, .. } if *n == name),
                "{err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
