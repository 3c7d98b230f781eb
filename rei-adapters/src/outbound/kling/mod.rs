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
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use url::Url;

use auth::Rejection;
pub use auth::{CredentialsError, KlingCredentials};
pub use models::{
    DEFAULT_MODELS, DEFAULT_OMNI_MODEL, KlingModel, ModelListError, is_omni, supports,
};

use crate::outbound::client::{
    self, Call, Classified, ClientBuildError, Exchange, HttpConfig, Outcome, Replay, RetryPolicy,
};
use crate::outbound::files::{AssetError, AssetStore};

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
/// Tasks per page of the task list read when a lookup does not show a job's task (the
/// largest `pageSize` Kling accepts, providers.md §1.4).
const LIST_PAGE_SIZE: u32 = 500;
/// Pages of the task list read at most: with [`LIST_PAGE_SIZE`], the 2000 newest tasks.
const LIST_MAX_PAGES: u32 = 4;
/// How far back the task list is read: a page that ends with tasks older than this ends
/// the search (a job's task is created minutes, not days, before it is searched for).
const LIST_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

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
    base_url: Url,
    signer: auth::TokenSigner,
    models: Vec<KlingModel>,
    omni_model: String,
    mode: KlingMode,
    callback_url: Option<String>,
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
        Ok(Self {
            http: client::build_client(PROVIDER, &config.http)?,
            base_url,
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
        let callback_url = request
            .callback_url
            .as_deref()
            .or(self.callback_url.as_deref());
        let mode = self.mode.as_str();
        let duration = request.duration.seconds().to_string();
        let body = match (request.mode, &request.input) {
            (VideoMode::TextToVideo, VideoInput::None) => {
                self.check_model(&request.model, VideoMode::TextToVideo)?;
                if prompt.is_empty() {
                    return Err(invalid("text→video needs a prompt"));
                }
                check_prompt_length(prompt)?;
                let model_name = request.model.as_str();
                serde_json::to_vec(&wire::TextToVideo {
                    model_name,
                    prompt,
                    mode,
                    duration,
                    callback_url,
                    external_task_id,
                })
            }
            (VideoMode::ImageToVideo, VideoInput::Image(input)) => {
                self.check_model(&request.model, VideoMode::ImageToVideo)?;
                check_prompt_length(prompt)?;
                image::check(&input.bytes).map_err(invalid)?;
                let image = base64::engine::general_purpose::STANDARD.encode(&input.bytes);
                let model_name = request.model.as_str();
                serde_json::to_vec(&wire::ImageToVideo {
                    model_name,
                    image,
                    prompt,
                    mode,
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

    /// The task created for this job, if any: looked up by `external_task_id`, then, when
    /// that answer does not show the task, searched for in the task list. `Ok(None)` only
    /// when the lookup said "not found" and the list holds no such task either.
    async fn find(
        &self,
        family: &'static str,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        let unclear = match self.lookup(family, job).await? {
            Lookup::Found(task) => return Ok(Some(task)),
            Lookup::NotFound => None,
            Lookup::Unclear(why) => Some(why),
        };
        if let Some(task) = self.search_list(family, job).await? {
            tracing::info!(
                provider = PROVIDER,
                task_id = %task,
                "found the job's task in Kling's task list"
            );
            return Ok(Some(task));
        }
        match unclear {
            None => Ok(None),
            Some(why) => Err(ProviderError::Unknown {
                message: format!(
                    "cannot tell whether Kling has a task for job {job}: the lookup {why}, \
                     and the task list has none"
                ),
            }),
        }
    }

    /// `GET /v1/videos/<family>/<job id>`: what Kling says about the task created for this
    /// job. Failures of the service (timeouts, 5xx, rate limits, auth) are errors; answers
    /// that show no task of this job are [`Lookup::NotFound`] or [`Lookup::Unclear`].
    async fn lookup(&self, family: &'static str, job: JobId) -> Result<Lookup, ProviderError> {
        let external = job.to_string();
        let path = format!("/v1/videos/{family}/{external}");
        let task = match self.send::<wire::Task>(Method::GET, &path, &[], None).await {
            Ok(task) => task,
            // Any 404 (with or without Kling's envelope) and code 1203 say "no such task"
            // (the exact answer is unconfirmed; docs/providers.md). The list confirms it.
            Err(KlingFailure::Provider { code, status, .. })
                if status == Some(404) || code == Some(1203) =>
            {
                tracing::info!(
                    provider = PROVIDER,
                    http_status = status,
                    kling_code = code,
                    "Kling's lookup has no task for this job; reading the task list"
                );
                return Ok(Lookup::NotFound);
            }
            Err(failure) => {
                return match failure.into_error() {
                    ProviderError::InvalidRequest { message }
                    | ProviderError::Unknown { message } => {
                        tracing::warn!(
                            provider = PROVIDER,
                            error = %message,
                            "Kling's lookup answer shows no task; reading the task list"
                        );
                        Ok(Lookup::Unclear(format!("answered `{message}`")))
                    }
                    error => Err(error),
                };
            }
        };
        match task.external_task_id() {
            Some(found) if found == external => task_id(task.task_id).map(Lookup::Found),
            found => {
                let why = found.map_or_else(
                    || "returned a task without external_task_id".to_owned(),
                    |found| format!("returned the task of `{}`", client::truncate(found, 64)),
                );
                tracing::warn!(
                    provider = PROVIDER,
                    task_id = %client::truncate(&task.task_id, 64),
                    "Kling's lookup {why}; reading the task list"
                );
                Ok(Lookup::Unclear(why))
            }
        }
    }

    /// Reads the task list (`GET /v1/videos/<family>?pageNum=N&pageSize=500`, newest first)
    /// for the task whose `external_task_id` is the job id.
    ///
    /// `Ok(None)` once the list ends, or once a page in newest-first order ends with tasks
    /// older than [`LIST_WINDOW`]. A failing page, or [`LIST_MAX_PAGES`] pages without
    /// either end, is an error: the task may exist.
    async fn search_list(
        &self,
        family: &'static str,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        let external = job.to_string();
        let path = format!("/v1/videos/{family}");
        let oldest = now_millis().saturating_sub(millis(LIST_WINDOW));
        let page_size = usize::try_from(LIST_PAGE_SIZE).unwrap_or(usize::MAX);
        for page in 1..=LIST_MAX_PAGES {
            let query = [("pageNum", page), ("pageSize", LIST_PAGE_SIZE)];
            let tasks = self
                .send::<Vec<wire::Task>>(Method::GET, &path, &query, None)
                .await
                .map_err(KlingFailure::into_error)?;
            match scan_page(tasks, &external, page_size, oldest) {
                Scan::Found(id) => return task_id(id).map(Some),
                Scan::End => {
                    tracing::info!(
                        provider = PROVIDER,
                        pages = page,
                        "Kling's task list has no task for this job"
                    );
                    return Ok(None);
                }
                Scan::More => {}
            }
        }
        Err(ProviderError::Unknown {
            message: format!(
                "the {LIST_MAX_PAGES} newest pages of Kling's task list hold no task of job \
                 {external} but do not reach tasks older than a day: a task may exist"
            ),
        })
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

    async fn download_once(&self, url: &Url, key: &str) -> Result<DownloadedAsset, ProviderError> {
        let span = tracing::info_span!(
            "provider_request",
            provider = PROVIDER,
            method = "GET",
            path = url.path(),
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let result = self.fetch_into(url, key).await;
            let latency = started.elapsed();
            tracing::Span::current().record(
                "latency_ms",
                u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            );
            client::record_outcome(PROVIDER, Outcome::of(&result), latency);
            result
        }
        .instrument(span)
        .await
    }

    async fn fetch_into(&self, url: &Url, key: &str) -> Result<DownloadedAsset, ProviderError> {
        let response = self
            .http
            .get(url.clone())
            .timeout(self.download.timeout)
            .send()
            .await
            .map_err(client::transport_error)?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        if !status.is_success() {
            return Err(match status.as_u16() {
                429 => ProviderError::RateLimited {
                    retry_after: client::retry_after(response.headers()),
                },
                408 | 500..=599 => ProviderError::Transient {
                    message: format!("the result download answered HTTP {status}"),
                },
                _ => ProviderError::Unknown {
                    message: format!("the result download answered HTTP {status}"),
                },
            });
        }
        let max = self.download.max_bytes;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let stream = response.bytes_stream().map_err(reqwest::Error::without_url);
        match self.assets.write_stream(key, stream, max).await {
            Ok((asset, bytes)) => Ok(DownloadedAsset { asset, bytes }),
            Err(AssetError::TooLarge { limit }) => Err(too_large(limit)),
            Err(AssetError::Source { message }) => Err(ProviderError::Transient {
                message: format!("the download broke off: {message}"),
            }),
            Err(e @ (AssetError::InvalidKey { .. } | AssetError::Io(_))) => {
                Err(ProviderError::Unknown {
                    message: format!("cannot store the result: {e}"),
                })
            }
        }
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
        let url =
            parse_http_url(url).ok_or_else(|| invalid("the result URL is not an http(s) URL"))?;
        let key = format!("results/{job}.mp4");
        let (url, key) = (&url, key.as_str());
        self.retry
            .run(PROVIDER, || self.download_once(url, key))
            .await
    }
}

/// What a Kling callback names: the task to re-read. Nothing is credited or delivered
/// from a callback: it carries no signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlingCallback {
    /// Kling's task id.
    pub task_id: ProviderTaskId,
    /// `task_info.external_task_id` (our job id), when present.
    pub external_task_id: Option<String>,
    /// `task_status` as sent (`submitted`, `processing`, `succeed`, `failed`); a hint only.
    pub status: String,
}

impl KlingCallback {
    /// The job the task belongs to, when `external_task_id` is one of our job ids.
    #[must_use]
    pub fn job_id(&self) -> Option<JobId> {
        self.external_task_id
            .as_deref()
            .and_then(|id| id.parse().ok())
    }
}

/// A callback body that is not a Kling task object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a Kling task callback: {0}")]
pub struct CallbackError(String);

/// Parses a callback body (the task object itself, without the `code`/`data` envelope).
///
/// # Errors
/// [`CallbackError`] for malformed JSON or a missing or invalid `task_id`.
pub fn parse_callback(body: &[u8]) -> Result<KlingCallback, CallbackError> {
    let task: wire::Task =
        serde_json::from_slice(body).map_err(|e| CallbackError(e.to_string()))?;
    let external_task_id = task.external_task_id().map(str::to_owned);
    let task_id = ProviderTaskId::new(task.task_id).map_err(|e| CallbackError(e.to_string()))?;
    Ok(KlingCallback {
        task_id,
        external_task_id,
        status: task.task_status,
    })
}

/// Parses Kling's `duration` string (`"5"`, `"5.1"`) into milliseconds without floats;
/// digits after the third decimal are dropped.
#[must_use]
pub fn duration_millis(text: &str) -> Option<u32> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: u32 = whole.parse().ok()?;
    let mut millis: u32 = 0;
    for (i, digit) in fraction.bytes().take(3).enumerate() {
        millis += u32::from(digit - b'0') * [100, 10, 1][i];
    }
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// The endpoint family of a mode (providers.md §1.4).
const fn family(mode: VideoMode) -> &'static str {
    match mode {
        VideoMode::TextToVideo => "text2video",
        VideoMode::ImageToVideo => "image2video",
        VideoMode::VideoToVideo => "omni-video",
    }
}

/// What the lookup by `external_task_id` said.
#[derive(Debug)]
enum Lookup {
    /// The job's task.
    Found(ProviderTaskId),
    /// "No such task": HTTP 404 or code 1203.
    NotFound,
    /// An answer that shows no task of this job without saying there is none (another
    /// job's task, a task without `external_task_id`, another 4xx, a malformed body); the
    /// text says what came back.
    Unclear(String),
}

/// What one page of the task list says.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    /// The `task_id` of the job's task.
    Found(String),
    /// No later page can hold the task: the list ended, or this page, newest first, ends
    /// with tasks older than the window.
    End,
    /// The next page may hold it.
    More,
}

/// Looks for `external` on one page of the task list. The list order is not documented:
/// the age rule applies only to a page whose `created_at` never increases (newest first),
/// so a list in any other order is read to its end or to the page budget.
fn scan_page(tasks: Vec<wire::Task>, external: &str, page_size: usize, oldest_ms: i64) -> Scan {
    let last_page = tasks.len() < page_size;
    let created: Option<Vec<i64>> = tasks.iter().map(|t| t.created_at).collect();
    let reaches_old_tasks = created.is_some_and(|created| {
        created.windows(2).all(|pair| pair[0] >= pair[1])
            && created.last().is_some_and(|&last| last < oldest_ms)
    });
    match tasks
        .into_iter()
        .find(|t| t.external_task_id() == Some(external))
    {
        Some(task) => Scan::Found(task.task_id),
        None if last_page || reaches_old_tasks => Scan::End,
        None => Scan::More,
    }
}

/// Now in Unix milliseconds, Kling's timestamps.
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Which token an attempt carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signing {
    /// The cached one: a 1003/1004 answer asks for one re-sign.
    Cached,
    /// One signed after Kling refused the cached one: a refusal now is final.
    Resigned,
}

/// A failed Kling exchange: a mapped error with Kling's code and the HTTP status, or a
/// token to re-sign.
#[derive(Debug)]
enum KlingFailure {
    Provider {
        error: ProviderError,
        code: Option<i64>,
        status: Option<u16>,
    },
    TokenRejected {
        error: ProviderError,
        rejection: Rejection,
    },
}

impl KlingFailure {
    fn into_error(self) -> ProviderError {
        match self {
            Self::Provider { error, .. } | Self::TokenRejected { error, .. } => error,
        }
    }

    /// After the one re-sign, a rejected token is an ordinary auth failure.
    fn settle(self) -> Self {
        match self {
            Self::TokenRejected { error, .. } => Self::Provider {
                error,
                code: None,
                status: None,
            },
            other => other,
        }
    }
}

impl From<ProviderError> for KlingFailure {
    fn from(error: ProviderError) -> Self {
        Self::Provider {
            error,
            code: None,
            status: None,
        }
    }
}

impl Classified for KlingFailure {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Provider { error, .. } => Outcome::Failed(error.kind()),
            // Not an error yet: the call is repeated with a new token.
            Self::TokenRejected { .. } => Outcome::Reauth,
        }
    }
}

fn interpret<T>(exchange: Exchange) -> Result<T, KlingFailure>
where
    T: DeserializeOwned,
{
    let status = exchange.status.as_u16();
    if exchange.status.is_success() {
        let envelope: wire::Envelope<T> =
            serde_json::from_slice(&exchange.body).map_err(malformed)?;
        if envelope.code != 0 {
            return Err(classify(
                status,
                Some(envelope.code),
                envelope.message.as_deref(),
                exchange.retry_after,
            ));
        }
        return envelope.data.ok_or_else(|| {
            let request = envelope.request_id.unwrap_or_default();
            KlingFailure::from(ProviderError::Unknown {
                message: format!("Kling answered code 0 without data (request {request})"),
            })
        });
    }
    let body: Option<wire::ErrorBody> = serde_json::from_slice(&exchange.body).ok();
    if let Some(request_id) = body.as_ref().and_then(|b| b.request_id.as_deref()) {
        tracing::debug!(
            provider = PROVIDER,
            status,
            request_id,
            "Kling error answer"
        );
    }
    let code = body.as_ref().map(|b| b.code);
    Err(classify(
        status,
        code,
        body.as_ref().and_then(|b| b.message.as_deref()),
        exchange.retry_after,
    ))
}

/// Maps Kling's answer to the error model (providers.md §0.1, §1.9): by `code` first
/// (429 means both "slow down" and "out of funds"), by HTTP status otherwise.
fn classify(
    status: u16,
    code: Option<i64>,
    message: Option<&str>,
    retry_after: Option<Duration>,
) -> KlingFailure {
    let words = message
        .map(|m| client::truncate(m.trim(), 300))
        .filter(|m| !m.is_empty());
    let text = match (code, &words) {
        (Some(c), Some(w)) => format!("Kling {c}: {w}"),
        (Some(c), None) => format!("Kling {c} (HTTP {status})"),
        (None, _) => format!("Kling answered HTTP {status}"),
    };
    let error = match code {
        Some(code @ (1003 | 1004)) => {
            return KlingFailure::TokenRejected {
                error: ProviderError::Auth { message: text },
                rejection: if code == 1003 {
                    Rejection::NotYetValid
                } else {
                    Rejection::Expired
                },
            };
        }
        Some(1000..=1002 | 1100 | 1103 | 1304) => ProviderError::Auth { message: text },
        Some(1101 | 1102) => ProviderError::OutOfFunds { message: text },
        Some(1200..=1203) => ProviderError::InvalidRequest { message: text },
        Some(1300 | 1301) => ProviderError::Refused {
            reason: words
                .unwrap_or_else(|| "the request was refused by Kling's content policy".to_owned()),
        },
        Some(1302 | 1303) => ProviderError::RateLimited { retry_after },
        Some(5000..=5002) => ProviderError::Transient { message: text },
        _ => match status {
            401 | 403 => ProviderError::Auth { message: text },
            429 => ProviderError::RateLimited { retry_after },
            400 | 404 | 405 | 413 | 422 => ProviderError::InvalidRequest { message: text },
            408 | 500..=599 => ProviderError::Transient { message: text },
            _ => ProviderError::Unknown { message: text },
        },
    };
    KlingFailure::Provider {
        error,
        code,
        status: Some(status),
    }
}

fn task_status(task: wire::Task) -> Result<VideoTaskStatus, ProviderError> {
    match task.task_status.as_str() {
        "submitted" => Ok(VideoTaskStatus::Submitted),
        "processing" => Ok(VideoTaskStatus::Processing),
        "succeed" => {
            let video = task.task_result.and_then(|r| r.videos.into_iter().next());
            let (url, duration) = video.map(|v| (v.url, v.duration)).unwrap_or_default();
            let url =
                url.filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| ProviderError::Unknown {
                        message: format!(
                            "Kling task {} succeeded without a video URL",
                            task.task_id
                        ),
                    })?;
            Ok(VideoTaskStatus::Succeeded {
                url,
                duration_ms: duration.as_deref().and_then(duration_millis),
            })
        }
        "failed" => {
            let message = task.task_status_msg.filter(|m| !m.trim().is_empty());
            Ok(VideoTaskStatus::Failed {
                message: message.unwrap_or_else(|| "Kling reported the task as failed".to_owned()),
            })
        }
        other => Err(ProviderError::Unknown {
            message: format!(
                "unknown Kling task status `{}`",
                client::truncate(other, 32)
            ),
        }),
    }
}

fn task_id(id: String) -> Result<ProviderTaskId, ProviderError> {
    ProviderTaskId::new(id).map_err(|e| ProviderError::Unknown {
        message: format!("Kling returned an unusable task id: {e}"),
    })
}

fn malformed(error: serde_json::Error) -> KlingFailure {
    ProviderError::Unknown {
        message: format!("malformed Kling answer: {error}"),
    }
    .into()
}

fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::InvalidRequest {
        message: message.into(),
    }
}

fn too_large(limit: u64) -> ProviderError {
    ProviderError::Unknown {
        message: format!("the result is larger than the {limit}-byte download cap"),
    }
}

/// Kling's prompt limit, on the prompt as sent.
fn check_prompt_length(prompt: &str) -> Result<(), ProviderError> {
    if prompt.chars().count() > MAX_PROMPT_CHARS {
        return Err(invalid(format!(
            "the prompt is longer than {MAX_PROMPT_CHARS} characters"
        )));
    }
    Ok(())
}

fn method_name(method: &Method) -> &'static str {
    if *method == Method::POST {
        "POST"
    } else {
        "GET"
    }
}

fn parse_http_url(text: &str) -> Option<Url> {
    Url::parse(text.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use rei_core::ports::ProviderErrorKind;

    use super::*;

    #[test]
    fn durations_convert_to_millis_without_floats() {
        assert_eq!(duration_millis("5"), Some(5_000));
        assert_eq!(duration_millis("5.1"), Some(5_100));
        assert_eq!(duration_millis("10.04"), Some(10_040));
        assert_eq!(duration_millis("4.9999"), Some(4_999));
        assert_eq!(duration_millis(""), None);
        assert_eq!(duration_millis("abc"), None);
        assert_eq!(duration_millis("-5"), None);
        assert_eq!(duration_millis("5."), Some(5_000));
        assert_eq!(duration_millis("99999999"), None);
    }

    fn kind_of(failure: &KlingFailure) -> ProviderErrorKind {
        match failure {
            KlingFailure::Provider { error, .. } | KlingFailure::TokenRejected { error, .. } => {
                error.kind()
            }
        }
    }

    #[test]
    fn code_decides_before_http_status() {
        let kind = |status, code: i64| kind_of(&classify(status, Some(code), Some("m"), None));
        assert_eq!(kind(429, 1302), ProviderErrorKind::RateLimited);
        assert_eq!(kind(429, 1303), ProviderErrorKind::RateLimited);
        assert_eq!(kind(429, 1101), ProviderErrorKind::OutOfFunds);
        assert_eq!(kind(429, 1102), ProviderErrorKind::OutOfFunds);
        assert_eq!(kind(429, 1100), ProviderErrorKind::Auth);
        assert_eq!(kind(429, 1304), ProviderErrorKind::Auth);
        assert_eq!(kind(400, 1301), ProviderErrorKind::Refused);
        assert_eq!(kind(401, 1004), ProviderErrorKind::Auth);
        assert!(matches!(
            classify(401, Some(1003), None, None),
            KlingFailure::TokenRejected {
                rejection: Rejection::NotYetValid,
                ..
            }
        ));
        assert!(matches!(
            classify(401, Some(1004), None, None),
            KlingFailure::TokenRejected {
                rejection: Rejection::Expired,
                ..
            }
        ));
        assert_eq!(
            classify(401, Some(1004), None, None).outcome(),
            Outcome::Reauth,
            "a refused token is not counted as an auth error before the re-sign"
        );
        assert_eq!(
            classify(401, Some(1004), None, None).settle().outcome(),
            Outcome::Failed(ProviderErrorKind::Auth)
        );
        assert_eq!(
            kind_of(&classify(502, None, None, None)),
            ProviderErrorKind::Transient
        );
        assert_eq!(
            kind_of(&classify(418, None, None, None)),
            ProviderErrorKind::Unknown
        );
    }

    #[test]
    fn rate_limits_without_retry_after_wait_at_least_a_second_by_default() {
        let credentials = KlingCredentials::from_combined(&secrecy::SecretString::from("ak:sk"))
            .unwrap_or_else(|e| panic!("{e}"));
        let policy = KlingConfig::new(credentials).retry;
        let limited = ProviderError::RateLimited { retry_after: None };
        for backoff in [1, 250, 500, 999] {
            let delay = policy.delay_for(&limited, Some(Duration::from_millis(backoff)));
            assert_eq!(delay, Some(Duration::from_secs(1)), "backoff {backoff} ms");
        }
        assert_eq!(
            policy.delay_for(&limited, Some(Duration::from_secs(4))),
            Some(Duration::from_secs(4))
        );
    }

    /// A page of `(external_task_id, created_at)` tasks (`None`: field absent).
    fn page(tasks: &[(&str, Option<i64>)]) -> Vec<wire::Task> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, (external, created))| {
                serde_json::from_value(serde_json::json!({
                    "task_id": format!("t{i}"), "task_status": "succeed",
                    "task_info": {"external_task_id": external}, "created_at": created,
                }))
                .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect()
    }

    #[track_caller]
    fn check(tasks: &[(&str, Option<i64>)], page_size: usize, expected: Scan) {
        assert_eq!(scan_page(page(tasks), "job", page_size, 100), expected);
    }

    #[test]
    fn a_page_finds_the_task_wherever_it_is() {
        check(
            &[("a", Some(300)), ("job", Some(50))],
            2,
            Scan::Found("t1".into()),
        );
        check(&[("job", None)], 5, Scan::Found("t0".into()));
    }

    #[test]
    fn a_short_page_ends_the_list() {
        check(&[], 2, Scan::End);
        check(&[("a", Some(300))], 2, Scan::End);
        check(&[("a", None)], 2, Scan::End);
    }

    #[test]
    fn a_full_newest_first_page_ending_in_old_tasks_ends_the_search() {
        check(&[("a", Some(300)), ("b", Some(99))], 2, Scan::End);
        check(&[("a", Some(300)), ("b", Some(100))], 2, Scan::More);
        check(&[("a", Some(300)), ("b", Some(300))], 2, Scan::More);
    }

    #[test]
    fn old_tasks_end_nothing_unless_the_page_is_newest_first_with_known_times() {
        check(&[("a", Some(50)), ("b", Some(300))], 2, Scan::More);
        check(
            &[("a", Some(99)), ("b", Some(50)), ("c", Some(300))],
            3,
            Scan::More,
        );
        check(&[("a", None), ("b", Some(50))], 2, Scan::More);
    }
}
