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
        return text_input(text);
    }
    let caption = msg.caption().map(str::to_owned);
    if let Some(sizes) = msg.photo() {
        if let Some(largest) = sizes
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
        {
            return Input::Photo {
                media: Media {
                    reference: largest.file.id.0.clone(),
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
                reference: video.file.id.0.clone(),
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

/// A message text: a command in Telegram's syntax (`/name`, `/name@bot_username`, then
/// arguments separated by spaces) or a plain text.
pub(super) fn text_input(text: &str) -> Input {
    let Some(command) = text.trim().strip_prefix('/') else {
        return Input::Text(text.to_owned());
    };
    let mut words = command.split_whitespace();
    let head = words.next().unwrap_or_default();
    // In groups Telegram users address a bot as `/start@rei_bot`.
    let name = head.split('@').next().unwrap_or_default();
    Input::Command {
        name: name.to_ascii_lowercase(),
        args: words.map(str::to_owned).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(name: &str, args: &[&str]) -> Input {
        Input::Command {
            name: name.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn commands_are_read_in_telegram_syntax() {
        assert_eq!(text_input("/start"), command("start", &[]));
        assert_eq!(text_input("/start@rei_bot"), command("start", &[]));
        assert_eq!(text_input("  /Balance  "), command("balance", &[]));
        assert_eq!(
            text_input("/add@rei_bot 5  12,50 for the trouble"),
            command("add", &["5", "12,50", "for", "the", "trouble"])
        );
        assert_eq!(text_input("/"), command("", &[]));
        assert_eq!(
            text_input("hello /start"),
            Input::Text("hello /start".into())
        );
        assert_eq!(text_input("a fox"), Input::Text("a fox".into()));
    }
}
