//! Generation steps: a Gemini image in one call, a Kling video created once and then
//! polled (with back-off on poll errors, a deadline, and a watch for late results).

use super::*;

/// A video job's request, as the step reads it from the job's spec.
pub(super) struct VideoJob {
    pub(super) mode: VideoMode,
    pub(super) model: String,
    pub(super) duration: crate::pricing::VideoDuration,
    pub(super) prompt: String,
    pub(super) input: Option<crate::job::AssetRef>,
    pub(super) aspect: Option<crate::pricing::AspectRatio>,
}

/// The image type by its magic bytes (inputs come from Telegram as JPEG, but a
/// document may be PNG or WebP).
fn sniff_image(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else if bytes.len() > 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "image/jpeg"
    }
}

/// The file types a Gemini render is stored as.
const RESULT_EXTENSIONS: [&str; 3] = ["png", "jpg", "webp"];

/// Where a job's render is stored: derived from the job alone, so a later step can
/// find it.
fn result_key(job: crate::JobId, ext: &str) -> String {
    format!("results/{job}.{ext}")
}

impl Step<'_> {
    pub(super) async fn image(&mut self) -> Result<Next, JobError> {
        // A call went out before and its answer was never recorded. If the render was
        // stored (the worker lost the database, or died, between storing the file and
        // recording it), it is this job's paid result: record it now. Otherwise the
        // call is not sent again.
        if self.job.provider_calls > self.job.attempts {
            if let Some(result) = self.stored_image().await {
                return self.succeed(result, None, "gemini").await;
            }
            return self
                .call_lost("gemini", "the worker that sent it stopped")
                .await;
        }
        let Some(images) = self.runner.ports.images.clone() else {
            return self
                .fail(FailureReason::ServiceUnavailable {
                    detail: "image generation is not configured".into(),
                })
                .await;
        };
        let mut inputs = Vec::new();
        if let JobSpec::ImageEdit { image, .. } = self.job.spec.clone() {
            match self.input_image(&image).await? {
                Ok(input) => inputs.push(input),
                Err(next) => return Ok(next),
            }
        }
        let look = match &self.job.spec {
            JobSpec::ImageGeneration { look, .. } | JobSpec::ImageEdit { look, .. } => *look,
            JobSpec::Video { .. } => crate::job::ImageLook::default(),
        };
        let request = ImageRequest {
            job_id: self.job.id,
            prompt: self.job.spec.prompt().as_str().to_owned(),
            images: inputs,
            aspect: look.aspect,
            resolution: look.resolution,
        };
        self.write(JobEvent::CallStarted).await?;
        match images.generate(&request).await {
            Ok(image) => {
                let ext = match image.mime_type.as_str() {
                    "image/jpeg" => "jpg",
                    "image/webp" => "webp",
                    _ => "png",
                };
                let key = result_key(self.job.id, ext);
                match self.runner.ports.assets.write(&key, &image.bytes).await {
                    Ok(result) => self.succeed(result, None, "gemini").await,
                    // The render is paid for but could not be kept: try again later
                    // rather than charge for nothing.
                    Err(e) => {
                        self.provider_failed(
                            "gemini",
                            ProviderError::Transient {
                                message: format!("cannot store the result: {e}"),
                            },
                        )
                        .await
                    }
                }
            }
            Err(e) => self.provider_failed("gemini", e).await,
        }
    }

    /// The render of an earlier call of this job, if it was stored (under its
    /// job-derived key) but never recorded. An asset store that cannot answer counts as
    /// nothing stored.
    async fn stored_image(&self) -> Option<crate::job::AssetRef> {
        for ext in RESULT_EXTENSIONS {
            let asset = crate::job::AssetRef::new(result_key(self.job.id, ext));
            if matches!(self.runner.ports.assets.exists(&asset).await, Ok(true)) {
                return Some(asset);
            }
        }
        None
    }

    /// A stored input photo, or what the step does instead: a file that is gone fails
    /// the job (refunded), an asset store outage is one failed attempt, tried again later.
    pub(super) async fn input_image(
        &mut self,
        asset: &crate::job::AssetRef,
    ) -> Result<Result<ImageInput, Next>, JobError> {
        match self.runner.ports.assets.read(asset).await {
            Ok(bytes) => Ok(Ok(ImageInput {
                mime_type: sniff_image(&bytes).to_owned(),
                bytes,
            })),
            Err(e @ AssetError::NotFound(_)) => self
                .fail(FailureReason::BadInput {
                    detail: e.to_string(),
                })
                .await
                .map(Err),
            Err(e @ AssetError::Unavailable(_)) => {
                let transient = ProviderError::Transient {
                    message: format!("cannot read the input: {e}"),
                };
                self.provider_failed("assets", transient).await.map(Err)
            }
        }
    }

    pub(super) async fn succeed(
        &mut self,
        result: crate::job::AssetRef,
        result_url: Option<String>,
        provider: &'static str,
    ) -> Result<Next, JobError> {
        let late = self.job.state.is_final();
        let actual_cost = self.job.quote.amount;
        self.write(JobEvent::Succeeded {
            result,
            actual_cost,
            result_url,
        })
        .await?;
        if late {
            self.notes.push(StepNote::LateResult { provider });
        }
        Ok(Next::Continue)
    }

    /// A downloaded video: captured, unless the messenger cannot take a file that large
    /// and no download link can be made — then nothing could be delivered, so the job is
    /// refunded instead of charged.
    pub(super) async fn video_ready(
        &mut self,
        asset: crate::ports::DownloadedAsset,
        url: String,
    ) -> Result<Next, JobError> {
        let limit = self.runner.ports.notifier.upload_limit();
        let deliverable = limit.is_none_or(|limit| asset.bytes <= limit)
            || self
                .runner
                .ports
                .assets
                .download_link(&asset.asset, self.runner.now())
                .is_some();
        if !deliverable && !self.job.state.is_final() {
            let megabytes = asset.bytes.div_ceil(1024 * 1024);
            return self.fail(FailureReason::ResultTooLarge { megabytes }).await;
        }
        self.succeed(asset.asset, Some(url), "kling").await
    }

    pub(super) async fn video(&mut self, v: VideoJob) -> Result<Next, JobError> {
        let Some(videos) = self.runner.ports.videos.clone() else {
            return self
                .fail(FailureReason::ServiceUnavailable {
                    detail: "video generation is not configured".into(),
                })
                .await;
        };
        if let Some(task) = self.job.provider_task_id.clone() {
            return match videos.status(v.mode, &task).await {
                Ok(VideoTaskStatus::Submitted | VideoTaskStatus::Processing) => {
                    if self.write(JobEvent::Generating).await?.changed {
                        self.progress().await?;
                    }
                    Ok(Next::Wait(self.runner.config.poll_interval))
                }
                Ok(VideoTaskStatus::Succeeded { url, .. }) => {
                    match videos.download(&url, self.job.id).await {
                        Ok(asset) => self.video_ready(asset, url).await,
                        Err(e) => self.poll_failed(e).await,
                    }
                }
                Ok(VideoTaskStatus::Failed { message }) => {
                    self.fail(FailureReason::ProviderFailed { detail: message })
                        .await
                }
                Err(e) => self.poll_failed(e).await,
            };
        }
        if self.job.provider_calls > 0 {
            // A create was sent before and its task id never stored: find the task
            // instead of paying for another one.
            match videos.find_by_job(v.mode, self.job.id).await {
                Ok(Some(task)) => {
                    self.write(JobEvent::ProviderTaskCreated { task_id: task })
                        .await?;
                    self.progress().await?;
                    return Ok(Next::Continue);
                }
                Ok(None) => {}
                Err(e) => return self.provider_failed("kling", e).await,
            }
        }
        let input = match (&v.mode, &v.input) {
            (VideoMode::TextToVideo, _) => VideoInput::None,
            (VideoMode::ImageToVideo, Some(image)) => match self.input_image(image).await? {
                Ok(input) => VideoInput::Image(input),
                Err(next) => return Ok(next),
            },
            (VideoMode::VideoToVideo, Some(source)) => {
                match self.runner.ports.assets.public_url(source) {
                    Some(url) => VideoInput::VideoUrl(url),
                    None => {
                        return self
                            .fail(FailureReason::ServiceUnavailable {
                                detail: "video to video needs PUBLIC_URL".into(),
                            })
                            .await;
                    }
                }
            }
            (VideoMode::ImageToVideo | VideoMode::VideoToVideo, None) => {
                return self
                    .fail(FailureReason::BadInput {
                        detail: "the input file is missing".into(),
                    })
                    .await;
            }
        };
        let request = VideoRequest {
            job_id: self.job.id,
            mode: v.mode,
            model: v.model,
            duration: v.duration,
            prompt: v.prompt,
            input,
            callback_url: None,
            aspect: match v.mode {
                VideoMode::TextToVideo => v.aspect,
                VideoMode::ImageToVideo | VideoMode::VideoToVideo => None,
            },
        };
        self.write(JobEvent::CallStarted).await?;
        match videos.submit(&request).await {
            Ok(task) => {
                self.write(JobEvent::ProviderTaskCreated { task_id: task })
                    .await?;
                self.progress().await?;
                Ok(Next::Continue)
            }
            Err(e) => self.provider_failed("kling", e).await,
        }
    }

    /// Asking about a running task (or fetching its result) failed: counted and asked
    /// again later with a growing wait. It never ends the job — the task may still be
    /// running at the provider; only the deadline does.
    pub(super) async fn poll_failed(&mut self, error: ProviderError) -> Result<Next, JobError> {
        self.note_provider_error("kling", &error).await;
        self.try_again_later(&error).await
    }

    /// A job refunded while its provider worked: ask once more whether the result came.
    pub(super) async fn watch(&mut self) -> Result<Next, JobError> {
        let now = self.runner.now();
        if self.job.watch_until.is_none_or(|until| now >= until) {
            self.write(JobEvent::WatchEnded).await?;
            return Ok(Next::Finished);
        }
        let (JobSpec::Video { mode, .. }, Some(videos)) =
            (&self.job.spec, self.runner.ports.videos.clone())
        else {
            // An image call's answer comes only to the worker that sent it.
            self.write(JobEvent::WatchEnded).await?;
            return Ok(Next::Finished);
        };
        let mode = *mode;
        let Some(task) = self.job.provider_task_id.clone() else {
            return match videos.find_by_job(mode, self.job.id).await {
                Ok(Some(task)) => {
                    self.write(JobEvent::ProviderTaskCreated { task_id: task })
                        .await?;
                    Ok(Next::Continue)
                }
                Ok(None) => {
                    self.write(JobEvent::WatchEnded).await?;
                    Ok(Next::Finished)
                }
                Err(_) => self.watch_again(self.runner.config.watch_poll).await,
            };
        };
        match videos.status(mode, &task).await {
            Ok(VideoTaskStatus::Succeeded { url, .. }) => {
                match videos.download(&url, self.job.id).await {
                    Ok(asset) => self.video_ready(asset, url).await,
                    Err(_) => self.watch_again(self.runner.config.watch_poll).await,
                }
            }
            Ok(VideoTaskStatus::Failed { .. }) => {
                self.write(JobEvent::WatchEnded).await?;
                Ok(Next::Finished)
            }
            Ok(VideoTaskStatus::Submitted | VideoTaskStatus::Processing) | Err(_) => {
                self.watch_again(self.runner.config.watch_poll).await
            }
        }
    }

    pub(super) async fn watch_again(&mut self, wait: Duration) -> Result<Next, JobError> {
        let run_after = self.runner.now().plus(wait);
        self.write(JobEvent::Released { run_after }).await?;
        Ok(Next::Released)
    }

    /// Best effort: the status message shows the stored progress. A status message the
    /// notifier starts is stored with the job, so later notices edit it.
    pub(super) async fn progress(&mut self) -> Result<(), JobError> {
        let notice = Notice::JobProgress {
            job_id: self.job.id,
            progress: self.job.progress,
            status_message: self.job.status_message.clone(),
        };
        match self
            .runner
            .ports
            .notifier
            .notify(self.job.user_id, notice)
            .await
        {
            Ok(Some(message)) if self.job.status_message.as_ref() != Some(&message) => {
                self.write(JobEvent::StatusMessage { message }).await?;
            }
            Ok(_) => {}
            Err(e) => self.notes.push(StepNote::NotSent {
                what: "progress",
                error: e.to_string(),
            }),
        }
        Ok(())
    }
}
