//! Kling video generation: [`KlingClient`] implements rei-core's `VideoGenerator`
//! (providers.md §0.1 and §1).
//!
//! - text→video: `POST /v1/videos/text2video`; image→video: `POST /v1/videos/image2video`
//!   (raw base64, no `data:` prefix, checked first: JPEG/PNG, ≤ 10 MB, sides ≥ 300 px);
//!   video→video: `POST /v1/videos/omni-video` with the omni model and
//!   `video_list:[{video_url, refer_type:"base", keep_original_sound:"no"}]`.
//! - Every request carries `Authorization: Bearer <JWT>` (HS256 from the access and secret
//!   keys, cached and refreshed five minutes before it expires; re-signed and retried once
//!   when Kling answers 401 with code 1003/1004, with an earlier `nbf` after a 1003).
//! - `external_task_id` is the job id, so [`VideoGenerator::find_by_job`] finds a task that
//!   was created before a crash, and a create whose outcome is unknown (timeout, 5xx) is
//!   searched for the same way before it is posted again: the provider is never paid
//!   twice. The search asks `GET /v1/videos/<family>/<job id>` first; when that answer
//!   does not show the job's task (a 404, code 1203, another job's task, a malformed
//!   body), it reads the task list `GET /v1/videos/<family>?pageNum=N&pageSize=500`,
//!   newest first, for a task whose `task_info.external_task_id` is the job id. It stops
//!   at the end of the list or once a page ends with tasks older than a day, and reads at
//!   most four pages (the 2000 newest tasks). `Ok(None)` ("no task") comes only from a
//!   lookup that said "not found" and a list read to its end or to its day-old tasks; a
//!   list that fails, or is still young after the last page read, is an error: the
//!   caller must not create.
//! - Results are streamed into the asset store with a size cap and a timeout.
//! - Callbacks ([`parse_callback`]) only name the task to re-read. The client does not
//!   poll: rei-core's job runner calls [`VideoGenerator::status`] once per step and owns
//!   the polling cadence.

mod auth;
mod image;
mod models;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use futures::TryStreamExt;
use rei_core::ids::{JobId, ProviderTaskId};
use rei_core::job::VideoMode;
use rei_core::ports::{
    DownloadedAsset, ProviderError, VideoGenerator, VideoInput, VideoRequest, VideoTaskStatus,
};
use rei_core::pricing::AspectRatio;
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use auth::Rejection;
pub use auth::{CredentialsError, KlingCredentials};
pub use models::{
    DEFAULT_MODELS, DEFAULT_OMNI_MODEL, KlingModel, MAX_NAME_BYTES, ModelListError, is_omni,
    supports,
};

use crate::outbound::client::{
    self, Call, Classified, ClientBuildError, Exchange, HttpConfig, Outcome, Replay, RetryPolicy,
};
use crate::outbound::files::{AssetError, AssetStore};

mod callback;
mod download;
mod failure;
mod lookup;

pub use callback::{CallbackError, CallbackKey, KlingCallback, duration_millis, parse_callback};
use failure::*;
use lookup::*;

/// The default of `KLING_API_URL`.
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";

/// The path of the Kling callback route under `PUBLIC_URL`.
pub const CALLBACK_PATH: &str = "/webhooks/kling";

const PROVIDER: &str = "kling";
/// Largest JSON answer read from the API.
const JSON_LIMIT: usize = 4 * 1024 * 1024;
/// Longest prompt Kling accepts, in characters.
const MAX_PROMPT_CHARS: usize = 2500;
/// The shortest wait after a 429 without `Retry-After` (providers.md §1.9: on 1303 "first
/// delay ≥ 1 s").
pub const RATE_LIMIT_FLOOR: Duration = Duration::from_secs(1);

/// Video quality (`KLING_MODE`): `std` = 720p, `pro` = 1080p.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KlingMode {
    /// 720p (the default).
    #[default]
    Std,
    /// 1080p.
    Pro,
}

impl KlingMode {
    /// The wire value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Pro => "pro",
        }
    }
}

/// `KLING_MODE` is neither `std` nor `pro`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a Kling mode (expected std or pro)")]
pub struct KlingModeError(String);

impl std::str::FromStr for KlingMode {
    type Err = KlingModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "std" => Ok(Self::Std),
            "pro" => Ok(Self::Pro),
            other => Err(KlingModeError(other.to_owned())),
        }
    }
}

impl fmt::Display for KlingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits of a result download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadLimits {
    /// Largest accepted file; more fails the download and stores nothing.
    pub max_bytes: u64,
    /// Longest time for the whole download.
    pub timeout: Duration,
}

impl Default for DownloadLimits {
    /// 200 MiB in at most 5 minutes.
    fn default() -> Self {
        Self {
            max_bytes: 200 * 1024 * 1024,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Everything [`KlingClient`] needs; the binaries fill it from the environment.
#[derive(Clone, Debug)]
pub struct KlingConfig {
    /// `KLING_API_URL` (default [`DEFAULT_BASE_URL`]).
    pub base_url: String,
    /// `KLING_API_KEY` or `KLING_ACCESS_KEY` + `KLING_SECRET_KEY`.
    pub credentials: KlingCredentials,
    /// `KLING_MODELS`, in menu order (default [`DEFAULT_MODELS`]).
    pub models: Vec<KlingModel>,
    /// `KLING_OMNI_MODEL` (default [`DEFAULT_OMNI_MODEL`]).
    pub omni_model: String,
    /// `KLING_MODE` (default `std`).
    pub mode: KlingMode,
    /// `PUBLIC_URL`: when set, tasks carry `callback_url = PUBLIC_URL + /webhooks/kling`
    /// with the job and a token ([`CallbackKey`])
    /// unless the request names its own.
    pub public_url: Option<String>,
    /// Result download limits.
    pub download: DownloadLimits,
    /// Timeouts of API calls.
    pub http: HttpConfig,
    /// Retries of API calls and downloads (default: [`RetryPolicy::default`] with a
    /// [`RATE_LIMIT_FLOOR`] of 1 s).
    pub retry: RetryPolicy,
}

impl KlingConfig {
    /// The defaults of `shared/spec/interfaces.md` with these credentials.
    #[must_use]
    pub fn new(credentials: KlingCredentials) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            credentials,
            models: KlingModel::defaults(),
            omni_model: DEFAULT_OMNI_MODEL.to_owned(),
            mode: KlingMode::Std,
            public_url: None,
            download: DownloadLimits::default(),
            http: HttpConfig::default(),
            retry: RetryPolicy {
                rate_limit_floor: RATE_LIMIT_FLOOR,
                ..RetryPolicy::default()
            },
        }
    }
}

/// The Kling adapter.
pub struct KlingClient {
    http: reqwest::Client,
    /// Result downloads: same-origin redirects only.
    downloads: reqwest::Client,
    /// Result links may be plain `http` on a loopback host: only when `KLING_API_URL`
    /// itself is (a local fake in tests); otherwise `https` only.
    loopback_http: bool,
    base_url: Url,
    signer: auth::TokenSigner,
    models: Vec<KlingModel>,
    omni_model: String,
    mode: KlingMode,
    callback_url: Option<String>,
    callback_key: CallbackKey,
    download: DownloadLimits,
    retry: RetryPolicy,
    assets: AssetStore,
}

impl fmt::Debug for KlingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlingClient")
            .field("base_url", &self.base_url.as_str())
            .field("models", &self.models)
            .field("omni_model", &self.omni_model)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl KlingClient {
    /// A result link we may fetch: `https`, or `http` on a loopback host when the API
    /// itself is a local `http` fake.
    fn result_url(&self, text: &str) -> Result<Url, ProviderError> {
        let url =
            parse_http_url(text).ok_or_else(|| invalid("the result URL is not an http(s) URL"))?;
        match url.scheme() {
            "https" => Ok(url),
            _ if self.loopback_http && is_loopback(&url) => Ok(url),
            _ => Err(invalid("the result URL is not https")),
        }
    }

    /// A client that stores downloaded results in `assets`.
    ///
    /// # Errors
    /// [`ClientBuildError`] for a base or public URL that is not http(s), an omni model
    /// that is not a model name, or a TLS backend failure.
    pub fn new(config: KlingConfig, assets: AssetStore) -> Result<Self, ClientBuildError> {
        let base_url = parse_http_url(&config.base_url).ok_or_else(|| {
            ClientBuildError::new(PROVIDER, "KLING_API_URL must be an http(s) URL")
        })?;
        let callback_url = match config.public_url.as_deref() {
            Some(public) => {
                let public = parse_http_url(public).ok_or_else(|| {
                    ClientBuildError::new(PROVIDER, "PUBLIC_URL must be an http(s) URL")
                })?;
                Some(client::endpoint(&public, CALLBACK_PATH))
            }
            None => None,
        };
        if !models::is_model_name(&config.omni_model) {
            return Err(ClientBuildError::new(
                PROVIDER,
                "KLING_OMNI_MODEL is not a Kling model name",
            ));
        }
        let loopback_http = base_url.scheme() == "http" && is_loopback(&base_url);
        Ok(Self {
            http: client::build_client(PROVIDER, &config.http)?,
            downloads: client::build_download_client(PROVIDER, &config.http)?,
            loopback_http,
            base_url,
            callback_key: config.credentials.callback_key(),
            signer: auth::TokenSigner::new(config.credentials),
            models: config.models,
            omni_model: config.omni_model,
            mode: config.mode,
            callback_url,
            download: config.download,
            retry: config.retry,
            assets,
        })
    }

    /// The menu models, in order.
    #[must_use]
    pub fn models(&self) -> &[KlingModel] {
        &self.models
    }

    /// The model used for video→video.
    #[must_use]
    pub fn omni_model(&self) -> &str {
        &self.omni_model
    }

    /// The callback URL sent with new tasks, if `PUBLIC_URL` is set.
    #[must_use]
    pub fn callback_url(&self) -> Option<&str> {
        self.callback_url.as_deref()
    }

    /// Builds the create body of a request, checking everything that can be checked
    /// before any money is spent.
    fn create_body(
        &self,
        request: &VideoRequest,
    ) -> Result<(&'static str, Vec<u8>), ProviderError> {
        let prompt = request.prompt.trim();
        let external_task_id = request.job_id.to_string();
        // Each task's callback URL carries its job and a token only we can make.
        let signed = self
            .callback_url
            .as_deref()
            .map(|base| self.callback_key.url(base, request.job_id));
        let callback_url = request.callback_url.as_deref().or(signed.as_deref());
        let mode = self.mode.as_str();
        let duration = request.duration.seconds().to_string();
        let body = match (request.mode, &request.input) {
            (VideoMode::TextToVideo, VideoInput::None) => {
                self.check_model(&request.model, VideoMode::TextToVideo)?;
                if prompt.is_empty() {
                    return Err(invalid("text→video needs a prompt"));
                }
                check_prompt_length(prompt)?;
                serde_json::to_vec(&wire::GenerateVideo {
                    model_name: request.model.as_str(),
                    image: None,
                    prompt,
                    mode,
                    aspect_ratio: match request.aspect {
                        Some(a) if AspectRatio::VIDEOS.contains(&a) => Some(a.as_str()),
                        Some(other) => {
                            return Err(invalid(format!(
                                "Kling makes videos of 16:9, 9:16 or 1:1, not {other}"
                            )));
                        }
                        None => None,
                    },
                    duration,
                    callback_url,
                    external_task_id,
                })
            }
            (VideoMode::ImageToVideo, VideoInput::Image(input)) => {
                self.check_model(&request.model, VideoMode::ImageToVideo)?;
                check_prompt_length(prompt)?;
                image::check(&input.bytes).map_err(invalid)?;
                serde_json::to_vec(&wire::GenerateVideo {
                    model_name: request.model.as_str(),
                    image: Some(base64::engine::general_purpose::STANDARD.encode(&input.bytes)),
                    prompt,
                    mode,
                    aspect_ratio: None,
                    duration,
                    callback_url,
                    external_task_id,
                })
            }
            (VideoMode::VideoToVideo, VideoInput::VideoUrl(video_url)) => {
                if prompt.is_empty() {
                    return Err(invalid("video→video needs a prompt"));
                }
                if parse_http_url(video_url).is_none() {
                    return Err(invalid("the source video must be an http(s) URL"));
                }
                let model_name = if is_omni(&request.model) {
                    request.model.as_str()
                } else {
                    self.omni_model.as_str()
                };
                let prompt = if prompt.contains("<<<video_1>>>") {
                    prompt.to_owned()
                } else {
                    format!("Edit <<<video_1>>>: {prompt}")
                };
                // Checked as sent: the prefix counts against Kling's limit too.
                check_prompt_length(&prompt)?;
                let video_list = vec![wire::VideoRef {
                    video_url,
                    refer_type: "base",
                    keep_original_sound: "no",
                }];
                serde_json::to_vec(&wire::OmniVideo {
                    model_name,
                    prompt,
                    video_list,
                    mode,
                    sound: "off",
                    callback_url,
                    external_task_id,
                })
            }
            (mode, input) => {
                return Err(invalid(format!("{mode:?} cannot take the input {input:?}")));
            }
        };
        let body = body.map_err(|e| ProviderError::Unknown {
            message: format!("cannot encode the Kling request: {e}"),
        })?;
        Ok((family(request.mode), body))
    }

    fn check_model(&self, model: &str, mode: VideoMode) -> Result<(), ProviderError> {
        if !models::is_model_name(model) {
            return Err(invalid(format!(
                "`{}` is not a Kling model name",
                client::truncate(model, 64)
            )));
        }
        if supports(model, mode) {
            return Ok(());
        }
        let able: Vec<&str> = self
            .models
            .iter()
            .filter(|m| m.supports(mode))
            .map(KlingModel::api_name)
            .collect();
        Err(invalid(format!(
            "{model} cannot do {mode:?}; models that can: {}",
            able.join(", ")
        )))
    }

    /// One API call; a token Kling calls not yet valid or expired is re-signed and the
    /// call repeated once.
    async fn send<T>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, u32)],
        body: Option<&[u8]>,
    ) -> Result<T, KlingFailure>
    where
        T: DeserializeOwned,
    {
        match self
            .attempt(method.clone(), path, query, body, Signing::Cached)
            .await
        {
            Err(KlingFailure::TokenRejected { rejection, .. }) => {
                tracing::warn!(
                    provider = PROVIDER,
                    rejection = ?rejection,
                    "Kling rejected the token's time window; re-signing once"
                );
                self.signer.invalidate(rejection);
                self.attempt(method, path, query, body, Signing::Resigned)
                    .await
            }
            other => other,
        }
    }

    async fn attempt<T>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, u32)],
        body: Option<&[u8]>,
        signing: Signing,
    ) -> Result<T, KlingFailure>
    where
        T: DeserializeOwned,
    {
        let token = self.signer.token()?;
        let mut request = self
            .http
            .request(method.clone(), client::endpoint(&self.base_url, path))
            .bearer_auth(token.expose_secret());
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let call = Call {
            provider: PROVIDER,
            method: method_name(&method),
            path,
            body_limit: JSON_LIMIT,
            // Reads are safe to repeat; a create is looked up before it is repeated.
            replay: Replay::Safe,
        };
        client::exchange(call, request, |exchange| {
            let result = interpret::<T>(exchange);
            match signing {
                Signing::Cached => result,
                // After the one re-sign a refused token is an auth failure, counted as one.
                Signing::Resigned => result.map_err(KlingFailure::settle),
            }
        })
        .await
    }
}

#[async_trait]
impl VideoGenerator for KlingClient {
    #[tracing::instrument(skip_all, fields(provider = PROVIDER, job_id = %request.job_id, mode = ?request.mode, model = %request.model))]
    async fn submit(&self, request: &VideoRequest) -> Result<ProviderTaskId, ProviderError> {
        let (family, body) = self.create_body(request)?;
        let path = format!("/v1/videos/{family}");
        let outcome_unknown = AtomicBool::new(false);
        let (path, body, outcome_unknown) = (path.as_str(), body.as_slice(), &outcome_unknown);
        self.retry
            .run(PROVIDER, || async move {
                // The last create may have reached Kling: find its task instead of paying twice.
                if outcome_unknown.load(Ordering::Acquire) {
                    if let Some(task) = self.find(family, request.job_id).await? {
                        tracing::info!(provider = PROVIDER, task_id = %task, "found the task of an unanswered create");
                        return Ok(task);
                    }
                }
                let created = self.send::<wire::Task>(Method::POST, path, &[], Some(body)).await.map_err(KlingFailure::into_error);
                if matches!(created, Err(ProviderError::Transient { .. })) {
                    outcome_unknown.store(true, Ordering::Release);
                }
                task_id(created?.task_id)
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, job_id = %job, mode = ?mode))]
    async fn find_by_job(
        &self,
        mode: VideoMode,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        self.retry
            .run(PROVIDER, || self.find(family(mode), job))
            .await
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, task_id = %task, mode = ?mode))]
    async fn status(
        &self,
        mode: VideoMode,
        task: &ProviderTaskId,
    ) -> Result<VideoTaskStatus, ProviderError> {
        if !task
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(invalid("the task id has characters Kling never uses"));
        }
        let path = format!("/v1/videos/{}/{}", family(mode), task.as_str());
        let path = path.as_str();
        let task = self
            .retry
            .run(PROVIDER, || async move {
                self.send::<wire::Task>(Method::GET, path, &[], None)
                    .await
                    .map_err(KlingFailure::into_error)
            })
            .await?;
        task_status(task)
    }

    #[tracing::instrument(skip_all, fields(provider = PROVIDER, job_id = %job))]
    async fn download(&self, url: &str, job: JobId) -> Result<DownloadedAsset, ProviderError> {
        let url = self.result_url(url)?;
        let key = format!("results/{job}.mp4");
        let (url, key) = (&url, key.as_str());
        self.retry
            .run(PROVIDER, || self.download_once(url, key))
            .await
    }
}

/// Whether `url` names this machine (`localhost`, 127.0.0.0/8, `::1`).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}
