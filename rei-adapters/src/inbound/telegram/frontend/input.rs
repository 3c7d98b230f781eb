//! A Telegram update read as the engine's input: who sent it, and what (a command
//! or text, a photo, a video, a document).

use super::*;

pub(super) fn sender(user: &teloxide::types::User) -> Option<Sender> {
    if user.is_bot {
        return None;
    }
    let id = i64::try_from(user.id.0)
        .ok()
        .and_then(|id| UserId::new(id).ok())?;
    Some(Sender {
        id,
        username: user.username.clone(),
        first_name: Some(user.first_name.clone()),
        language_code: user.language_code.clone(),
    })
}

pub(super) fn input(msg: &Message) -> Input {
    if let Some(text) = msg.text() {
        return Input::Text(text.to_owned());
    }
    let caption = msg.caption().map(str::to_owned);
    if let Some(sizes) = msg.photo() {
        if let Some(largest) = sizes
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
        {
            return Input::Photo {
                media: Media {
                    file_id: largest.file.id.0.clone(),
                    size: known_size(largest.file.size),
                    width: Some(largest.width),
                    height: Some(largest.height),
                    duration_secs: None,
                    mime_type: Some("image/jpeg".into()),
                },
                caption,
            };
        }
    }
    if let Some(video) = msg.video() {
        return Input::Video {
            media: Media {
                file_id: video.file.id.0.clone(),
                size: known_size(video.file.size),
                width: Some(video.width),
                height: Some(video.height),
                duration_secs: Some(video.duration.seconds()),
                mime_type: video.mime_type.as_ref().map(ToString::to_string),
            },
            caption,
        };
    }
    Input::Other
}

/// Telegram sends `u32::MAX` when it does not know a size.
pub(super) fn known_size(size: u32) -> Option<u64> {
    (size != u32::MAX).then_some(u64::from(size))
}
