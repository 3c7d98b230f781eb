//! Kling JSON bodies (providers.md §1.3–§1.9). Only this module knows the field names.

use serde::{Deserialize, Serialize};

/// `{"code":0,"message":"SUCCEED","request_id":…,"data":…}`; errors carry no `data`.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    pub code: i64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
    #[serde(default = "none")]
    pub data: Option<T>,
}

const fn none<T>() -> Option<T> {
    None
}

/// The error envelope: only `code` and `message` matter.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody {
    pub code: i64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// `POST /v1/videos/text2video`.
#[derive(Debug, Serialize)]
pub(crate) struct TextToVideo<'a> {
    pub model_name: &'a str,
    pub prompt: &'a str,
    pub mode: &'a str,
    pub duration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<&'a str>,
    pub external_task_id: String,
}

/// `POST /v1/videos/image2video`; `image` is raw base64 with no `data:` prefix.
#[derive(Debug, Serialize)]
pub(crate) struct ImageToVideo<'a> {
    pub model_name: &'a str,
    pub image: String,
    pub prompt: &'a str,
    pub mode: &'a str,
    pub duration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<&'a str>,
    pub external_task_id: String,
}

/// `POST /v1/videos/omni-video` editing a base video (the output is as long as the input,
/// so no `duration`).
#[derive(Debug, Serialize)]
pub(crate) struct OmniVideo<'a> {
    pub model_name: &'a str,
    pub prompt: String,
    pub video_list: Vec<VideoRef<'a>>,
    pub mode: &'a str,
    pub sound: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<&'a str>,
    pub external_task_id: String,
}

/// One `video_list` item.
#[derive(Debug, Serialize)]
pub(crate) struct VideoRef<'a> {
    pub video_url: &'a str,
    pub refer_type: &'static str,
    pub keep_original_sound: &'static str,
}

/// A task object (the `data` of create and query, and the whole body of a callback).
#[derive(Debug, Deserialize)]
pub(crate) struct Task {
    pub task_id: String,
    pub task_status: String,
    #[serde(default)]
    pub task_status_msg: Option<String>,
    #[serde(default)]
    pub task_info: Option<TaskInfo>,
    #[serde(default)]
    pub task_result: Option<TaskResult>,
}

/// `task_info`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TaskInfo {
    #[serde(default)]
    pub external_task_id: Option<String>,
}

/// `task_result`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TaskResult {
    #[serde(default)]
    pub videos: Vec<Video>,
}

/// `task_result.videos[]`; `duration` is a string such as `"5.1"`.
#[derive(Debug, Deserialize)]
pub(crate) struct Video {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub duration: Option<String>,
}

impl Task {
    /// `task_info.external_task_id`, if present.
    pub(crate) fn external_task_id(&self) -> Option<&str> {
        self.task_info
            .as_ref()
            .and_then(|i| i.external_task_id.as_deref())
    }
}
