//! The chat approval endpoint's authentication: HMAC-SHA256 request signatures, the signing secret from Secrets
//! Manager, and the two DynamoDB adapters the endpoint needs, [`DynamoDbReplayGuard`] (signatures already seen) and
//! [`DynamoDbChatIdentities`] (chat users linked to IAM principals). See docs/approvals.md.
//!
//! The scheme is the one chat platforms sign requests with: a timestamp header (Unix seconds) and a signature header
//! `v0=<hex hmac_sha256(secret, "v0:" + timestamp + ":" + raw body)>`. A request is refused when either header is
//! missing (unsigned), the signature does not match (compared in constant time), or the timestamp is more than five
//! minutes old or ahead (expired); a signature seen before is refused by the replay guard (replayed).

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tollgate_domain::gate::approval::{ChatIdentities, ChatUser, LinkedIdentity, ReplayGuard, SIGNATURE_WINDOW_SECS};
use tollgate_domain::record::ports::StoreError;

type HmacSha256 = Hmac<Sha256>;
type Item = HashMap<String, AttributeValue>;

/// The header with the request's Unix time, in seconds (lower case: function URLs lower-case header names).
pub const TIMESTAMP_HEADERS: [&str; 2] = ["x-tollgate-request-timestamp", "x-slack-request-timestamp"];
/// The header with `v0=<hex signature>`.
pub const SIGNATURE_HEADERS: [&str; 2] = ["x-tollgate-signature", "x-slack-signature"];

/// The shared signing secret. `Debug` shows nothing of it; it is never logged.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<SigningSecret, SecretError> {
        let secret = secret.into();
        // A short secret can be guessed offline from one signed request.
        if secret.len() < 16 {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(SigningSecret(secret))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the signing secret is {0} bytes long; use at least 16 random bytes (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("Secrets Manager GetSecretValue of {secret_id} failed: {message}; check the secret exists and the function's role may read it")]
    Read { secret_id: String, message: String },
    #[error("the secret {0} has no SecretString; store the signing secret as a string")]
    NotAString(String),
}

/// Reads the signing secret once (at cold start). The value is never logged or put in an error.
pub async fn load_signing_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<SigningSecret, SecretError> {
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| SecretError::Read {
            secret_id: secret_id.to_string(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| SecretError::NotAString(secret_id.to_string()))?;
    SigningSecret::new(text.trim().as_bytes().to_vec())
}

/// Why a request's signature is refused. The messages name the header, never the secret or the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request is not signed: it has no {0} header")]
    Unsigned(&'static str),
    #[error("the request's signature is malformed: {0}")]
    Malformed(String),
    #[error("the request is too old: signed {0}s ago (at most {SIGNATURE_WINDOW_SECS}s)")]
    Expired(i64),
    #[error("the request is signed {0}s in the future (at most {SIGNATURE_WINDOW_SECS}s): check the sender's clock")]
    Future(i64),
    #[error("the request's signature does not match")]
    Mismatch,
    #[error("the request was sent before: its signature was already used")]
    Replayed,
}

impl SignatureError {
    /// What the caller is told: one sentence saying what was refused, with no clock, age or expected value in it
    /// (the full reason goes to the log only).
    pub fn public_text(&self) -> &'static str {
        match self {
            SignatureError::Unsigned(_) => "Refused: the request is not signed.",
            SignatureError::Malformed(_) | SignatureError::Mismatch => "Refused: the request's signature is not valid.",
            SignatureError::Expired(_) | SignatureError::Future(_) => {
                "Refused: the request's timestamp is outside the accepted window."
            }
            SignatureError::Replayed => "Refused: the request was already used once.",
        }
    }
}

/// The signature of `body` at `timestamp`: `v0=<hex>` (what a sender puts in the signature header).
pub fn sign(secret: &SigningSecret, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn mac(secret: &SigningSecret) -> HmacSha256 {
    // HMAC takes a key of any length; new_from_slice cannot fail for it.
    <HmacSha256 as Mac>::new_from_slice(&secret.0).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// Checks a request's signature. `header` looks a header up by lower-case name. Ok gives the hex SHA-256 of the
/// signature's decoded bytes: the request's name for the replay guard, the same whatever the hex's case.
pub fn verify(
    secret: &SigningSecret,
    header: impl Fn(&str) -> Option<String>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<String, SignatureError> {
    let first = |names: [&str; 2]| names.iter().find_map(|n| header(n));
    let timestamp = first(TIMESTAMP_HEADERS).ok_or(SignatureError::Unsigned(TIMESTAMP_HEADERS[0]))?;
    let signature = first(SIGNATURE_HEADERS).ok_or(SignatureError::Unsigned(SIGNATURE_HEADERS[0]))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed(format!("the timestamp {timestamp:?} is not Unix seconds")))?;
    let age = now.timestamp() - ts;
    if age > SIGNATURE_WINDOW_SECS {
        return Err(SignatureError::Expired(age));
    }
    if -age > SIGNATURE_WINDOW_SECS {
        return Err(SignatureError::Future(-age));
    }
    let given = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| SignatureError::Malformed("expected v0=<hex HMAC-SHA256>".into()))?;
    let mut mac = mac(secret);
    mac.update(format!("v0:{ts}:").as_bytes());
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)?;
    // The digest of the decoded bytes, not of the header's text: `v0=ABC…` and `v0=abc…` are one signature, and
    // the replay guard must see them as one.
    Ok(hex::encode(Sha256::digest(&given)))
}

// ---------------------------------------------------------------------------------------------------------------
// DynamoDB adapters.

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn store_error<E>(what: &str, table: &str, err: &SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = format!("DynamoDB {what} on table {table} failed: {}", DisplayErrorContext(err));
    match err {
        SdkError::ServiceError(service) => {
            let code = err.code().unwrap_or_default();
            if code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || service.raw().status().is_server_error()
            {
                StoreError::Transient(text)
            } else {
                StoreError::Permanent(text)
            }
        }
        _ => StoreError::Transient(text),
    }
}

/// `CHATSIG#<hex SHA-256 of the signature>`, `sk = SEEN`, with a `ttl` past the signature window.
#[derive(Debug, Clone)]
pub struct DynamoDbReplayGuard {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbReplayGuard {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoDbReplayGuard {
            client,
            table: table.into(),
        }
    }
}

#[async_trait]
impl ReplayGuard for DynamoDbReplayGuard {
    #[tracing::instrument(skip(self))]
    async fn first_sighting(&self, signature_digest: &str, keep_until: DateTime<Utc>) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("CHATSIG#{signature_digest}")))
            .item("sk", s("SEEN"))
            .item("kind", s("chat_signature"))
            .item("ttl", AttributeValue::N(keep_until.timestamp().to_string()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error("PutItem (replay guard)", &self.table, &e)),
        }
    }
}

/// `IDENTITY#chat:<workspace>:<user>`, `sk = LINK`: the principal ARN and groups a chat user decides as.
#[derive(Debug, Clone)]
pub struct DynamoDbChatIdentities {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbChatIdentities {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoDbChatIdentities {
            client,
            table: table.into(),
        }
    }
}

/// `IDENTITY#chat:<workspace>:<user>`.
pub fn identity_pk(user: &ChatUser) -> String {
    format!("IDENTITY#{}", user.id())
}

fn identity_of(item: &Item) -> Result<LinkedIdentity, StoreError> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Permanent(format!("identity item: attribute {name} is missing")))
    };
    let chat_user =
        ChatUser::parse(&text("chat_user")?).map_err(|e| StoreError::Permanent(format!("identity item: {e}")))?;
    let at = DateTime::parse_from_rfc3339(&text("at")?)
        .map_err(|e| StoreError::Permanent(format!("identity item: attribute at: {e}")))?
        .with_timezone(&Utc);
    Ok(LinkedIdentity {
        chat_user,
        principal_arn: text("principal_arn")?,
        linked_by: text("linked_by")?,
        at,
    })
}

#[async_trait]
impl ChatIdentities for DynamoDbChatIdentities {
    #[tracing::instrument(skip(self))]
    async fn identity(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(identity_pk(user)))
            .key("sk", s("LINK"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (identity)", &self.table, &e))?;
        out.item().map(identity_of).transpose()
    }

    #[tracing::instrument(skip(self))]
    async fn link(&self, identity: &LinkedIdentity) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(identity_pk(&identity.chat_user)))
            .item("sk", s("LINK"))
            .item("kind", s("chat_identity"))
            .item("chat_user", s(identity.chat_user.id()))
            .item("principal_arn", s(&identity.principal_arn))
            .item("linked_by", s(&identity.linked_by))
            .item(
                "at",
                s(identity.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            )
            .send()
            .await
            .map_err(|e| store_error("PutItem (identity)", &self.table, &e))?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    async fn unlink(&self, user: &ChatUser) -> Result<Option<LinkedIdentity>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(identity_pk(user)))
            .key("sk", s("LINK"))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DeleteItem (identity)", &self.table, &e))?;
        out.attributes().map(identity_of).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SigningSecret {
        SigningSecret::new(b"8f742231b10e8888abcd99yyyzzz85a5".to_vec()).unwrap()
    }

    fn at(ts: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(ts, 0).unwrap()
    }

    const BODY: &[u8] = b"team_id=T1&user_id=U1&text=approve+checkout-service+Production+e-1+looks+good";
    const TS: i64 = 1_795_000_000;

    fn headers(ts: Option<String>, sig: Option<String>) -> impl Fn(&str) -> Option<String> {
        move |name: &str| match name {
            "x-tollgate-request-timestamp" => ts.clone(),
            "x-tollgate-signature" => sig.clone(),
            _ => None,
        }
    }

    /// name, timestamp header, signature header, body, now, expected.
    type Case<'a> = (
        &'a str,
        Option<String>,
        Option<String>,
        &'a [u8],
        i64,
        Result<(), SignatureError>,
    );

    #[test]
    fn signature_table() {
        let good = sign(&secret(), TS, BODY);
        let other = SigningSecret::new(b"another-secret-of-enough-length".to_vec()).unwrap();
        let cases: Vec<Case> = vec![
            ("valid", Some(TS.to_string()), Some(good.clone()), BODY, TS + 10, Ok(())),
            (
                "valid at the window's edge",
                Some(TS.to_string()),
                Some(good.clone()),
                BODY,
                TS + 300,
                Ok(()),
            ),
            (
                "unsigned",
                Some(TS.to_string()),
                None,
                BODY,
                TS,
                Err(SignatureError::Unsigned("x-tollgate-signature")),
            ),
            (
                "no timestamp",
                None,
                Some(good.clone()),
                BODY,
                TS,
                Err(SignatureError::Unsigned("x-tollgate-request-timestamp")),
            ),
            (
                "expired",
                Some(TS.to_string()),
                Some(good.clone()),
                BODY,
                TS + 301,
                Err(SignatureError::Expired(301)),
            ),
            (
                "future",
                Some(TS.to_string()),
                Some(good.clone()),
                BODY,
                TS - 301,
                Err(SignatureError::Future(301)),
            ),
            (
                "body changed",
                Some(TS.to_string()),
                Some(good.clone()),
                b"team_id=T1&user_id=U2&text=approve+checkout-service+Production+e-1+looks+good",
                TS,
                Err(SignatureError::Mismatch),
            ),
            (
                "timestamp changed",
                Some((TS + 1).to_string()),
                Some(good.clone()),
                BODY,
                TS,
                Err(SignatureError::Mismatch),
            ),
            (
                "other secret",
                Some(TS.to_string()),
                Some(sign(&other, TS, BODY)),
                BODY,
                TS,
                Err(SignatureError::Mismatch),
            ),
            (
                "not hex",
                Some(TS.to_string()),
                Some("v0=zz".into()),
                BODY,
                TS,
                Err(SignatureError::Malformed("expected v0=<hex HMAC-SHA256>".into())),
            ),
            (
                "wrong version",
                Some(TS.to_string()),
                Some(good.replacen("v0=", "v1=", 1)),
                BODY,
                TS,
                Err(SignatureError::Malformed("expected v0=<hex HMAC-SHA256>".into())),
            ),
        ];
        for (name, ts, sig, body, now, want) in cases {
            let got = verify(&secret(), headers(ts, sig), body, at(now)).map(|_| ());
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn the_replay_name_is_the_signatures_digest_and_chat_platform_headers_are_read() {
        let sig = sign(&secret(), TS, BODY);
        let slack = |name: &str| match name {
            "x-slack-request-timestamp" => Some(TS.to_string()),
            "x-slack-signature" => Some(sig.clone()),
            _ => None,
        };
        let digest = verify(&secret(), slack, BODY, at(TS)).unwrap();
        let bytes = hex::decode(sig.strip_prefix("v0=").unwrap()).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(bytes)));
    }

    #[test]
    fn an_upper_case_signature_has_the_same_replay_name() {
        let sig = sign(&secret(), TS, BODY);
        let upper = format!("v0={}", sig.strip_prefix("v0=").unwrap().to_ascii_uppercase());
        assert_ne!(sig, upper);
        let lower = verify(&secret(), headers(Some(TS.to_string()), Some(sig)), BODY, at(TS)).unwrap();
        let upper = verify(&secret(), headers(Some(TS.to_string()), Some(upper)), BODY, at(TS)).unwrap();
        assert_eq!(lower, upper, "one signature, one name for the replay guard");
    }

    #[test]
    fn refusals_told_to_the_caller_carry_no_clock() {
        for e in [
            SignatureError::Expired(301),
            SignatureError::Future(9999),
            SignatureError::Malformed("the timestamp \"x\" is not Unix seconds".into()),
            SignatureError::Mismatch,
            SignatureError::Unsigned("x-tollgate-signature"),
            SignatureError::Replayed,
        ] {
            let text = e.public_text();
            assert!(text.starts_with("Refused: ") && text.ends_with('.'), "{text}");
            assert!(!text.chars().any(|c| c.is_ascii_digit()), "{text}");
        }
    }

    #[test]
    fn a_known_signature_is_reproduced() {
        // Worked example of the scheme, computed independently:
        // printf 'v0:1795000000:hello' | openssl dgst -sha256 -hmac 0123456789abcdef
        let s = SigningSecret::new(b"0123456789abcdef".to_vec()).unwrap();
        let sig = sign(&s, TS, b"hello");
        assert_eq!(
            sig,
            "v0=4e68c6e9285e93b58e43e87dd2014bfd37eaafca0339c9cd6f646f27259716f6"
        );
        assert!(verify(&s, headers(Some(TS.to_string()), Some(sig)), b"hello", at(TS)).is_ok());
    }

    #[test]
    fn the_secret_is_never_shown_and_must_be_long_enough() {
        assert_eq!(format!("{:?}", secret()), "SigningSecret(..)");
        assert!(matches!(
            SigningSecret::new(b"short".to_vec()),
            Err(SecretError::TooShort(5))
        ));
    }
}
