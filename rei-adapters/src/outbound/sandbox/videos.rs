//! Placeholder videos: a task that "renders" for a moment, then the bundled MP4.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rei_core::ids::{JobId, ProviderTaskId};
use rei_core::job::VideoMode;
use rei_core::ports::{
    DownloadedAsset, ProviderError, VideoGenerator, VideoRequest, VideoTaskStatus,
};

use crate::outbound::files::AssetStore;

/// A 3-second 640×360 H.264 clip that says "REI SANDBOX".
pub const SANDBOX_MP4: &[u8] = include_bytes!("sandbox.mp4");

/// Where a finished sandbox task says its result is (read by [`SandboxVideos`] only).
const RESULT_URL: &str = "sandbox:video";
/// Task ids: `sandbox-<job>-<submitted, unix ms>`.
const TASK_PREFIX: &str = "sandbox-";

/// Stands in for Kling: every task succeeds `render_for` after it was submitted, with
/// [`SANDBOX_MP4`] as its result.
#[derive(Clone, Debug)]
pub struct SandboxVideos {
    assets: AssetStore,
    render_for: Duration,
}

impl SandboxVideos {
    /// Results are written to `assets`; tasks finish after `render_for`.
    #[must_use]
    pub const fn new(assets: AssetStore, render_for: Duration) -> Self {
        Self { assets, render_for }
    }
}

fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// When a task was submitted, from its id.
fn submitted_at(task: &ProviderTaskId) -> Result<u128, ProviderError> {
    task.as_str()
        .strip_prefix(TASK_PREFIX)
        .and_then(|rest| rest.rsplit_once('-'))
        .and_then(|(_, millis)| millis.parse().ok())
        .ok_or_else(|| ProviderError::NotFound {
            message: format!("{} is not a sandbox task", task.as_str()),
        })
}

#[async_trait]
impl VideoGenerator for SandboxVideos {
    async fn submit(&self, request: &VideoRequest) -> Result<ProviderTaskId, ProviderError> {
        let id = format!("{TASK_PREFIX}{}-{}", request.job_id, now_millis());
        tracing::info!(job_id = %request.job_id, model = %request.model, "sandbox video task submitted");
        ProviderTaskId::new(id).map_err(|e| ProviderError::Unknown {
            message: e.to_string(),
        })
    }

    async fn find_by_job(
        &self,
        _: VideoMode,
        _: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        // Nothing is charged per task here: a task lost in a crash is simply submitted again.
        Ok(None)
    }

    async fn status(
        &self,
        _: VideoMode,
        task: &ProviderTaskId,
    ) -> Result<VideoTaskStatus, ProviderError> {
        let submitted = submitted_at(task)?;
        if now_millis() < submitted + self.render_for.as_millis() {
            return Ok(VideoTaskStatus::Processing);
        }
        Ok(VideoTaskStatus::Succeeded {
            url: RESULT_URL.to_owned(),
            duration_ms: Some(3_000),
        })
    }

    async fn download(&self, url: &str, job: JobId) -> Result<DownloadedAsset, ProviderError> {
        if url != RESULT_URL {
            return Err(ProviderError::InvalidRequest {
                message: "not a sandbox result".into(),
            });
        }
        let asset = self
            .assets
            .write(&format!("results/{job}.mp4"), SANDBOX_MP4)
            .await
            .map_err(|e| ProviderError::Transient {
                message: format!("the sandbox video could not be stored: {e}"),
            })?;
        Ok(DownloadedAsset {
            asset,
            bytes: u64::try_from(SANDBOX_MP4.len()).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rei_core::ports::VideoInput;
    use rei_core::pricing::VideoDuration;

    #[tokio::test]
    async fn a_task_renders_for_a_moment_then_delivers_the_bundled_clip() {
        let dir = tempfile::tempdir().unwrap();
        let assets = AssetStore::new(dir.path());
        let videos = SandboxVideos::new(assets.clone(), Duration::from_millis(300));
        let job = JobId::from_uuid(uuid::Uuid::new_v4());
        let task = videos
            .submit(&VideoRequest {
                job_id: job,
                mode: VideoMode::TextToVideo,
                model: "kling-v2-6".into(),
                duration: VideoDuration::Five,
                prompt: "a wave".into(),
                input: VideoInput::None,
                callback_url: None,
                aspect: None,
            })
            .await
            .unwrap();
        let status = videos.status(VideoMode::TextToVideo, &task).await.unwrap();
        assert_eq!(status, VideoTaskStatus::Processing);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let VideoTaskStatus::Succeeded { url, .. } =
            videos.status(VideoMode::TextToVideo, &task).await.unwrap()
        else {
            panic!("done after its render time")
        };
        let got = videos.download(&url, job).await.unwrap();
        assert_eq!(assets.read(&got.asset).await.unwrap(), SANDBOX_MP4);
        assert_eq!(&SANDBOX_MP4[4..8], b"ftyp", "an MP4");
        let bogus = ProviderTaskId::new("kling-123").unwrap();
        assert!(matches!(
            videos.status(VideoMode::TextToVideo, &bogus).await,
            Err(ProviderError::NotFound { .. })
        ));
    }
}
