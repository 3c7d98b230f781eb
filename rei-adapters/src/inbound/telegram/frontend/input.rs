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
    if let Some(largest) = msg.photo().and_then(|sizes| {
        sizes
            .iter()
            .max_by_key(|p| u64::from(p.width) * u64::from(p.height))
    }) {
        let mut media = media(&largest.file, largest.width, largest.height);
        media.mime_type = Some("image/jpeg".into());
        return Input::Photo { media, caption };
    }
    if let Some(video) = msg.video() {
        let mut media = media(&video.file, video.width, video.height);
        media.duration_secs = Some(video.duration.seconds());
        media.mime_type = video.mime_type.as_ref().map(ToString::to_string);
        return Input::Video { media, caption };
    }
    Input::Other
}

/// A file as core sees it: Telegram's file id as the opaque reference, its size and
/// dimensions.
fn media(file: &teloxide::types::FileMeta, width: u32, height: u32) -> Media {
    Media {
        reference: file.id.0.clone(),
        size: known_size(file.size),
        width: Some(width),
        height: Some(height),
        duration_secs: None,
        mime_type: None,
    }
}

/// Telegram sends `u32::MAX` when it does not know a size.
pub(super) fn known_size(size: u32) -> Option<u64> {
    (size != u32::MAX).then_some(u64::from(size))
}

/// A message text: a command in Telegram's syntax (`/name`, `/name@bot_username`, then
/// arguments separated by spaces) or a plain text.
pub(crate) fn text_input(text: &str) -> Input {
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
