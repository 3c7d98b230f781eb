//! Kling JSON bodies (providers.md §1.3–§1.9). Only this module knows the field names.

use serde::{Deserialize, Deserializer, Serialize};

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

/// `POST /v1/videos/text2video` (`image` absent) and `POST /v1/videos/image2video`
/// (`image` is raw base64 with no `data:` prefix).
#[derive(Debug, Serialize)]
pub(crate) struct GenerateVideo<'a> {
    pub model_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub prompt: &'a str,
    pub mode: &'a str,
    /// `16:9` (Kling's default), `9:16` or `1:1`; text → video only (an animated
    /// photo keeps its shape).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<&'static str>,
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

/// A task object (the `data` of create and query, an item of the list's `data` array, and
/// the whole body of a callback).
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
    /// Unix milliseconds; `None` when absent or not a whole number (some mirrors of the
    /// docs type it as a string, so a numeric string is read too).
    #[serde(default, deserialize_with = "millis")]
    pub created_at: Option<i64>,
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

/// A timestamp as a JSON number or a numeric string; anything else is `None`.
fn millis<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

impl Task {
    /// `task_info.external_task_id`, if present.
    pub(crate) fn external_task_id(&self) -> Option<&str> {
        self.task_info
            .as_ref()
            .and_then(|i| i.external_task_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created_at(json: &str) -> Option<i64> {
        serde_json::from_str::<Task>(json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .created_at
    }

    #[test]
    fn created_at_is_read_as_a_number_or_a_numeric_string() {
        let task = r#"{"task_id":"1","task_status":"submitted""#;
        assert_eq!(
            created_at(&format!("{task},\"created_at\":1774805076166}}")),
            Some(1_774_805_076_166)
        );
        assert_eq!(
            created_at(&format!("{task},\"created_at\":\"1774805076166\"}}")),
            Some(1_774_805_076_166)
        );
        assert_eq!(created_at(&format!("{task}}}")), None);
        assert_eq!(created_at(&format!("{task},\"created_at\":null}}")), None);
        assert_eq!(created_at(&format!("{task},\"created_at\":1.5}}")), None);
        assert_eq!(
            created_at(&format!("{task},\"created_at\":\"soon\"}}")),
            None
        );
    }
}
