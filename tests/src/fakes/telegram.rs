//! A fake Telegram Bot API (providers.md §4): `POST /bot<token>/<method>` with JSON,
//! form or multipart bodies, answering `{"ok": true, "result": …}` with plausible
//! Message objects. It records every call, and can refuse users who "blocked the bot"
//! (403), answer 429 with `retry_after`, or hang a method (to kill a process mid-send).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One call the bot made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// `sendMessage`, `sendVideo`, …
    pub method: String,
    /// The chat it went to (0 when none).
    pub chat_id: i64,
    /// The text or caption, if any.
    pub text: Option<String>,
}

#[derive(Debug, Default)]
struct TelegramState {
    calls: Vec<Call>,
    blocked: HashSet<i64>,
    too_many: u32,
    hang: BTreeSet<String>,
    next_message: i64,
}

/// The fake and its recordings.
#[derive(Clone, Debug)]
pub struct FakeTelegram {
    state: Arc<Mutex<TelegramState>>,
    /// Where it listens (`TELEGRAM_API_URL`).
    pub url: String,
}

impl FakeTelegram {
    /// Starts the fake.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(TelegramState {
            next_message: 100,
            ..TelegramState::default()
        }));
        let router = Router::new()
            .route("/{bot}/{method}", post(call))
            .with_state(state.clone());
        let (url, _task) = super::serve(router).await?;
        Ok(Self { state, url })
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// Calls of one method to one chat.
    #[must_use]
    pub fn calls_to(&self, method: &str, chat: i64) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method && c.chat_id == chat)
            .collect()
    }

    /// The user blocked the bot: sends to them get 403.
    pub fn block(&self, chat: i64) {
        lock(&self.state).blocked.insert(chat);
    }

    /// The next `n` calls get 429 with `retry_after` 1.
    pub fn too_many_requests(&self, n: u32) {
        lock(&self.state).too_many = n;
    }

    /// Calls of `method` are never answered from now on (until [`Self::release`]).
    pub fn hang(&self, method: &str) {
        lock(&self.state).hang.insert(method.to_owned());
    }

    /// Answers every method again.
    pub fn release(&self) {
        lock(&self.state).hang.clear();
    }
}

fn lock(state: &Mutex<TelegramState>) -> std::sync::MutexGuard<'_, TelegramState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `chat_id` and the text or caption from a JSON, form or multipart body.
fn fields(headers: &HeaderMap, body: &[u8]) -> (i64, Option<String>) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Some(boundary) = content_type.split("boundary=").nth(1) {
        let text = String::from_utf8_lossy(body);
        let mut chat = 0;
        let mut caption = None;
        for part in text.split(&format!("--{}", boundary.trim_matches('"'))) {
            let Some((head, value)) = part.split_once("\r\n\r\n") else {
                continue;
            };
            let value = value.trim_end_matches("\r\n").trim_end_matches("--");
            if head.contains("name=\"chat_id\"") {
                chat = value.trim().trim_matches('"').parse().unwrap_or(0);
            } else if head.contains("name=\"caption\"") {
                caption = Some(value.to_owned());
            }
        }
        return (chat, caption);
    }
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let chat = v["chat_id"]
            .as_i64()
            .or_else(|| v["chat_id"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        let text = v["text"]
            .as_str()
            .or_else(|| v["caption"].as_str())
            .map(str::to_owned);
        return (chat, text);
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    (
        form.get("chat_id")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        form.get("text").or_else(|| form.get("caption")).cloned(),
    )
}

fn error(code: u16, description: &str, retry_after: Option<u32>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(seconds) = retry_after {
        body["parameters"] = json!({"retry_after": seconds});
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

async fn call(
    State(state): State<Arc<Mutex<TelegramState>>>,
    Path((_bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Bot API method names are case-insensitive (teloxide sends `SendMessage`): keep
    // the documented spelling.
    let mut chars = method.chars();
    let method: String = chars
        .next()
        .map(|c| c.to_ascii_lowercase())
        .into_iter()
        .chain(chars)
        .collect();
    let (chat, text) = fields(&headers, &body);
    let (hang, answer) = {
        let mut s = lock(&state);
        s.calls.push(Call {
            method: method.clone(),
            chat_id: chat,
            text: text.clone(),
        });
        let hang = s.hang.contains(&method);
        let answer = if s.too_many > 0 {
            s.too_many -= 1;
            Err(error(429, "Too Many Requests: retry after 1", Some(1)))
        } else if s.blocked.contains(&chat) {
            Err(error(403, "Forbidden: bot was blocked by the user", None))
        } else {
            s.next_message += 1;
            Ok(s.next_message)
        };
        (hang, answer)
    };
    if hang {
        std::future::pending::<()>().await;
    }
    let message_id = match answer {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    let mut message = json!({
        "message_id": message_id,
        "date": 1_767_225_600,
        "chat": {"id": chat, "type": "private", "first_name": "User"},
        "from": {"id": 7_000_000_001_i64, "is_bot": true, "first_name": "REI", "username": "rei_test_bot"},
    });
    let file = |kind: &str| json!({"file_id": format!("{kind}-{message_id}"), "file_unique_id": format!("u{message_id}")});
    match method.as_str() {
        "sendPhoto" => {
            message["photo"] = json!([{"file_id": format!("photo-{message_id}"), "file_unique_id": format!("u{message_id}"), "width": 1024, "height": 1024, "file_size": 1000}]);
            message["caption"] = json!(text.unwrap_or_default());
        }
        "sendVideo" => {
            message["video"] = json!({"file_id": format!("video-{message_id}"), "file_unique_id": format!("u{message_id}"), "width": 1280, "height": 720, "duration": 5});
            message["caption"] = json!(text.unwrap_or_default());
        }
        "sendDocument" => {
            message["document"] = file("document");
            message["caption"] = json!(text.unwrap_or_default());
        }
        "getMe" => {
            return Json(json!({"ok": true, "result": {"id": 7_000_000_001_i64, "is_bot": true, "first_name": "REI", "username": "rei_test_bot", "can_join_groups": true, "can_read_all_group_messages": false, "supports_inline_queries": false}})).into_response();
        }
        "sendChatAction" | "answerCallbackQuery" | "setMyCommands" | "deleteWebhook" => {
            return Json(json!({"ok": true, "result": true})).into_response();
        }
        _ => {
            message["text"] = json!(text.unwrap_or_default());
        }
    }
    Json(json!({"ok": true, "result": message})).into_response()
}
