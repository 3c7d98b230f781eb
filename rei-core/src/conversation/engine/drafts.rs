//! What a user sends becomes a draft with its price: a prompt, a photo to edit or
//! animate, a video to restyle (checked before anything is charged).

use super::*;
use crate::pricing::{AspectRatio, Product, Resolution};

/// Kling takes images up to 10 MB …
const MAX_KLING_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// … with both sides at least 300 px.
const MIN_KLING_IMAGE_SIDE: u32 = 300;

/// Kling edits source videos of 3 to 10 seconds.
const VIDEO_SOURCE_SECS: std::ops::RangeInclusive<u32> = 3..=10;

fn prompt_refused(e: &PromptError) -> Vec<Reply> {
    vec![match e {
        PromptError::Empty => Reply::text(Text::key("prompt-empty")),
        PromptError::TooLong { max, .. } => Reply::text(
            Text::key("prompt-too-long")
                .arg("max", Arg::Number(i64::try_from(*max).unwrap_or(i64::MAX))),
        ),
    }]
}

pub(super) fn too_large(media: &Media, limit: u64) -> Option<Vec<Reply>> {
    media
        .size
        .filter(|size| *size > limit)
        .map(|_| size_refusal(limit))
}

pub(super) fn size_refusal(limit_bytes: u64) -> Vec<Reply> {
    let megabytes = i64::try_from(limit_bytes / (1024 * 1024)).unwrap_or(i64::MAX);
    vec![Reply::text(
        Text::key("file-too-large").arg("megabytes", Arg::Number(megabytes)),
    )]
}

/// "16:9" — or, when none was chosen, what the provider makes by default.
fn aspect_arg(aspect: Option<AspectRatio>, default: AspectRatio) -> Arg {
    Arg::Text(aspect.unwrap_or(default).as_str().to_owned())
}

/// An image draft's shape and size, as its text shows them.
fn image_look(look: &crate::job::ImageLook) -> Text {
    let aspect = match look.aspect {
        Some(a) => Arg::Text(a.as_str().to_owned()),
        None => Arg::Key("look-auto"),
    };
    Text::key("look-image")
        .arg("aspect", aspect)
        .arg("size", Arg::Text(look.resolution.as_str().to_owned()))
}

/// A choice button: its label (`value`) marked when it is the current one.
pub(super) fn choice(value: Arg, current: bool, action: Action) -> Button {
    let key = if current {
        "look-chosen"
    } else {
        "look-choice"
    };
    Button::action(Text::key(key).arg("value", value), action)
}

/// The shape and size buttons of a draft: images choose both, a text → video its
/// shape (Kling takes a photo's or a source video's shape as it is).
fn look_buttons(id: DraftId, spec: &JobSpec) -> Vec<Vec<Button>> {
    let aspects = |offered: &[AspectRatio], current: Option<AspectRatio>| -> Vec<Button> {
        offered
            .iter()
            .map(|a| {
                choice(
                    Arg::Text(a.as_str().to_owned()),
                    current == Some(*a),
                    Action::DraftAspect(id, *a),
                )
            })
            .collect()
    };
    match spec {
        JobSpec::ImageGeneration { look, .. } | JobSpec::ImageEdit { look, .. } => vec![
            aspects(&AspectRatio::IMAGES, look.aspect),
            Resolution::ALL
                .iter()
                .map(|r| {
                    choice(
                        Arg::Text(r.as_str().to_owned()),
                        look.resolution == *r,
                        Action::DraftResolution(id, *r),
                    )
                })
                .collect(),
        ],
        JobSpec::Video {
            mode: VideoMode::TextToVideo,
            aspect,
            ..
        } => vec![aspects(
            &AspectRatio::VIDEOS,
            Some(aspect.unwrap_or(AspectRatio::Wide16x9)),
        )],
        JobSpec::Video { .. } => Vec::new(),
    }
}

impl Conversation {
    /// A draft's shape or size changed by its button: the same request as a new draft
    /// with it, priced now; the choice is remembered for the user's next drafts.
    pub(super) async fn relook(
        &self,
        user: UserId,
        id: DraftId,
        aspect: Option<AspectRatio>,
        resolution: Option<Resolution>,
        stored: &mut Stored,
    ) -> Replies {
        let DialogueState::Draft(draft) = &stored.state else {
            return Ok(say("button-expired"));
        };
        if draft.id != id {
            return Ok(say("button-expired"));
        }
        let mut spec = draft.spec.clone();
        let choose = |look: &mut crate::job::ImageLook| {
            look.aspect = aspect.or(look.aspect);
            look.resolution = resolution.unwrap_or(look.resolution);
        };
        // Remembered: a generation's whole look; an edit's size only (an edit's shape
        // is its photo's unless picked on its draft).
        match &mut spec {
            JobSpec::ImageGeneration { look, .. } => {
                choose(look);
                stored.look.image = *look;
            }
            JobSpec::ImageEdit { look, .. } => {
                choose(look);
                stored.look.image.resolution = resolution.unwrap_or(stored.look.image.resolution);
            }
            JobSpec::Video {
                mode: VideoMode::TextToVideo,
                aspect: current,
                ..
            } if resolution.is_none()
                && aspect.is_some_and(|a| AspectRatio::VIDEOS.contains(&a)) =>
            {
                *current = aspect;
                stored.look.video = aspect;
            }
            JobSpec::Video { .. } => return Ok(say("button-expired")),
        }
        self.draft(user, spec, stored).await
    }

    /// Text outside a command: a prompt.
    pub(super) async fn text(&self, user: UserId, text: &str, stored: &mut Stored) -> Replies {
        match stored.state.clone() {
            DialogueState::Idle | DialogueState::Draft(_) => {
                if !self.config.images {
                    return Ok(say("images-unavailable"));
                }
                let prompt = match Prompt::parse(text) {
                    Ok(p) => p,
                    Err(e) => return Ok(prompt_refused(&e)),
                };
                let look = stored.look.image;
                self.draft(user, JobSpec::ImageGeneration { prompt, look }, stored)
                    .await
            }
            DialogueState::VideoModel | DialogueState::VideoDuration { .. } => {
                Ok(say("video-use-buttons"))
            }
            DialogueState::AwaitingEmail { amount } => {
                let Ok(email) = Email::parse(text) else {
                    return Ok(say("pay-email-invalid"));
                };
                self.ports.users.set_receipt_email(user, &email).await?;
                stored.state = DialogueState::Idle;
                self.top_up(user, amount, Some(email), stored).await
            }
            DialogueState::VideoInput { model, duration } => {
                if let Err(refusal) = self.can(&model, |m| m.text_to_video, stored) {
                    return Ok(refusal);
                }
                let prompt = match Prompt::parse(text) {
                    Ok(p) => p,
                    Err(e) => return Ok(prompt_refused(&e)),
                };
                let spec = JobSpec::Video {
                    mode: VideoMode::TextToVideo,
                    model,
                    duration,
                    prompt,
                    input: None,
                    aspect: stored.look.video,
                };
                self.draft(user, spec, stored).await
            }
        }
    }

    pub(super) fn video_menu(&self, stored: &mut Stored) -> Vec<Reply> {
        if !self.videos_enabled() {
            return say("video-unavailable");
        }
        stored.state = DialogueState::VideoModel;
        let buttons = self
            .models_on()
            .map(|m| {
                vec![Button::action(
                    Text::key("video-model").arg("label", Arg::Text(m.label.clone())),
                    Action::VideoModel(m.api_name.clone()),
                )]
            })
            .collect();
        vec![Reply::with_buttons(
            Text::key("video-choose-model"),
            buttons,
        )]
    }

    /// The video models offered now: configured, and not switched off
    /// (`rei-cli prices set model:<id> off`).
    pub(super) fn models_on(&self) -> impl Iterator<Item = &VideoModel> {
        let offer = self.ports.prices.offer();
        self.config
            .video_models
            .iter()
            .filter(move |m| offer.model_on(&m.api_name))
    }

    pub(super) fn model(&self, api_name: &str) -> Option<&VideoModel> {
        self.models_on().find(|m| m.api_name == api_name)
    }

    /// Whether the chosen model can take this input; the refusal to send otherwise (a
    /// model gone from the menu expires the dialogue).
    pub(super) fn can(
        &self,
        model: &str,
        able: fn(&VideoModel) -> bool,
        stored: &mut Stored,
    ) -> Result<(), Vec<Reply>> {
        match self.model(model) {
            None => {
                stored.state = DialogueState::Idle;
                Err(say("button-expired"))
            }
            Some(m) if !able(m) => Err(self.unsupported(able)),
            Some(_) => Ok(()),
        }
    }

    /// "This model cannot do that; these can".
    pub(super) fn unsupported(&self, can: impl Fn(&VideoModel) -> bool) -> Vec<Reply> {
        let able: Vec<String> = self
            .models_on()
            .filter(|m| can(m))
            .map(|m| m.label.clone())
            .collect();
        vec![Reply::text(
            Text::key("video-mode-unsupported").arg("models", Arg::Text(able.join(", "))),
        )]
    }

    pub(super) async fn photo(
        &self,
        user: UserId,
        media: &Media,
        caption: Option<&str>,
        stored: &mut Stored,
    ) -> Replies {
        let Some(caption) = caption.filter(|c| !c.trim().is_empty()) else {
            return Ok(say("photo-needs-caption"));
        };
        let prompt = match Prompt::parse(caption) {
            Ok(p) => p,
            Err(e) => return Ok(prompt_refused(&e)),
        };
        match stored.state.clone() {
            DialogueState::Idle | DialogueState::Draft(_) => {
                if !self.config.images {
                    return Ok(say("images-unavailable"));
                }
                if let Some(refusal) = too_large(media, self.ports.media.max_bytes()) {
                    return Ok(refusal);
                }
                // An edit keeps its photo's shape unless the user picks another on
                // its draft; the size is the one chosen last.
                let look = crate::job::ImageLook {
                    aspect: None,
                    resolution: stored.look.image.resolution,
                };
                let product = Product::ImageEdit {
                    resolution: look.resolution,
                };
                let image = match self.fetch(user, media, "jpg", &product).await? {
                    Ok(asset) => asset,
                    Err(refusal) => return Ok(refusal),
                };
                self.draft(
                    user,
                    JobSpec::ImageEdit {
                        prompt,
                        image,
                        look,
                    },
                    stored,
                )
                .await
            }
            DialogueState::VideoModel | DialogueState::VideoDuration { .. } => {
                Ok(say("video-use-buttons"))
            }
            DialogueState::AwaitingEmail { .. } => Ok(say("pay-email-invalid")),
            DialogueState::VideoInput { model, duration } => {
                if let Err(refusal) = self.can(&model, |m| m.image_to_video, stored) {
                    return Ok(refusal);
                }
                if let Some(refusal) = too_large(media, MAX_KLING_IMAGE_BYTES) {
                    return Ok(refusal);
                }
                let small = |side: Option<u32>| side.is_some_and(|s| s < MIN_KLING_IMAGE_SIDE);
                if small(media.width) || small(media.height) {
                    return Ok(vec![Reply::text(
                        Text::key("image-too-small")
                            .arg("pixels", Arg::Number(i64::from(MIN_KLING_IMAGE_SIDE))),
                    )]);
                }
                let spec = JobSpec::Video {
                    mode: VideoMode::ImageToVideo,
                    model,
                    duration,
                    prompt,
                    input: None,
                    aspect: None,
                };
                self.video_draft(user, spec, media, "jpg", stored).await
            }
        }
    }

    pub(super) async fn video(
        &self,
        user: UserId,
        media: &Media,
        caption: Option<&str>,
        stored: &mut Stored,
    ) -> Replies {
        let DialogueState::VideoInput { .. } = stored.state else {
            return Ok(say("video-start-with-command"));
        };
        if !self.config.video_to_video {
            return Ok(say("video-to-video-unavailable"));
        }
        let Some(caption) = caption.filter(|c| !c.trim().is_empty()) else {
            return Ok(say("video-needs-caption"));
        };
        let prompt = match Prompt::parse(caption) {
            Ok(p) => p,
            Err(e) => return Ok(prompt_refused(&e)),
        };
        let format_ok = media
            .mime_type
            .as_deref()
            .is_none_or(|m| matches!(m, "video/mp4" | "video/quicktime"));
        if !format_ok {
            return Ok(say("video-format"));
        }
        let Some(secs) = media
            .duration_secs
            .filter(|s| VIDEO_SOURCE_SECS.contains(s))
        else {
            return Ok(vec![Reply::text(
                Text::key("video-length")
                    .arg("min", Arg::Number(i64::from(*VIDEO_SOURCE_SECS.start())))
                    .arg("max", Arg::Number(i64::from(*VIDEO_SOURCE_SECS.end()))),
            )]);
        };
        if let Some(refusal) = too_large(media, self.ports.media.max_bytes()) {
            return Ok(refusal);
        }
        // The output is as long as the source: priced as 5 s up to 5 s, else as 10 s.
        let duration = if secs <= 5 {
            VideoDuration::Five
        } else {
            VideoDuration::Ten
        };
        let spec = JobSpec::Video {
            mode: VideoMode::VideoToVideo,
            model: self.config.omni_model.clone(),
            duration,
            prompt,
            input: None,
            aspect: None,
        };
        self.video_draft(user, spec, media, "mp4", stored).await
    }

    /// A video draft from a user's file: fetched (if the user can pay for the video) as
    /// the input of `spec`.
    async fn video_draft(
        &self,
        user: UserId,
        mut spec: JobSpec,
        media: &Media,
        ext: &str,
        stored: &mut Stored,
    ) -> Replies {
        let product = spec.product();
        let asset = match self.fetch(user, media, ext, &product).await? {
            Ok(asset) => asset,
            Err(refusal) => return Ok(refusal),
        };
        if let JobSpec::Video { input, .. } = &mut spec {
            *input = Some(asset);
        }
        self.draft(user, spec, stored).await
    }

    /// Downloads a user's file into the asset store (`inputs/<random>.<ext>`) for a draft
    /// of `product` — only when the user can pay for it: nothing is downloaded (or kept
    /// on disk) for a draft they cannot afford. `Ok(Err(replies))` says why not.
    pub(super) async fn fetch(
        &self,
        user: UserId,
        media: &Media,
        ext: &str,
        product: &crate::pricing::Product,
    ) -> Result<Result<crate::job::AssetRef, Vec<Reply>>, ConversationError> {
        let price = self.ports.jobs.prices().price(product);
        let balance = self.ports.ledger.balance(user).await?.available;
        if balance < price {
            return Ok(Err(vec![Reply::text(
                Text::key("insufficient-funds")
                    .arg("price", Arg::Money(price))
                    .arg("balance", Arg::Money(balance)),
            )]));
        }
        let key = format!("inputs/{}.{ext}", self.ports.ids.job_id());
        Ok(match self.ports.media.fetch(media, &key).await {
            Ok(asset) => Ok(asset),
            Err(MediaError::TooLarge { limit_bytes }) => Err(size_refusal(limit_bytes)),
            Err(MediaError::Unavailable(_)) => Err(say("file-unavailable")),
            Err(MediaError::StorageFull) => {
                // The admins must make room (throttled: one alert an hour).
                let alert = crate::ports::AdminAlert {
                    provider: "asset_dir".to_owned(),
                    kind: crate::ports::ProviderErrorKind::Unknown,
                    message: "ASSET_DIR is at ASSET_DIR_MAX_BYTES: users' uploads are refused until there is room".to_owned(),
                    subject: None,
                };
                if let Err(e) = self.ports.notifier.alert_admins(alert).await {
                    return Err(e.into());
                }
                Err(say("storage-full"))
            }
        })
    }

    /// Shows a priced draft with Confirm / Cancel.
    pub(super) async fn draft(&self, user: UserId, spec: JobSpec, stored: &mut Stored) -> Replies {
        let quote = self.ports.jobs.quote(&spec);
        let balance = self.ports.ledger.balance(user).await?.available;
        let id = DraftId(self.ports.ids.job_id().as_uuid().as_u64_pair().1);
        let text = match &spec {
            JobSpec::ImageGeneration { look, .. } => {
                Text::key("draft-image").arg("look", Arg::List(vec![image_look(look)]))
            }
            JobSpec::ImageEdit { look, .. } => {
                Text::key("draft-edit").arg("look", Arg::List(vec![image_look(look)]))
            }
            JobSpec::Video {
                mode,
                model,
                duration,
                aspect,
                ..
            } => {
                let label = self
                    .model(model)
                    .map_or_else(|| model.clone(), |m| m.label.clone());
                Text::key(match mode {
                    VideoMode::TextToVideo => "draft-text-video",
                    VideoMode::ImageToVideo => "draft-image-video",
                    VideoMode::VideoToVideo => "draft-video-video",
                })
                .arg("model", Arg::Text(label))
                .arg("seconds", Arg::Number(i64::from(duration.seconds())))
                .arg("aspect", aspect_arg(*aspect, AspectRatio::Wide16x9))
            }
        }
        .arg("price", Arg::Money(quote.amount))
        .arg("balance", Arg::Money(balance));
        let short = balance < quote.amount;
        // Confirm first (a console's `#1`), then the choices of shape and size.
        let mut buttons = vec![vec![
            Button::action(Text::key("button-confirm"), Action::Confirm(id)),
            Button::action(Text::key("button-cancel"), Action::Discard(id)),
        ]];
        buttons.extend(look_buttons(id, &spec));
        stored.state = DialogueState::Draft(Draft {
            id,
            spec,
            quote,
            created_at: self.ports.clock.now(),
        });
        let mut replies = vec![Reply::with_buttons(text, buttons)];
        if short {
            replies.push(Reply::text(Text::key("draft-short-of-money")));
        }
        Ok(replies)
    }
}
