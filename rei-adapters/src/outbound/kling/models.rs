//! Kling models offered in the menu (`KLING_MODELS`) and what each can do.

use std::fmt;
use std::str::FromStr;

use rei_core::job::VideoMode;

/// The default of `KLING_MODELS`: the seed's three models by their API names.
pub const DEFAULT_MODELS: &str = "kling-v3:Kling 3.0,kling-v2-6:Kling 2.6,kling-v1-5:Kling 1.5";

/// The default of `KLING_OMNI_MODEL`: the model that edits videos (`/v1/videos/omni-video`).
pub const DEFAULT_OMNI_MODEL: &str = "kling-v3-omni";

/// Models that are absent from the text→video enum (providers.md §1.5).
const NO_TEXT_TO_VIDEO: &[&str] = &["kling-v1-5", "kling-v2-1"];

/// Models served only by `/v1/videos/omni-video` (providers.md §1.5).
const OMNI_ONLY: &[&str] = &["kling-video-o1", "kling-v3-omni"];

/// The longest API name accepted: a menu button carries the name, and Telegram's
/// `callback_data` holds 64 bytes.
pub const MAX_NAME_BYTES: usize = 48;

/// A model of the menu: the API name sent as `model_name` and the label users see.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KlingModel {
    api_name: String,
    label: String,
}

/// Why a `KLING_MODELS` value or model name is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelListError {
    /// The list has no model.
    #[error("the model list is empty")]
    Empty,
    /// An entry is not `api_model_name:Label`.
    #[error("`{0}` is not `api_model_name:Label`")]
    Malformed(String),
    /// An API name has characters Kling never uses (only `a-z`, `0-9`, `-`, `.`, `_`) or
    /// is longer than 48 bytes.
    #[error("`{0}` is not a Kling model name")]
    BadName(String),
    /// The same API name twice.
    #[error("the model `{0}` is listed twice")]
    Duplicate(String),
}

impl KlingModel {
    /// A model from its API name (e.g. `kling-v2-6`) and menu label (e.g. `Kling 2.6`).
    ///
    /// # Errors
    /// [`ModelListError::BadName`] for a name with other characters than `a-z0-9-._`, or
    /// [`ModelListError::Malformed`] for an empty label.
    pub fn new(
        api_name: impl Into<String>,
        label: impl Into<String>,
    ) -> Result<Self, ModelListError> {
        let api_name = api_name.into().trim().to_owned();
        let label = label.into().trim().to_owned();
        if !is_model_name(&api_name) {
            return Err(ModelListError::BadName(api_name));
        }
        if label.is_empty() {
            return Err(ModelListError::Malformed(format!("{api_name}:")));
        }
        Ok(Self { api_name, label })
    }

    /// The `model_name` sent to Kling.
    #[must_use]
    pub fn api_name(&self) -> &str {
        &self.api_name
    }

    /// What users see.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether a user who picked this model can ask for `mode`. Video→video is always
    /// done by the omni model (`KLING_OMNI_MODEL`), so every menu model offers it.
    #[must_use]
    pub fn supports(&self, mode: VideoMode) -> bool {
        supports(&self.api_name, mode)
    }

    /// Parses a `KLING_MODELS` value: `api_model_name:Label,…` in menu order.
    ///
    /// # Errors
    /// [`ModelListError`] for an empty list, an entry without `:`, a bad name or a
    /// duplicate.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, ModelListError> {
        let mut models: Vec<Self> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, label) = entry
                .split_once(':')
                .ok_or_else(|| ModelListError::Malformed(entry.to_owned()))?;
            let model = Self::new(name, label)?;
            if models.iter().any(|m| m.api_name == model.api_name) {
                return Err(ModelListError::Duplicate(model.api_name));
            }
            models.push(model);
        }
        if models.is_empty() {
            return Err(ModelListError::Empty);
        }
        Ok(models)
    }

    /// The default list ([`DEFAULT_MODELS`]).
    #[must_use]
    pub fn defaults() -> Vec<Self> {
        Self::parse_list(DEFAULT_MODELS).unwrap_or_default()
    }
}

impl fmt::Display for KlingModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.api_name, self.label)
    }
}

impl FromStr for KlingModel {
    type Err = ModelListError;

    /// One `api_model_name:Label` entry.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, label) = s
            .split_once(':')
            .ok_or_else(|| ModelListError::Malformed(s.to_owned()))?;
        Self::new(name, label)
    }
}

/// Whether a model only works on `/v1/videos/omni-video`.
#[must_use]
pub fn is_omni(api_name: &str) -> bool {
    OMNI_ONLY.contains(&api_name) || api_name.ends_with("-omni")
}

/// Whether `api_name` can serve `mode` when a user picked it (providers.md §1.5):
/// Kling 1.5 and 2.1 have no text→video; omni models do only video→video; video→video is
/// offered for every model because the omni model does it. Unknown newer models are
/// assumed capable.
#[must_use]
pub fn supports(api_name: &str, mode: VideoMode) -> bool {
    match mode {
        VideoMode::TextToVideo => !is_omni(api_name) && !NO_TEXT_TO_VIDEO.contains(&api_name),
        VideoMode::ImageToVideo => !is_omni(api_name),
        VideoMode::VideoToVideo => true,
    }
}

pub(crate) fn is_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_is_the_seed_models_in_menu_order() {
        let models = KlingModel::defaults();
        let names: Vec<_> = models.iter().map(|m| (m.api_name(), m.label())).collect();
        assert_eq!(
            names,
            vec![
                ("kling-v3", "Kling 3.0"),
                ("kling-v2-6", "Kling 2.6"),
                ("kling-v1-5", "Kling 1.5")
            ]
        );
    }

    #[test]
    fn kling_1_5_cannot_do_text_to_video() {
        let models = KlingModel::defaults();
        let can = |i: usize, mode| models[i].supports(mode);
        assert!(can(0, VideoMode::TextToVideo) && can(1, VideoMode::TextToVideo));
        assert!(!can(2, VideoMode::TextToVideo));
        for i in 0..3 {
            assert!(can(i, VideoMode::ImageToVideo) && can(i, VideoMode::VideoToVideo));
        }
        assert!(!supports("kling-v3-omni", VideoMode::TextToVideo));
        assert!(!supports("kling-video-o1", VideoMode::ImageToVideo));
    }

    #[test]
    fn malformed_lists_are_rejected() {
        assert_eq!(KlingModel::parse_list(""), Err(ModelListError::Empty));
        assert_eq!(
            KlingModel::parse_list("kling-v3"),
            Err(ModelListError::Malformed("kling-v3".into()))
        );
        assert_eq!(
            KlingModel::parse_list("Kling 3:Kling"),
            Err(ModelListError::BadName("Kling 3".into()))
        );
        assert_eq!(
            KlingModel::parse_list("kling-v3:A,kling-v3:B"),
            Err(ModelListError::Duplicate("kling-v3".into()))
        );
        assert!(matches!(
            KlingModel::parse_list("kling-v3:"),
            Err(ModelListError::Malformed(_))
        ));
        let one = KlingModel::parse_list(" kling-v2-6 : Kling 2.6 , ").unwrap();
        assert_eq!(one[0].to_string(), "kling-v2-6:Kling 2.6");
    }
}
