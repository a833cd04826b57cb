//! Configuration, read once at cold start. A missing or unusable variable fails the init with its name.

use tollgate_aws::env::{Env, EnvError};

/// The function's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TOLLGATE_TABLE_NAME`: the DynamoDB table (identities, replay digests, approvals, manual approvals, audit).
    pub table_name: String,
    /// `TOLLGATE_TOPIC_ARN`: the topic enriched approval requests are published on.
    pub topic_arn: String,
    /// `TOLLGATE_SIGNING_SECRET_ARN`: the Secrets Manager secret chat requests are signed with.
    pub signing_secret_arn: String,
    /// `TOLLGATE_ACCOUNT`: the account of a pipeline a chat command names without one.
    pub account: String,
    /// `AWS_REGION` (set by Lambda): the region of a pipeline a chat command names without one.
    pub region: String,
    /// `TOLLGATE_CHAT_WORKSPACE`: the chat workspace (team id) the endpoint serves; requests for any other are refused.
    pub workspace: String,
    /// `TOLLGATE_RETENTION_DAYS` (default 400).
    pub retention_days: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "environment variable {0} is not set: the approval function cannot start without it (see docs/approvals.md)"
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
        let table_name = env.required("TOLLGATE_TABLE_NAME")?;
        let topic_arn = env.required("TOLLGATE_TOPIC_ARN")?;
        let signing_secret_arn = env.required("TOLLGATE_SIGNING_SECRET_ARN")?;
        let account = env.required("TOLLGATE_ACCOUNT")?;
        let region = env.required("AWS_REGION")?;
        let workspace = env.required("TOLLGATE_CHAT_WORKSPACE")?;
        if tollgate_domain::gate::approval::ChatUser::new(&workspace, "U").is_err() {
            return Err(ConfigError::Invalid {
                name: "TOLLGATE_CHAT_WORKSPACE",
                value: workspace,
                expected: "a chat workspace (team) id: letters, digits, - _ . only, 1 to 64".into(),
            });
        }
        let retention_days = env.retention_days()?;
        Ok(Config {
            table_name,
            topic_arn,
            signing_secret_arn,
            account,
            region,
            workspace,
            retention_days,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(k: &str) -> Option<String> {
        match k {
            "TOLLGATE_TABLE_NAME" => Some("t".into()),
            "TOLLGATE_TOPIC_ARN" => Some("arn:aws:sns:eu-west-1:111122223333:tollgate".into()),
            "TOLLGATE_SIGNING_SECRET_ARN" => Some("arn:aws:secretsmanager:eu-west-1:111122223333:secret:s".into()),
            "TOLLGATE_ACCOUNT" => Some("111122223333".into()),
            "AWS_REGION" => Some("eu-west-1".into()),
            "TOLLGATE_CHAT_WORKSPACE" => Some("T0001".into()),
            _ => None,
        }
    }

    #[test]
    fn every_missing_variable_is_named() {
        for name in [
            "TOLLGATE_TABLE_NAME",
            "TOLLGATE_TOPIC_ARN",
            "TOLLGATE_SIGNING_SECRET_ARN",
            "TOLLGATE_ACCOUNT",
            "AWS_REGION",
            "TOLLGATE_CHAT_WORKSPACE",
        ] {
            let err = Config::from_lookup(|k| if k == name { None } else { base(k) }).unwrap_err();
            assert_eq!(err, ConfigError::Missing(name));
            assert!(err.to_string().contains(name), "{err}");
        }
        let c = Config::from_lookup(base).unwrap();
        assert_eq!(c.retention_days, 400);
    }
}
