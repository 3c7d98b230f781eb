//! What a job makes: its kind, the validated prompt, the input asset, the spec.

use super::*;

/// What kind of generation a job is (the seed's `jobs.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Text → image.
    ImageGeneration,
    /// Photo + text → image.
    ImageEdit,
    /// Any video mode.
    VideoGeneration,
}

/// The three video modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VideoMode {
    /// Prompt only.
    TextToVideo,
    /// A photo and a prompt.
    ImageToVideo,
    /// A source video and a prompt (Kling omni-video; the source is fetched by URL).
    VideoToVideo,
}

/// A user's prompt: 1 to 2500 characters after trimming (Kling's limit).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Prompt(String);

impl Prompt {
    /// Longest prompt, in characters.
    pub const MAX_CHARS: usize = 2500;

    /// A prompt from user text.
    ///
    /// # Errors
    /// Empty or longer than [`Self::MAX_CHARS`].
    pub fn parse(text: &str) -> Result<Self, PromptError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(PromptError::Empty);
        }
        let len = t.chars().count();
        if len > Self::MAX_CHARS {
            return Err(PromptError::TooLong {
                len,
                max: Self::MAX_CHARS,
            });
        }
        Ok(Self(t.to_owned()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Prompt {
    type Error = PromptError;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        Self::parse(&v)
    }
}

impl From<Prompt> for String {
    fn from(p: Prompt) -> Self {
        p.0
    }
}

/// Why a prompt is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Nothing but spaces.
    #[error("the prompt is empty")]
    Empty,
    /// Over the limit.
    #[error("the prompt has {len} characters; at most {max} are allowed")]
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A stored input or output file: a key under the asset store (e.g. a relative path in
/// `ASSET_DIR`). Never a URL with credentials.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssetRef(String);

impl AssetRef {
    /// Wraps a key.
    #[must_use]
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AssetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How an image is to look: its shape and its size, exactly what the provider is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLook {
    /// The shape; `None`: the model picks (an edit keeps its photo's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect: Option<crate::pricing::AspectRatio>,
    /// The size (it sets the price).
    #[serde(default)]
    pub resolution: crate::pricing::Resolution,
}

/// What to generate: everything a worker needs, stored as the job's params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobSpec {
    /// Text → image.
    ImageGeneration {
        /// What to draw.
        prompt: Prompt,
        /// Shape and size (jobs stored before they existed: the model's default, 1K).
        #[serde(default)]
        look: ImageLook,
    },
    /// Photo + text → image.
    ImageEdit {
        /// How to change it.
        prompt: Prompt,
        /// The photo.
        image: AssetRef,
        /// Shape and size.
        #[serde(default)]
        look: ImageLook,
    },
    /// A video.
    Video {
        /// Text, image or video input.
        mode: VideoMode,
        /// Provider model name.
        model: String,
        /// Length (for video→video: the priced length of the source).
        duration: VideoDuration,
        /// What to make.
        prompt: Prompt,
        /// The photo or source video (none for text→video).
        input: Option<AssetRef>,
        /// The shape of a text → video (`None`: the provider's default, 16:9); a photo
        /// or a source video keeps its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        aspect: Option<crate::pricing::AspectRatio>,
    },
}

impl JobSpec {
    /// The user's file it works on (a photo to edit or animate, a video to restyle).
    #[must_use]
    pub const fn input(&self) -> Option<&AssetRef> {
        match self {
            Self::ImageGeneration { .. } => None,
            Self::ImageEdit { image, .. } => Some(image),
            Self::Video { input, .. } => input.as_ref(),
        }
    }

    /// The seed's job type.
    #[must_use]
    pub const fn kind(&self) -> JobKind {
        match self {
            Self::ImageGeneration { .. } => JobKind::ImageGeneration,
            Self::ImageEdit { .. } => JobKind::ImageEdit,
            Self::Video { .. } => JobKind::VideoGeneration,
        }
    }

    /// The product it sells.
    #[must_use]
    pub fn product(&self) -> Product {
        match self {
            Self::ImageGeneration { look, .. } => Product::ImageGeneration {
                resolution: look.resolution,
            },
            Self::ImageEdit { look, .. } => Product::ImageEdit {
                resolution: look.resolution,
            },
            Self::Video {
                model, duration, ..
            } => Product::Video {
                model: model.clone(),
                duration: *duration,
            },
        }
    }

    /// A text → image of `prompt`, the model's shape, at 1K.
    #[must_use]
    pub fn image(prompt: Prompt) -> Self {
        Self::ImageGeneration {
            prompt,
            look: ImageLook::default(),
        }
    }

    /// The prompt.
    #[must_use]
    pub const fn prompt(&self) -> &Prompt {
        match self {
            Self::ImageGeneration { prompt, .. }
            | Self::ImageEdit { prompt, .. }
            | Self::Video { prompt, .. } => prompt,
        }
    }
}
