//! `tollgate approve / reject / override / freeze / unfreeze / identity link|unlink`: each is one request to the
//! decide function's URL (`--decide-url` or `TOLLGATE_DECIDE_URL`), signed with SigV4 for the service `lambda` with
//! the caller's credentials from the default chain. The function learns who the caller is from the signature, takes
//! the time from its own clock, authorises and records; the CLI sends only what and why, and prints the function's
//! one-sentence answer (a refusal exits non-zero).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use serde_json::{json, Value};

/// The service name function URLs are signed for.
pub const SIGNING_SERVICE: &str = "lambda";

/// Where the decide function is.
#[derive(clap::Args, Debug, Clone)]
pub struct DecideUrlArgs {
    /// The decide function's URL (the stack output DecideFunctionUrl).
    #[arg(long = "decide-url", env = "TOLLGATE_DECIDE_URL")]
    pub decide_url: String,
}

/// A decision on a gated stage of an execution.
#[derive(clap::Args, Debug, Clone)]
pub struct DecisionArgs {
    #[command(flatten)]
    pub endpoint: DecideUrlArgs,
    #[arg(long)]
    pub pipeline: String,
    /// The pipeline execution id.
    #[arg(long)]
    pub execution: String,
    /// The gated stage.
    #[arg(long)]
    pub stage: String,
    /// Why (required; recorded with the decision and in the audit trail).
    #[arg(long)]
    pub reason: String,
    /// The pipeline's account (or TOLLGATE_ACCOUNT).
    #[arg(long, env = "TOLLGATE_ACCOUNT")]
    pub account: String,
    /// The pipeline's region (default: the SDK's region).
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum IdentityCommand {
    /// Links a chat user (`<team>:<user>`) to a principal ARN, as the caller (administrators only).
    Link {
        #[command(flatten)]
        endpoint: DecideUrlArgs,
        /// The chat user as the platform names it: <team id>:<user id>.
        #[arg(long)]
        chat: String,
        /// The principal ARN the user decides as.
        #[arg(long)]
        principal: String,
    },
    /// Removes a chat user's link, as the caller (administrators only).
    Unlink {
        #[command(flatten)]
        endpoint: DecideUrlArgs,
        #[arg(long)]
        chat: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecideCallError {
    /// The function answered with a refusal: its sentence, as is.
    #[error("{message}")]
    Refused { status: u16, message: String },
    #[error("{0} is not a decide URL (expected https://<url-id>.lambda-url.<region>.on.aws/)")]
    BadUrl(String),
    #[error("no AWS credentials to sign the request with: {0}")]
    Credentials(String),
    #[error(
        "no region to sign for: pass a URL of the form https://<url-id>.lambda-url.<region>.on.aws/ or set AWS_REGION"
    )]
    NoRegion,
    #[error("could not sign the request: {0}")]
    Signing(String),
    #[error("could not reach the decide function at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The region of a function URL (`https://<id>.lambda-url.<region>.on.aws/`).
pub fn url_region(url: &str) -> Option<String> {
    let host = url.split("://").nth(1)?.split(['/', ':']).next()?;
    let (_, rest) = host.split_once(".lambda-url.")?;
    rest.split('.').next().filter(|r| !r.is_empty()).map(str::to_string)
}

/// The HTTPS connector (AWS's roots only, like the SDK's; plain HTTP for a local endpoint).
fn connector(url: &str) -> Connector {
    let settings = HttpConnectorSettings::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build();
    if url.starts_with("http://") {
        return Connector::builder().connector_settings(settings).build_http();
    }
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(tollgate_aws::config::AWS_ROOTS_PEM.as_bytes()))
        .build()
        .unwrap_or_default();
    Connector::builder()
        .connector_settings(settings)
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build()
}

/// Sends `body` to the decide URL, signed with `credentials` for `region` at `time`; the function's sentence on
/// success, its refusal otherwise.
pub async fn call(
    url: &str,
    region: &str,
    credentials: Credentials,
    body: &Value,
    time: SystemTime,
) -> Result<String, DecideCallError> {
    let uri: http::Uri = url.parse().map_err(|_| DecideCallError::BadUrl(url.to_string()))?;
    let host = uri
        .authority()
        .ok_or_else(|| DecideCallError::BadUrl(url.to_string()))?
        .to_string();
    let payload = body.to_string();
    let identity: Identity = credentials.into();
    let mut settings = SigningSettings::default();
    // x-amz-content-sha256: the body's hash is part of the signature, so the body cannot be swapped.
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| DecideCallError::Signing(e.to_string()))?
        .into();
    let headers = [("content-type", "application/json"), ("host", host.as_str())];
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(payload.as_bytes()),
    )
    .map_err(|e| DecideCallError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| DecideCallError::Signing(e.to_string()))?
        .into_parts();
    let mut request = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("host", host)
        .body(SdkBody::from(payload))
        .map_err(|e| DecideCallError::Signing(e.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    let request = request
        .try_into()
        .map_err(|e: aws_smithy_runtime_api::http::HttpError| DecideCallError::Signing(e.to_string()))?;
    let unreachable = |reason: String| DecideCallError::Unreachable {
        url: url.to_string(),
        reason,
    };
    let response = connector(url)
        .call(request)
        .await
        .map_err(|e| unreachable(aws_smithy_types::error::display::DisplayErrorContext(e).to_string()))?;
    let status = response.status().as_u16();
    let bytes = ByteStream::new(response.into_body())
        .collect()
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .into_bytes();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| match status {
            403 => "the decide function refused the request (is your role allowed lambda:InvokeFunctionUrl?)".into(),
            _ => format!("the decide function answered HTTP {status}"),
        });
    if (200..300).contains(&status) {
        Ok(message)
    } else {
        Err(DecideCallError::Refused { status, message })
    }
}

/// Signs with the default credential chain's credentials and sends.
async fn send(endpoint: &DecideUrlArgs, body: Value) -> Result<String, DecideCallError> {
    let sdk = tollgate_aws::config::sdk_config().await;
    let region = url_region(&endpoint.decide_url)
        .or_else(|| sdk.region().map(|r| r.to_string()))
        .ok_or(DecideCallError::NoRegion)?;
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| DecideCallError::Credentials("no credential provider configured".into()))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| DecideCallError::Credentials(e.to_string()))?;
    call(&endpoint.decide_url, &region, credentials, &body, SystemTime::now()).await
}

/// `approve`, `reject` or `override` (`operation`) of a gated stage.
pub async fn decision(args: DecisionArgs, operation: &str) -> Result<String, DecideCallError> {
    let region = match args.region {
        Some(r) => r,
        None => tollgate_aws::config::sdk_config()
            .await
            .region()
            .map(|r| r.to_string())
            .ok_or(DecideCallError::NoRegion)?,
    };
    let body = json!({"operation": operation, "account": args.account, "region": region, "pipeline": args.pipeline,
        "execution_id": args.execution, "stage": args.stage, "reason": args.reason});
    send(&args.endpoint, body).await
}

/// `freeze`: a freeze of `scope` until `until` (from `from`, default now).
pub async fn freeze(
    endpoint: &DecideUrlArgs,
    scope: &str,
    from: Option<&str>,
    until: &str,
    reason: &str,
) -> Result<String, DecideCallError> {
    let mut body = json!({"operation": "freeze", "scope": scope, "until": until, "reason": reason});
    if let Some(from) = from {
        body["from"] = json!(from);
    }
    send(endpoint, body).await
}

/// `unfreeze`: lifts the freeze of `scope`.
pub async fn unfreeze(endpoint: &DecideUrlArgs, scope: &str, reason: &str) -> Result<String, DecideCallError> {
    send(
        endpoint,
        json!({"operation": "unfreeze", "scope": scope, "reason": reason}),
    )
    .await
}

/// `identity link|unlink`.
pub async fn identity(command: IdentityCommand) -> Result<String, DecideCallError> {
    match command {
        IdentityCommand::Link {
            endpoint,
            chat,
            principal,
        } => {
            send(
                &endpoint,
                json!({"operation": "identity_link", "chat": chat, "principal": principal}),
            )
            .await
        }
        IdentityCommand::Unlink { endpoint, chat } => {
            send(&endpoint, json!({"operation": "identity_unlink", "chat": chat})).await
        }
    }
}

#[cfg(test)]
mod tests;
