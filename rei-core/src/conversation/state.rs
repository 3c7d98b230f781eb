//! The per-user dialogue state, stored as JSON through `DialogueStore`.

use serde::{Deserialize, Serialize};

use crate::job::JobSpec;
use crate::money::Money;
use crate::pricing::{Quote, VideoDuration};
use crate::time::Timestamp;

/// Names a draft in its buttons: a confirm pressed twice (or delivered twice) carries the
/// same id, and the confirmation key derived from it makes one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DraftId(pub u64);

/// A generation waiting for Confirm / Cancel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// Its id.
    pub id: DraftId,
    /// What to generate (inputs already stored).
    pub spec: JobSpec,
    /// The price shown.
    pub quote: Quote,
    /// When it was shown (drafts expire).
    pub created_at: Timestamp,
}

/// Where a user is in the dialogue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DialogueState {
    /// Nothing under way: text makes an image draft.
    #[default]
    Idle,
    /// `/video`: choosing the model.
    VideoModel,
    /// `/video`: choosing the length.
    VideoDuration {
        /// The chosen model (API name).
        model: String,
    },
    /// `/video`: waiting for the text, photo or video.
    VideoInput {
        /// The model.
        model: String,
        /// The length.
        duration: VideoDuration,
    },
    /// A draft is shown; the user may still confirm it.
    Draft(Draft),
    /// `/pay` with receipts on: waiting for the e-mail the receipt goes to.
    AwaitingEmail {
        /// The chosen amount.
        amount: Money,
    },
}

/// What is stored: the state and when the rate-limit notice was last sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stored {
    /// The schema version of this record.
    pub v: u32,
    /// The dialogue.
    pub state: DialogueState,
    /// The user was told they are rate limited until this time: no second notice.
    pub limited_until: Option<Timestamp>,
    /// Drafts confirmed recently (a second press finds its job).
    #[serde(default)]
    pub confirmed: Vec<DraftId>,
    /// The shape and size the user chose last: new drafts start with them.
    #[serde(default)]
    pub look: Look,
    /// The store's version of this record when it was loaded (not serialised).
    #[serde(skip)]
    pub revision: Option<u64>,
}

/// What a user chose last for the look of their results.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Look {
    /// Images: shape and size.
    #[serde(default)]
    pub image: crate::job::ImageLook,
    /// Text → video: the shape.
    #[serde(default)]
    pub video: Option<crate::pricing::AspectRatio>,
}

/// The current schema version of [`Stored`].
pub(crate) const VERSION: u32 = 1;
