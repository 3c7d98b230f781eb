//! A console front end: the same [`Conversation`] as the Telegram bot, in a terminal.
//! It proves the front-end port: a second front end needs no change in core.
//!
//! One user types lines; replies, status lines and results are printed in the user's
//! language from the same locale files. The console's own syntax:
//!
//! | line | input |
//! |---|---|
//! | `/name args…` | a command |
//! | `#N` | presses button `N` of the last message with buttons |
//! | `+photo PATH caption…`, `+video PATH caption…` | sends a local file with a caption |
//! | anything else | a text |
//!
//! [`demo::run`] wires it to the in-memory stores and an instant image generator (no
//! database, no network): `cargo run -p rei-adapters --example console`.

pub mod demo;
mod notifier;

pub use notifier::{ConsoleNotifier, LocalFiles};

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rei_core::conversation::{
    Action, ButtonTarget, Conversation, Input, Media, Reply, Sender, Text,
};
use rei_core::user::{Language, UserService};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::outbound::locale::Locales;

/// Where the console writes: shared by the front end and its notifier (notices arrive
/// from the worker while the user types).
#[derive(Clone)]
pub struct ConsoleOutput(Arc<Mutex<Box<dyn Write + Send>>>);

rei_core::opaque_debug!(ConsoleOutput);

impl ConsoleOutput {
    /// Writes to `sink` (standard output, or a buffer in tests).
    #[must_use]
    pub fn new(sink: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(sink))))
    }

    /// Writes one block of text and a newline, at once.
    ///
    /// # Errors
    /// The sink's I/O error.
    pub fn line(&self, text: &str) -> std::io::Result<()> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        writeln!(sink, "{text}")?;
        sink.flush()
    }
}

/// Why the console stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Reading the input or writing the output failed.
    #[error("console I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The locale files did not load (a build bug: they are compiled in).
    #[error(transparent)]
    Locale(#[from] crate::outbound::locale::LocaleError),
    /// Setting the demo up failed.
    #[error("setting the console up failed: {0}")]
    Setup(String),
}

/// The console front end of one user.
pub struct Console {
    conversation: Arc<Conversation>,
    users: UserService,
    locales: Arc<Locales>,
    sender: Sender,
    output: ConsoleOutput,
    /// The actions of the last message with buttons, in the order they were numbered.
    buttons: Mutex<Vec<Action>>,
    lines: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("sender", &self.sender)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console for `sender` over the engine.
    #[must_use]
    pub fn new(
        conversation: Arc<Conversation>,
        users: UserService,
        locales: Arc<Locales>,
        sender: Sender,
        output: ConsoleOutput,
    ) -> Self {
        Self {
            conversation,
            users,
            locales,
            sender,
            output,
            buttons: Mutex::new(Vec::new()),
            lines: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Reads lines until the input ends, handling each in turn.
    ///
    /// # Errors
    /// [`ConsoleError::Io`] when the input or output fails.
    pub async fn run(&self, input: impl AsyncBufRead + Unpin) -> Result<(), ConsoleError> {
        let language = self.language().await;
        self.output
            .line(&self.locales.render(language, &Text::key("console-usage")))?;
        let mut lines = input.lines();
        while let Some(line) = lines.next_line().await? {
            self.handle_line(&line).await?;
        }
        Ok(())
    }

    /// Handles one typed line: the engine decides, the replies are printed.
    ///
    /// # Errors
    /// [`ConsoleError::Io`] when the output fails.
    pub async fn handle_line(&self, line: &str) -> Result<(), ConsoleError> {
        let Some(input) = self.input(line).await else {
            return Ok(());
        };
        let n = self
            .lines
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let replies = match self
            .conversation
            .handle(&self.sender, input, &format!("console:{n}"))
            .await
        {
            Ok(replies) => replies,
            Err(e) => {
                tracing::error!(error = %e, "handling a console line failed");
                vec![Reply::text(Text::key("error-generic"))]
            }
        };
        let language = self.language().await;
        for reply in &replies {
            self.print(language, reply)?;
        }
        Ok(())
    }

    async fn language(&self) -> Language {
        match self.users.user(self.sender.id).await {
            Ok(Some(user)) => user.language,
            _ => Language::default(),
        }
    }

    /// A line in the console's syntax (see the module docs); `None` for a blank line.
    async fn input(&self, line: &str) -> Option<Input> {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        if let Some(number) = line.strip_prefix('#') {
            let pressed = number.trim().parse::<usize>().ok().and_then(|n| {
                let buttons = self.buttons.lock().unwrap_or_else(PoisonError::into_inner);
                n.checked_sub(1).and_then(|i| buttons.get(i).cloned())
            });
            return Some(pressed.map_or(Input::StaleButton, Input::Button));
        }
        if let Some(rest) = line.strip_prefix('+') {
            return Some(attachment(rest).await);
        }
        Some(command_or_text(line))
    }

    fn print(&self, language: Language, reply: &Reply) -> Result<(), ConsoleError> {
        let mut text = self.locales.render(language, &reply.text);
        if let Some(invoice) = &reply.invoice {
            text.push_str(&format!(
                "\n[{} ⭐] {}",
                invoice.stars,
                self.locales.render(language, &invoice.title)
            ));
        }
        if !reply.buttons.is_empty() {
            let mut actions = Vec::new();
            for group in &reply.buttons {
                let mut row = Vec::new();
                for button in group {
                    let label = self.locales.render(language, &button.label);
                    match &button.target {
                        ButtonTarget::Action(action) => {
                            actions.push(action.clone());
                            row.push(format!("[#{}] {label}", actions.len()));
                        }
                        ButtonTarget::Url(url) => row.push(format!("[{label}: {url}]")),
                    }
                }
                text.push('\n');
                text.push_str(&row.join("  "));
            }
            *self.buttons.lock().unwrap_or_else(PoisonError::into_inner) = actions;
        }
        self.output.line(&text)?;
        Ok(())
    }
}

/// `/name args…` is a command; anything else a text.
fn command_or_text(line: &str) -> Input {
    let Some(command) = line.strip_prefix('/') else {
        return Input::Text(line.to_owned());
    };
    let mut words = command.split_whitespace();
    Input::Command {
        name: words.next().unwrap_or_default().to_ascii_lowercase(),
        args: words.map(str::to_owned).collect(),
    }
}

/// `photo PATH caption…` or `video PATH caption…`: a local file as the messenger would
/// describe it (its size read from the disk, nothing loaded yet).
async fn attachment(rest: &str) -> Input {
    let mut words = rest.splitn(3, ' ');
    let (kind, path) = (words.next().unwrap_or_default(), words.next());
    let caption = words
        .next()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let Some(path) = path else {
        return Input::Other;
    };
    let size = tokio::fs::metadata(Path::new(path))
        .await
        .ok()
        .map(|m| m.len());
    let media = |mime: &str| Media {
        reference: path.to_owned(),
        size,
        width: None,
        height: None,
        duration_secs: None,
        mime_type: Some(mime.to_owned()),
    };
    match kind {
        "photo" => Input::Photo {
            media: media("image/jpeg"),
            caption,
        },
        "video" => Input::Video {
            media: media("video/mp4"),
            caption,
        },
        _ => Input::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_commands_or_texts() {
        assert_eq!(
            command_or_text("/add 5 100 why"),
            Input::Command {
                name: "add".into(),
                args: vec!["5".into(), "100".into(), "why".into()]
            }
        );
        assert_eq!(
            command_or_text("a red fox"),
            Input::Text("a red fox".into())
        );
    }

    #[tokio::test]
    async fn an_attachment_names_a_local_file() {
        let Input::Photo { media, caption } =
            attachment("photo /no/such/file.jpg make it blue").await
        else {
            panic!("a photo");
        };
        assert_eq!(media.reference, "/no/such/file.jpg");
        assert_eq!(media.size, None);
        assert_eq!(caption.as_deref(), Some("make it blue"));
        assert_eq!(attachment("sticker x").await, Input::Other);
        assert_eq!(attachment("photo").await, Input::Other);
    }
}
