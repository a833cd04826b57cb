//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name: a hook that
//! cannot check anything must not start and report Succeeded.

use std::time::Duration;

use tollgate_aws::env::{Env, EnvError};
use tollgate_domain::rollback::hook::{HookChecks, InsufficientData, Probe, ProbeUrl};

/// The function's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: where each hook execution's first status is kept.
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: where a failed hook is announced.
    pub topic_arn: String,
    /// `TOLLGATE_RETENTION_DAYS` (default 400).
    pub retention_days: i64,
    pub checks: HookChecks,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} is not set: the hook function cannot start without it (see docs/hook.md)")]
    Missing(&'static str),
    #[error("environment variable {name} is {value:?}: {expected} (see docs/hook.md)")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "no check is configured: set TOLLGATE_HOOK_ALARMS and/or TOLLGATE_HOOK_PROBE_URL; a hook without checks would \
         let every version take traffic (see docs/hook.md)"
    )]
    NoChecks,
}

impl From<EnvError> for ConfigError {
    fn from(e: EnvError) -> Self {
        match e {
            EnvError::Missing(name) => ConfigError::Missing(name),
            EnvError::Invalid { name, value, expected } => ConfigError::Invalid { name, value, expected },
        }
    }
}

/// The longest budget: CodeDeploy waits up to an hour for a hook, but a Lambda function runs at most 15 minutes.
pub const MAX_BUDGET_SECS: u64 = 14 * 60;

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env::new(get);
        let invalid = |name: &'static str, value: &str, expected: &str| ConfigError::Invalid {
            name,
            value: value.to_string(),
            expected: expected.to_string(),
        };
        let number = |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            let expected = format!("expected a whole number from {min} to {max}");
            Ok(env.parse_where(name, default, &expected, |n| (min..=max).contains(n))?)
        };
        let table_name = env.required("TOLLGATE_TABLE_NAME")?;
        let topic_arn = env.required("TOLLGATE_TOPIC_ARN")?;
        let retention_days = number("TOLLGATE_RETENTION_DAYS", 400, 1, 36_500)? as i64;
        let alarms: Vec<String> = env
            .optional("TOLLGATE_HOOK_ALARMS")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if alarms.len() > 100 {
            return Err(invalid("TOLLGATE_HOOK_ALARMS", "(too many)", "at most 100 alarm names"));
        }
        let insufficient_data = match env
            .optional("TOLLGATE_HOOK_INSUFFICIENT_DATA")
            .as_deref()
            .map(str::trim)
        {
            None | Some("pass") => InsufficientData::Pass,
            Some("fail") => InsufficientData::Fail,
            Some(other) => {
                return Err(invalid(
                    "TOLLGATE_HOOK_INSUFFICIENT_DATA",
                    other,
                    "expected pass or fail",
                ))
            }
        };
        let probe = match env.optional("TOLLGATE_HOOK_PROBE_URL") {
            None => None,
            Some(url) => Some(Probe {
                url: ProbeUrl::parse(url.trim()).map_err(|why| invalid("TOLLGATE_HOOK_PROBE_URL", &url, &why))?,
                expected_status: number("TOLLGATE_HOOK_PROBE_EXPECTED_STATUS", 200, 100, 599)? as u16,
                timeout: Duration::from_secs(number("TOLLGATE_HOOK_PROBE_TIMEOUT_SECONDS", 5, 1, 60)?),
            }),
        };
        if alarms.is_empty() && probe.is_none() {
            return Err(ConfigError::NoChecks);
        }
        let budget = Duration::from_secs(number("TOLLGATE_HOOK_TIME_BUDGET_SECONDS", 240, 5, MAX_BUDGET_SECS)?);
        Ok(Config {
            table_name,
            topic_arn,
            retention_days,
            checks: HookChecks {
                alarms,
                insufficient_data,
                probe,
                budget,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    const BASE: [(&str, &str); 2] = [
        ("TOLLGATE_TABLE_NAME", "t"),
        ("TOLLGATE_TOPIC_ARN", "arn:aws:sns:eu-west-1:1:t"),
    ];

    #[test]
    fn missing_variables_and_a_hook_without_checks_are_refused_by_name() {
        let err = Config::from_lookup(env(&[("TOLLGATE_TOPIC_ARN", "a")])).unwrap_err();
        assert_eq!(err, ConfigError::Missing("TOLLGATE_TABLE_NAME"));
        let err = Config::from_lookup(env(&BASE)).unwrap_err();
        assert_eq!(err, ConfigError::NoChecks);
        assert!(err.to_string().contains("TOLLGATE_HOOK_ALARMS"), "{err}");
    }

    #[test]
    fn checks_are_read_with_their_defaults() {
        let mut vars = BASE.to_vec();
        vars.push(("TOLLGATE_HOOK_ALARMS", "checkout-5xx, checkout-latency-p99,"));
        vars.push(("TOLLGATE_HOOK_PROBE_URL", "http://test-listener.internal:8080/health"));
        let c = Config::from_lookup(env(&vars)).unwrap();
        assert_eq!(
            c.checks.alarms,
            vec!["checkout-5xx".to_string(), "checkout-latency-p99".to_string()]
        );
        assert_eq!(c.checks.insufficient_data, InsufficientData::Pass);
        let probe = c.checks.probe.unwrap();
        assert_eq!(probe.expected_status, 200);
        assert_eq!(probe.timeout, Duration::from_secs(5));
        assert_eq!(c.checks.budget, Duration::from_secs(240));
        assert_eq!(c.retention_days, 400);
    }

    #[test]
    fn nonsense_values_are_named() {
        for (name, value) in [
            ("TOLLGATE_HOOK_PROBE_URL", "https://x/health"),
            ("TOLLGATE_HOOK_PROBE_EXPECTED_STATUS", "abc"),
            ("TOLLGATE_HOOK_TIME_BUDGET_SECONDS", "3600"),
            ("TOLLGATE_HOOK_INSUFFICIENT_DATA", "maybe"),
        ] {
            let mut vars = BASE.to_vec();
            vars.push(("TOLLGATE_HOOK_ALARMS", "a"));
            if name != "TOLLGATE_HOOK_PROBE_URL" {
                vars.push(("TOLLGATE_HOOK_PROBE_URL", "http://x/"));
            }
            vars.push((name, value));
            let err = Config::from_lookup(env(&vars)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
