//! [`S3ArtifactPolicies`]: reads the gate's policy file from the job's input artifact. The artifact is a zip file in
//! the pipeline's artifact bucket; it is read with the **job's** temporary credentials (the `artifactCredentials` of
//! the job), never with the function's own role, which has no S3 permission at all.
//!
//! The credentials live only in the S3 client built for the one request, and are never logged.

use std::io::Read;

use async_trait::async_trait;
use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::Client;
use tollgate_domain::gate::policy::MAX_POLICY_BYTES;
use tollgate_domain::gate::{ArtifactCredentials, ArtifactLocation, FactError, PolicySource, PolicyText};

/// Artifacts larger than this are not downloaded: a policy lives in a source artifact, not a build output of gigabytes.
pub const MAX_ARTIFACT_BYTES: u64 = 50 * 1024 * 1024;

/// The S3 adapter of [`PolicySource`].
#[derive(Debug, Clone)]
pub struct S3ArtifactPolicies {
    /// Region, endpoint, retry and HTTP settings; its credentials are replaced by the job's for each request.
    base: aws_sdk_s3::config::Builder,
}

impl S3ArtifactPolicies {
    /// The function's SDK configuration, for everything but the credentials.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        // Local endpoints (moto) serve buckets by path.
        let base =
            aws_sdk_s3::config::Builder::from(sdk).force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some());
        Self::with_base(base)
    }

    /// From an S3 configuration (tests give one with a mock HTTP client).
    pub fn with_base(base: aws_sdk_s3::config::Builder) -> Self {
        S3ArtifactPolicies { base }
    }

    /// An S3 client that signs with the job's credentials only.
    pub fn client_for(&self, credentials: &ArtifactCredentials) -> Client {
        let credentials = Credentials::new(
            credentials.access_key_id.clone(),
            credentials.secret_access_key.clone(),
            Some(credentials.session_token.clone()),
            None,
            "codepipeline-job-artifact-credentials",
        );
        Client::from_conf(self.base.clone().credentials_provider(credentials).build())
    }
}

/// Downloads the artifact with `client` and reads the first of `candidates` from it.
pub async fn read_policy_with(
    client: &Client,
    artifact: &ArtifactLocation,
    candidates: &[String],
) -> Result<PolicyText, FactError> {
    let what = format!(
        "input artifact {} (s3://{}/{})",
        artifact.name, artifact.bucket, artifact.key
    );
    let out = client
        .get_object()
        .bucket(&artifact.bucket)
        .key(&artifact.key)
        .send()
        .await
        .map_err(|e| {
            let code = e.code().unwrap_or("");
            FactError(format!(
                "cannot read {what}{}: {}",
                if code.is_empty() {
                    String::new()
                } else {
                    format!(" ({code})")
                },
                DisplayErrorContext(&e)
            ))
        })?;
    if let Some(len) = out.content_length().filter(|l| *l as u64 > MAX_ARTIFACT_BYTES) {
        return Err(FactError(format!(
            "{what} is {len} bytes, more than the {MAX_ARTIFACT_BYTES}-byte limit for reading a policy from it"
        )));
    }
    let mut body = out.body;
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| FactError(format!("cannot download {what}: {e}")))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(FactError(format!(
                "{what} is more than the {MAX_ARTIFACT_BYTES}-byte limit for reading a policy from it"
            )));
        }
    }
    read_from_zip(&bytes, &what, candidates)
}

/// Reads the first of `candidates` from a zip archive, at most [`MAX_POLICY_BYTES`] of it (one more byte is read,
/// so the parser reports an oversized policy as such).
pub fn read_from_zip(bytes: &[u8], what: &str, candidates: &[String]) -> Result<PolicyText, FactError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| FactError(format!("{what} is not a zip archive: {e}")))?;
    for path in candidates {
        let mut file = match archive.by_name(path) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => continue,
            Err(e) => return Err(FactError(format!("cannot read {path} in {what}: {e}"))),
        };
        let mut text = String::new();
        file.by_ref()
            .take(MAX_POLICY_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map_err(|e| FactError(format!("cannot read {path} in {what}: {e} (a policy is UTF-8 text)")))?;
        return Ok(PolicyText {
            path: path.clone(),
            text,
        });
    }
    Err(FactError(format!("{} not found in {what}", candidates.join(" or "))))
}

#[async_trait]
impl PolicySource for S3ArtifactPolicies {
    #[tracing::instrument(skip_all, fields(artifact = %artifact.name, bucket = %artifact.bucket))]
    async fn read_policy(
        &self,
        artifact: &ArtifactLocation,
        credentials: &ArtifactCredentials,
        candidates: &[String],
    ) -> Result<PolicyText, FactError> {
        let client = self.client_for(credentials);
        let policy = read_policy_with(&client, artifact, candidates).await?;
        tracing::debug!(path = %policy.path, bytes = policy.text.len(), "policy read from the artifact");
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use aws_sdk_s3::operation::get_object::{GetObjectError, GetObjectOutput};
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::error::NoSuchKey;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_runtime_api::box_error::BoxError;
    use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
    use aws_smithy_runtime_api::client::interceptors::Intercept;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
    use aws_smithy_types::config_bag::ConfigBag;

    fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, text) in files {
            writer.start_file(*name, options).unwrap();
            writer.write_all(text.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    fn artifact() -> ArtifactLocation {
        ArtifactLocation {
            name: "SourceArtifact".into(),
            bucket: "codepipeline-eu-west-1-1".into(),
            key: "checkout-service/SourceArti/abc".into(),
        }
    }

    #[tokio::test]
    async fn the_first_candidate_found_in_the_zip_is_read() {
        let zipped = zip_of(&[("policies/production.yml", "version: 1\n"), ("README.md", "hi")]);
        let rule = mock!(Client::get_object)
            .match_requests(|r| {
                r.bucket() == Some("codepipeline-eu-west-1-1") && r.key() == Some("checkout-service/SourceArti/abc")
            })
            .then_output(move || {
                GetObjectOutput::builder()
                    .body(ByteStream::from(zipped.clone()))
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]);
        let candidates: Vec<String> = ["policies/production.yaml", "policies/production.yml"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let policy = read_policy_with(&client, &artifact(), &candidates).await.unwrap();
        assert_eq!(policy.path, "policies/production.yml");
        assert_eq!(policy.text, "version: 1\n");
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_missing_file_or_object_is_an_error_naming_it() {
        let err = read_from_zip(
            &zip_of(&[("a.txt", "")]),
            "input artifact X",
            &["policies/p.yaml".into()],
        )
        .unwrap_err();
        assert_eq!(err.0, "policies/p.yaml not found in input artifact X");
        let err = read_from_zip(b"not a zip", "input artifact X", &["p.yaml".into()]).unwrap_err();
        assert!(err.0.contains("not a zip archive"), "{err}");

        let rule = mock!(Client::get_object)
            .then_error(|| GetObjectError::NoSuchKey(NoSuchKey::builder().message("gone").build()));
        let client = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&rule]);
        let err = read_policy_with(&client, &artifact(), &["p.yaml".into()])
            .await
            .unwrap_err();
        assert!(
            err.0
                .contains("s3://codepipeline-eu-west-1-1/checkout-service/SourceArti/abc"),
            "{err}"
        );
    }

    /// Keeps the signed request's credential headers.
    #[derive(Debug, Default, Clone)]
    struct SeenHeaders(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Intercept for SeenHeaders {
        fn name(&self) -> &'static str {
            "SeenHeaders"
        }

        fn read_before_transmit(
            &self,
            context: &BeforeTransmitInterceptorContextRef<'_>,
            _: &RuntimeComponents,
            _: &mut ConfigBag,
        ) -> Result<(), BoxError> {
            let headers = context.request().headers();
            let mut seen = self.0.lock().unwrap();
            for name in ["authorization", "x-amz-security-token"] {
                seen.push(headers.get(name).unwrap_or_default().to_string());
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_request_is_signed_with_the_jobs_credentials_not_the_functions() {
        let zipped = zip_of(&[("policies/production.yaml", "version: 1\n")]);
        let rule = mock!(Client::get_object).then_output(move || {
            GetObjectOutput::builder()
                .body(ByteStream::from(zipped.clone()))
                .build()
        });
        let seen = SeenHeaders::default();
        let base = aws_sdk_s3::Config::builder()
            .with_test_defaults_v2()
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(Credentials::new(
                "FUNCTION-ROLE-KEY",
                "function-secret",
                None,
                None,
                "role",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(aws_smithy_mocks::MockResponseInterceptor::new().with_rule(&rule))
            .interceptor(seen.clone());
        let policies = S3ArtifactPolicies::with_base(base);
        let credentials = ArtifactCredentials {
            access_key_id: "JOB-KEY".into(),
            secret_access_key: "job-secret".into(),
            session_token: "job-token".into(),
        };
        let policy = policies
            .read_policy(&artifact(), &credentials, &["policies/production.yaml".into()])
            .await
            .unwrap();
        assert_eq!(policy.text, "version: 1\n");
        let seen = seen.0.lock().unwrap().clone();
        assert!(seen[0].contains("Credential=JOB-KEY/"), "{seen:?}");
        assert!(!seen[0].contains("FUNCTION-ROLE-KEY"), "{seen:?}");
        assert_eq!(seen[1], "job-token");
    }
}
