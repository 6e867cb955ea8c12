//! AWS API calls: credentials and region through aws-config's default chain, the SSM
//! StartSession / TerminateSession / ResumeSession calls, and KMS GenerateDataKey for encrypted
//! sessions. Every error becomes one line that says what failed and what to do.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use rssm_protocol::{DataKey, DataKeyRequest};

use crate::http_proxy::{ProxyRules, Route};

/// Global connection options (`--profile`, `--region`, `--endpoint-url`).
#[derive(Debug, Clone, Default)]
pub struct AwsOptions {
    /// Named profile; `None` = the default chain (AWS_PROFILE, default profile, …).
    pub profile: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// SSM endpoint override (AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL work too).
    pub endpoint_url: Option<String>,
    /// One endpoint for every service (`rssm demo`'s in-process simulator).
    pub every_endpoint: Option<String>,
    /// Credentials handed in directly instead of the default chain (`rssm demo`).
    pub credentials: Option<Credentials>,
    /// Proxies for the API calls and the data channel; `None` = the environment's.
    pub proxy: Option<ProxyRules>,
}

/// A loaded AWS configuration and SSM client.
#[derive(Clone)]
pub struct Aws {
    config: SdkConfig,
    proxy: ProxyRules,
    /// The SSM endpoint's URL when something overrides the regional one (see
    /// [`Aws::ssm_endpoint_override`]).
    ssm_endpoint_override: Option<String>,
    ssm: aws_sdk_ssm::Client,
    /// The credentials [`Aws::current_credentials`] fetched last.
    latest: std::sync::Arc<std::sync::Mutex<Option<Credentials>>>,
}

/// How long ending a session on the service may hold up our exit: the data channel has already
/// ended it, and the official plugin exits right after writing its TerminateSession flag,
/// without waiting for the API (an unreachable endpoint costs the SDK seconds of retries).
pub const TERMINATE_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

/// Temporary credentials closer than this to their expiry are fetched anew before a reconnect.
const REFRESH_BEFORE: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// A session as StartSession returned it. `Debug` hides the token.
#[derive(Clone)]
pub struct StartedSession {
    /// e.g. `alice-0a1b2c3d4e5f`.
    pub session_id: String,
    /// Secret token for OpenDataChannel.
    pub token: String,
    /// The data-channel websocket URL.
    pub stream_url: String,
}

impl std::fmt::Debug for StartedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartedSession")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .field(
                "stream_url",
                &crate::transport::redact_url(&self.stream_url),
            )
            .finish()
    }
}

impl Aws {
    /// Resolves configuration like the AWS CLI does: environment, profiles, SSO, assume-role,
    /// IMDS; then applies the overrides.
    pub async fn load(opts: &AwsOptions) -> Result<Aws> {
        let proxy = match &opts.proxy {
            Some(rules) => rules.clone(),
            None => ProxyRules::resolve(None)?,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(crate::http_proxy::sdk::http_client(&proxy));
        if let Some(p) = &opts.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &opts.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(url) = &opts.every_endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(c) = &opts.credentials {
            loader = loader.credentials_provider(c.clone());
        }
        let config = loader.load().await;
        if config.region().is_none() {
            anyhow::bail!(
                "no AWS region configured: pass --region, set AWS_REGION, or set region in your profile"
            );
        }
        let ssm_endpoint_override = ssm_endpoint_override(opts, &config);
        let mut ssm = aws_sdk_ssm::config::Builder::from(&config);
        if let Some(url) = &opts.endpoint_url {
            ssm = ssm.endpoint_url(url);
        }
        Ok(Aws {
            ssm: aws_sdk_ssm::Client::from_conf(ssm.build()),
            config,
            proxy,
            ssm_endpoint_override,
            latest: Default::default(),
        })
    }

    /// The region in use.
    pub fn region(&self) -> String {
        self.config
            .region()
            .map(|r| r.to_string())
            .unwrap_or_default()
    }

    /// The proxies in use.
    pub fn proxy(&self) -> &ProxyRules {
        &self.proxy
    }

    /// The SSM endpoint's URL when something overrides the regional one: `--endpoint-url`,
    /// `AWS_ENDPOINT_URL_SSM`, one endpoint for every service (`AWS_ENDPOINT_URL`, `rssm demo`).
    pub fn ssm_endpoint_override(&self) -> Option<&str> {
        self.ssm_endpoint_override.as_deref()
    }

    /// The SSM endpoint's URL, as far as rssm can tell.
    pub fn ssm_endpoint(&self) -> String {
        match &self.ssm_endpoint_override {
            Some(url) => url.clone(),
            None => format!("https://ssm.{}.amazonaws.com", self.region()),
        }
    }

    /// The proxy SSM calls go through, if any.
    fn ssm_proxy(&self) -> Option<Route> {
        self.proxy.route(&self.ssm_endpoint().parse().ok()?)
    }

    /// The SSM client (`--endpoint-url` applied).
    pub fn ssm(&self) -> &aws_sdk_ssm::Client {
        &self.ssm
    }

    /// An EC2 client from the same configuration: `AWS_ENDPOINT_URL_EC2` applies,
    /// `--endpoint-url` does not (it names the SSM endpoint).
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.config)
    }

    /// An ECS client (`AWS_ENDPOINT_URL_ECS`).
    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        aws_sdk_ecs::Client::new(&self.config)
    }

    /// An IAM client (`AWS_ENDPOINT_URL_IAM`).
    pub fn iam(&self) -> aws_sdk_iam::Client {
        aws_sdk_iam::Client::new(&self.config)
    }

    /// An EC2 Instance Connect client (`AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT`).
    pub fn instance_connect(&self) -> aws_sdk_ec2instanceconnect::Client {
        aws_sdk_ec2instanceconnect::Client::new(&self.config)
    }

    /// An STS client (`AWS_ENDPOINT_URL_STS`).
    pub fn sts(&self) -> aws_sdk_sts::Client {
        aws_sdk_sts::Client::new(&self.config)
    }

    /// Current credentials, for signing the data-channel upgrade.
    pub async fn credentials(&self) -> Result<Credentials> {
        let provider = self.config.credentials_provider().ok_or_else(|| {
            anyhow!("no AWS credentials found: set AWS_PROFILE, run `aws configure`, or `aws sso login`")
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| anyhow!("cannot load AWS credentials: {}", error_chain(&e)))
    }

    /// Credentials as the provider chain has them now, for what a long session does late in
    /// its life (ResumeSession, the websocket's signature, TerminateSession): STS, SSO and
    /// assume-role credentials expire, often after an hour, and the ones captured at start
    /// would be refused. Temporary credentials with more than [`REFRESH_BEFORE`] left are
    /// reused; the rest (and credentials without an expiry, which are cheap to read) are
    /// fetched from the chain again.
    pub async fn current_credentials(&self) -> Result<Credentials> {
        let deadline = std::time::SystemTime::now() + REFRESH_BEFORE;
        let cached = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|c| c.expiry().is_some_and(|e| e > deadline));
        if let Some(c) = cached {
            return Ok(c);
        }
        let fresh = self.credentials().await?;
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh.clone());
        Ok(fresh)
    }

    /// An SSM configuration override that signs with `creds` instead of what the client's
    /// identity cache holds.
    fn signed_with(creds: &Credentials) -> aws_sdk_ssm::config::Builder {
        aws_sdk_ssm::config::Builder::default().credentials_provider(creds.clone())
    }

    /// `ssm:StartSession`.
    pub async fn start_session(
        &self,
        target: &str,
        document: Option<&str>,
        parameters: HashMap<String, Vec<String>>,
        reason: Option<&str>,
    ) -> Result<StartedSession> {
        let mut call = self.ssm.start_session().target(target);
        if let Some(d) = document {
            call = call.document_name(d);
        }
        if !parameters.is_empty() {
            call = call.set_parameters(Some(parameters));
        }
        if let Some(r) = reason {
            call = call.reason(r);
        }
        let out = call
            .send()
            .await
            .map_err(|e| sdk_error("StartSession", target, e, self.ssm_proxy()))?;
        Ok(StartedSession {
            session_id: out
                .session_id
                .context("StartSession returned no SessionId")?,
            token: out
                .token_value
                .context("StartSession returned no TokenValue")?,
            stream_url: out
                .stream_url
                .context("StartSession returned no StreamUrl")?,
        })
    }

    /// `ssm:TerminateSession` with current credentials, given up after [`TERMINATE_BUDGET`] (the
    /// call is dropped, not waited for); failures are logged, not fatal (the session may already
    /// be gone).
    pub async fn terminate_session(&self, session_id: &str) {
        let call = async {
            let creds = self.current_credentials().await?;
            self.ssm
                .terminate_session()
                .session_id(session_id)
                .customize()
                .config_override(Self::signed_with(&creds))
                .send()
                .await
                .map_err(|e| anyhow!(error_chain(&e)))
        };
        match tokio::time::timeout(TERMINATE_BUDGET, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!("TerminateSession {session_id}: {e:#}"),
            Err(_) => tracing::debug!(
                "TerminateSession {session_id}: no answer within {} ms; not waiting",
                TERMINATE_BUDGET.as_millis()
            ),
        }
    }
}

impl Aws {
    /// `ssm:ResumeSession`: a fresh token for the same stream (PROTOCOL.md §5.6); `None` when
    /// the service has none to give (the session timed out).
    pub async fn resume_session(
        &self,
        session_id: &str,
        creds: &Credentials,
    ) -> Result<Option<String>> {
        let out = self
            .ssm
            .resume_session()
            .session_id(session_id)
            .customize()
            .config_override(Self::signed_with(creds))
            .send()
            .await
            .map_err(|e| sdk_error("ResumeSession", session_id, e, self.ssm_proxy()))?;
        Ok(out.token_value.filter(|t| !t.is_empty()))
    }
}

impl Aws {
    /// `kms:GenerateDataKey` for a KMS-encrypted session (PROTOCOL.md §8.1). The client comes
    /// from the same configuration as SSM's, so profile, region and `AWS_ENDPOINT_URL_KMS` apply;
    /// `--endpoint-url` does not, as it names the SSM endpoint (the official plugin also uses
    /// the default KMS endpoint). Built per call: only encrypted sessions pay for it.
    pub async fn generate_data_key(&self, req: &DataKeyRequest) -> Result<DataKey> {
        let kms = aws_sdk_kms::Client::new(&self.config);
        let out = kms
            .generate_data_key()
            .key_id(&req.key_id)
            .number_of_bytes(i32::try_from(req.number_of_bytes).unwrap_or(i32::MAX))
            .set_encryption_context(Some(
                req.encryption_context
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| kms_error(&req.key_id, e))?;
        let (Some(plaintext), Some(ciphertext_blob)) = (out.plaintext, out.ciphertext_blob) else {
            anyhow::bail!(
                "KMS GenerateDataKey for key {} returned no data key",
                req.key_id
            );
        };
        Ok(DataKey {
            plaintext: plaintext.into_inner(),
            ciphertext_blob: ciphertext_blob.into_inner(),
        })
    }
}

/// One line for a failed GenerateDataKey, with advice for the common cases.
fn kms_error<E, R>(key_id: &str, e: SdkError<E, R>) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = format!("KMS GenerateDataKey for key {key_id} failed");
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Error");
            let msg = err.message().unwrap_or("").trim();
            let hint = match code {
                "AccessDeniedException" => {
                    " (your credentials need kms:GenerateDataKey on this key)"
                }
                "NotFoundException" => " (no such key in this account and region)",
                "DisabledException" | "KMSInvalidStateException" => {
                    " (the key is disabled or pending deletion)"
                }
                _ => credentials_hint(code),
            };
            let sep = if msg.is_empty() { "" } else { ": " };
            anyhow!("{what}: {code}{sep}{msg}{hint}")
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            anyhow!("{what}: cannot reach the KMS endpoint: {}", error_chain(&e))
        }
        _ => anyhow!("{what}: {}", error_chain(&e)),
    }
}

/// Advice for an error code about the caller's credentials, whatever the service.
fn credentials_hint(code: &str) -> &'static str {
    match code {
        "UnrecognizedClientException" | "InvalidSignatureException" => {
            " (check your AWS credentials)"
        }
        "ExpiredTokenException" => {
            " (your credentials expired: refresh them, e.g. `aws sso login`)"
        }
        _ => "",
    }
}

/// An error the service answered (as opposed to one reaching it): its code, for callers that
/// decide on it, and the one line the user sees.
#[derive(Debug, Clone)]
pub struct ServiceError {
    /// The error code (`InvalidParameters`, `AccessDeniedException`, …).
    pub code: String,
    /// The service's message.
    pub message: String,
    line: String,
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.line)
    }
}

impl std::error::Error for ServiceError {}

impl ServiceError {
    /// Whether asking again cannot help: the session is gone, the request is malformed, or the
    /// caller may not make it (expired credentials are not: each attempt fetches fresh ones).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code.as_str(),
            "DoesNotExistException" | "InvalidParameters" | "AccessDeniedException"
        )
    }

    /// An answer with `code` and no message.
    #[cfg(test)]
    pub fn for_tests(code: &str) -> ServiceError {
        ServiceError {
            code: code.to_owned(),
            message: String::new(),
            line: format!("failed: {code}"),
        }
    }
}

/// One line for an SDK error, with advice for the common cases.
/// `via` is the proxy the call went through: its refusals are told as such (failures to connect
/// through it name it already, see [`crate::http_proxy::sdk`]).
fn sdk_error<E>(
    op: &str,
    subject: &str,
    e: SdkError<E, HttpResponse>,
    via: Option<Route>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(route) = &via {
        // A proxy's own answer (407, or 401 from some, wanting credentials; 403 by policy; 5xx
        // failing upstream) is not the service's, which always names its request.
        if let Some(raw) = e.raw_response() {
            let code = raw.status().as_u16();
            let from_proxy = matches!(code, 401 | 403 | 407 | 502..=504)
                && raw.headers().get("x-amzn-requestid").is_none();
            if from_proxy {
                let refusal = crate::http_proxy::connect::refusal(route, code, "", "the request");
                return anyhow!("{op} failed: {refusal}");
            }
        }
    }
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Error");
            let msg = err.message().unwrap_or("").trim();
            let doctor;
            let hint = match code {
                "TargetNotConnected" => {
                    doctor = format!(
                        " (the agent on the target is not connected; to see why, run: rssm doctor {subject})"
                    );
                    doctor.as_str()
                }
                "InvalidDocument" => " (check --document)",
                "AccessDeniedException" => {
                    " (your credentials lack ssm:StartSession for this target)"
                }
                _ => credentials_hint(code),
            };
            let sep = if msg.is_empty() { "" } else { ": " };
            anyhow::Error::new(ServiceError {
                code: code.to_owned(),
                message: msg.to_owned(),
                line: format!("{op} {subject} failed: {code}{sep}{msg}{hint}"),
            })
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            anyhow!(
                "{op} failed: cannot reach the SSM endpoint: {}",
                error_chain(&e)
            )
        }
        _ => anyhow!("{op} failed: {}", error_chain(&e)),
    }
}

/// The error and its sources on one line, deduplicated.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The SSM endpoint the SDK will call instead of the regional one, as the SDK picks it:
/// `--endpoint-url`, then `AWS_ENDPOINT_URL_SSM`, then one endpoint for all services.
fn ssm_endpoint_override(opts: &AwsOptions, config: &SdkConfig) -> Option<String> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    opts.endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL_SSM"))
        .or_else(|| config.endpoint_url().map(str::to_owned))
}
