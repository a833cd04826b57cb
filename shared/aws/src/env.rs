//! The one reader of the functions' environment variables, read once at cold start.
//!
//! Every function's `config.rs` builds its own `Config` with an [`Env`]: the same rules everywhere (a variable that
//! is unset or blank is missing, numbers are trimmed, a value that does not parse is refused with its name and what
//! was expected), and a function's own `ConfigError` converts from [`EnvError`] to add where to read more.

use std::str::FromStr;

/// A variable that is missing or unusable, by name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {name} is {value:?}, expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: String,
    },
}

impl EnvError {
    pub fn invalid(name: &'static str, value: impl Into<String>, expected: impl Into<String>) -> EnvError {
        EnvError::Invalid {
            name,
            value: value.into(),
            expected: expected.into(),
        }
    }
}

/// Environment variables through a lookup: the process environment at cold start, a closure in tests.
pub struct Env<G> {
    get: G,
}

/// The process environment.
pub fn process() -> Env<fn(&str) -> Option<String>> {
    Env::new(|name| std::env::var(name).ok())
}

impl<G: Fn(&str) -> Option<String>> Env<G> {
    pub fn new(get: G) -> Self {
        Env { get }
    }

    /// The value as set, blank or not.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.get)(name)
    }

    /// The value, when it is set and not blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.trim().is_empty())
    }

    /// The value; unset or blank is [`EnvError::Missing`].
    pub fn required(&self, name: &'static str) -> Result<String, EnvError> {
        self.optional(name).ok_or(EnvError::Missing(name))
    }

    /// The trimmed value parsed, or `default` when unset or blank; a value that does not parse is refused.
    pub fn parse_or<T: FromStr>(&self, name: &'static str, default: T, expected: &str) -> Result<T, EnvError> {
        self.parse_where(name, default, expected, |_| true)
    }

    /// As [`Env::parse_or`], and the parsed value must also pass `valid` (a range, a sign).
    pub fn parse_where<T: FromStr>(
        &self,
        name: &'static str,
        default: T,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, EnvError> {
        match self.optional(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<T>() {
                Ok(parsed) if valid(&parsed) => Ok(parsed),
                _ => Err(EnvError::invalid(name, v, expected)),
            },
        }
    }

    /// `TOLLGATE_RETENTION_DAYS`, the days records are kept before DynamoDB's TTL removes them: 400 by default.
    pub fn retention_days(&self) -> Result<i64, EnvError> {
        self.parse_where(
            "TOLLGATE_RETENTION_DAYS",
            400,
            "a positive number of days (at most 36500)",
            |d| (1..=36_500).contains(d),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env<impl Fn(&str) -> Option<String>> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Env::new(move |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn a_missing_or_blank_required_variable_is_named() {
        let e = env(&[("BLANK", "  "), ("SET", "x")]);
        assert_eq!(e.required("UNSET"), Err(EnvError::Missing("UNSET")));
        assert_eq!(e.required("BLANK"), Err(EnvError::Missing("BLANK")));
        assert_eq!(e.required("SET").as_deref(), Ok("x"));
        assert!(e.required("UNSET").unwrap_err().to_string().contains("UNSET"));
        assert_eq!(e.optional("BLANK"), None);
        assert_eq!(e.raw("BLANK").as_deref(), Some("  "));
    }

    #[test]
    fn numbers_default_when_unset_and_are_refused_with_name_value_and_expectation() {
        let e = env(&[("N", " 28 "), ("BAD", "a week"), ("ZERO", "0")]);
        assert_eq!(e.parse_or("N", 7u32, "days"), Ok(28));
        assert_eq!(e.parse_or("UNSET", 7u32, "days"), Ok(7));
        let err = e.parse_or("BAD", 7u32, "a number of days").unwrap_err();
        assert_eq!(err, EnvError::invalid("BAD", "a week", "a number of days"));
        let text = err.to_string();
        assert!(
            text.contains("BAD") && text.contains("a week") && text.contains("a number of days"),
            "{text}"
        );
        assert!(matches!(
            e.parse_where("ZERO", 1i64, "positive", |n| *n > 0),
            Err(EnvError::Invalid { name: "ZERO", .. })
        ));
    }

    #[test]
    fn retention_defaults_to_400_days_and_refuses_nonsense() {
        assert_eq!(env(&[]).retention_days(), Ok(400));
        assert_eq!(env(&[("TOLLGATE_RETENTION_DAYS", "30")]).retention_days(), Ok(30));
        for bad in ["-3", "0", "forever", "100000"] {
            let err = env(&[("TOLLGATE_RETENTION_DAYS", bad)]).retention_days().unwrap_err();
            assert!(err.to_string().contains("TOLLGATE_RETENTION_DAYS"), "{err}");
        }
    }
}
