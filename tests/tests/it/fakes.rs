//! The fake Telegram Bot API speaks what teloxide parses: every injected update becomes
//! the right `UpdateKind`, long polls wait and wake, files download, edits that change
//! nothing and second pollers are refused as Telegram refuses them.

use std::time::Duration;

use rei_tests::fakes::telegram::FakeTelegram;
use teloxide::net::Download;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, GetUpdatesSetters, SendMessageSetters,
};
use teloxide::prelude::Requester;
use teloxide::types::{
    BotCommand, CallbackQueryId, ChatAction, ChatId, FileId, InlineKeyboardButton,
    InlineKeyboardMarkup, LabeledPrice, MediaKind, MessageEntityKind, MessageId, MessageKind,
    Update, UpdateKind,
};
use teloxide::{ApiError, Bot, RequestError};

const USER: i64 = 424_242;

async fn fake() -> (FakeTelegram, Bot) {
    let telegram = FakeTelegram::start().await.unwrap();
    let bot = Bot::new("123:TEST").set_api_url(telegram.url.parse().unwrap());
    (telegram, bot)
}

fn offset_after(updates: &[Update]) -> i32 {
    i32::try_from(updates.last().unwrap().id.0).unwrap() + 1
}

fn keyboard(data: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[InlineKeyboardButton::callback("OK", data)]])
}

#[tokio::test]
async fn every_injected_update_parses_as_its_teloxide_kind() {
    let (telegram, bot) = fake().await;
    telegram.send_text(USER, "/start@rei_test_bot hello");
    telegram.send_photo(USER, Some("make it anime"), "photo-1", 182_734, 1280, 960);
    telegram.send_video(USER, None, "video-1", 3_000_000, 7, "video/mp4");
    let sent = bot.send_message(ChatId(USER), "Pick:").await.unwrap();
    let query = telegram.press(USER, i64::from(sent.id.0), "1:a:s");

    let updates = bot.get_updates().await.unwrap();
    assert_eq!(updates.len(), 4, "{updates:#?}");
    let ids: Vec<u32> = updates.iter().map(|u| u.id.0).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");

    let UpdateKind::Message(text) = &updates[0].kind else {
        panic!("{:?}", updates[0].kind)
    };
    assert_eq!(text.text(), Some("/start@rei_test_bot hello"));
    let entities = text.entities().unwrap();
    assert_eq!(entities.len(), 1);
    assert_eq!(entities[0].kind, MessageEntityKind::BotCommand);
    assert_eq!((entities[0].offset, entities[0].length), (0, 19));
    let from = text.from.as_ref().unwrap();
    assert_eq!(from.id.0, u64::try_from(USER).unwrap());
    assert!(!from.is_bot);
    assert_eq!(from.language_code.as_deref(), Some("ru"));
    assert!(text.chat.is_private());
    assert_eq!(text.chat.id, ChatId(USER));

    let UpdateKind::Message(photo) = &updates[1].kind else {
        panic!("{:?}", updates[1].kind)
    };
    let sizes = photo.photo().unwrap();
    let largest = sizes.last().unwrap();
    assert_eq!(largest.file.id.0, "photo-1");
    assert_eq!(largest.file.size, 182_734);
    assert_eq!((largest.width, largest.height), (1280, 960));
    assert!(sizes[0].width < largest.width, "a thumbnail comes first");
    assert_eq!(photo.caption(), Some("make it anime"));

    let UpdateKind::Message(video) = &updates[2].kind else {
        panic!("{:?}", updates[2].kind)
    };
    let MessageKind::Common(common) = &video.kind else {
        panic!("{:?}", video.kind)
    };
    let MediaKind::Video(media) = &common.media_kind else {
        panic!("{:?}", common.media_kind)
    };
    assert_eq!(media.video.file.id.0, "video-1");
    assert_eq!(media.video.file.size, 3_000_000);
    assert_eq!(media.video.duration.seconds(), 7);
    assert_eq!(
        media.video.mime_type.as_ref().unwrap().essence_str(),
        "video/mp4"
    );
    assert_eq!(media.caption, None);

    let UpdateKind::CallbackQuery(press) = &updates[3].kind else {
        panic!("{:?}", updates[3].kind)
    };
    assert_eq!(press.id.0, query);
    assert_eq!(press.data.as_deref(), Some("1:a:s"));
    assert_eq!(press.from.id.0, u64::try_from(USER).unwrap());
    let pressed = press.regular_message().unwrap();
    assert_eq!(pressed.id, sent.id);
    assert_eq!(pressed.text(), Some("Pick:"));
}

#[tokio::test]
async fn an_offset_confirms_the_updates_before_it() {
    let (telegram, bot) = fake().await;
    let first = telegram.send_text(USER, "one");
    let second = telegram.send_text(USER, "two");
    assert_eq!(second, first + 1);

    let all = bot.get_updates().await.unwrap();
    assert_eq!(all.len(), 2);
    let later = bot
        .get_updates()
        .offset(i32::try_from(second).unwrap())
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(i64::from(later[0].id.0), second);
    // The first one is gone for good, even without an offset.
    let again = bot.get_updates().await.unwrap();
    assert_eq!(again.len(), 1);
    let none = bot
        .get_updates()
        .offset(offset_after(&again))
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(telegram.pending_updates().is_empty());
    assert_eq!(telegram.polls(), 4);
    assert!(telegram.calls().is_empty(), "getUpdates is not recorded");
}

#[tokio::test]
async fn limit_and_allowed_updates_shape_the_batch() {
    let (telegram, bot) = fake().await;
    telegram.send_text(USER, "one");
    telegram.press(USER, 1, "1:l:en");
    telegram.send_text(USER, "two");
    let one = bot.get_updates().limit(1).await.unwrap();
    assert_eq!(one.len(), 1);
    let messages = bot
        .get_updates()
        .allowed_updates([teloxide::types::AllowedUpdate::Message])
        .await
        .unwrap();
    assert_eq!(messages.len(), 2);
    assert!(
        messages
            .iter()
            .all(|u| matches!(u.kind, UpdateKind::Message(_)))
    );
}

#[tokio::test]
async fn a_long_poll_waits_and_is_woken_by_an_injection() {
    let (telegram, bot) = fake().await;
    let poll = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    tokio::time::timeout(Duration::from_secs(5), telegram.until_polling())
        .await
        .expect("the poll waits");
    assert!(!poll.is_finished());
    let id = telegram.send_text(USER, "hi");
    let updates = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("woken long before its timeout")
        .unwrap()
        .unwrap();
    assert_eq!(updates.len(), 1);
    assert_eq!(i64::from(updates[0].id.0), id);
}

#[tokio::test]
async fn a_long_poll_with_nothing_to_say_answers_empty_after_its_timeout() {
    let (_telegram, bot) = fake().await;
    let started = std::time::Instant::now();
    let updates = bot.get_updates().timeout(1).await.unwrap();
    assert!(updates.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_second_poller_gets_409_until_the_conflict_ends() {
    let (telegram, bot) = fake().await;
    let waiting = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    tokio::time::timeout(Duration::from_secs(5), telegram.until_polling())
        .await
        .unwrap();
    telegram.conflict();
    let conflict = |r: Result<Vec<Update>, RequestError>| {
        matches!(
            r,
            Err(RequestError::Api(ApiError::TerminatedByOtherGetUpdates))
        )
    };
    let woken = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    assert!(conflict(woken), "the waiting poll is terminated");
    assert!(conflict(bot.get_updates().await));
    telegram.end_conflict();
    assert!(bot.get_updates().await.unwrap().is_empty());
}

#[tokio::test]
async fn injected_files_are_fetched_and_downloaded() {
    let (telegram, bot) = fake().await;
    telegram.send_photo(USER, None, "photo-1", 5_000, 1024, 768);
    telegram.send_video(USER, None, "video-big", 25 * 1024 * 1024, 9, "video/mp4");

    let file = bot.get_file(FileId("photo-1".into())).await.unwrap();
    assert_eq!(file.meta.size, 5_000);
    assert!(file.path.starts_with("photos/"), "{}", file.path);
    let mut bytes = Vec::new();
    bot.download_file(&file.path, &mut bytes).await.unwrap();
    assert_eq!(bytes.len(), 5_000);
    assert!(bytes.starts_with(b"\xFF\xD8\xFF"), "looks like a JPEG");

    telegram.add_file("photo-1", b"real bytes".to_vec());
    let file = bot.get_file(FileId("photo-1".into())).await.unwrap();
    assert_eq!(file.meta.size, 10);
    let mut bytes = Vec::new();
    bot.download_file(&file.path, &mut bytes).await.unwrap();
    assert_eq!(bytes, b"real bytes");

    let description = |r: Result<teloxide::types::File, RequestError>| match r {
        // teloxide knows neither text: the raw description is kept.
        Err(RequestError::Api(ApiError::Unknown(description))) => description,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        description(bot.get_file(FileId("video-big".into())).await),
        "Bad Request: file is too big"
    );
    assert_eq!(
        description(bot.get_file(FileId("nope".into())).await),
        "Bad Request: invalid file_id"
    );

    let missing = reqwest::get(format!("{}/file/bot123:TEST/photos/none.jpg", telegram.url))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn an_edit_that_changes_nothing_is_not_modified() {
    let (telegram, bot) = fake().await;
    let sent = bot
        .send_message(ChatId(USER), "Draft")
        .reply_markup(keyboard("1:c:ff"))
        .await
        .unwrap();
    assert_eq!(sent.reply_markup(), Some(&keyboard("1:c:ff")));

    let same = bot
        .edit_message_text(ChatId(USER), sent.id, "Draft")
        .reply_markup(keyboard("1:c:ff"))
        .await;
    assert!(
        matches!(same, Err(RequestError::Api(ApiError::MessageNotModified))),
        "{same:?}"
    );
    // Without `reply_markup` the keyboard goes: that is a change.
    let edited = bot
        .edit_message_text(ChatId(USER), sent.id, "Draft")
        .await
        .unwrap();
    assert_eq!(edited.id, sent.id);
    assert_eq!(edited.reply_markup(), None);
    let again = bot.edit_message_text(ChatId(USER), sent.id, "Draft").await;
    assert!(matches!(
        again,
        Err(RequestError::Api(ApiError::MessageNotModified))
    ));
    let done = bot
        .edit_message_text(ChatId(USER), sent.id, "Done")
        .await
        .unwrap();
    assert_eq!(done.text(), Some("Done"));

    let edits = telegram.calls_to("editMessageText", USER);
    assert_eq!(edits.len(), 4);
    assert!(
        edits
            .iter()
            .all(|c| c.message_id == Some(i64::from(sent.id.0)))
    );
    assert_eq!(
        edits[0].reply_markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"],
        "1:c:ff"
    );
    assert_eq!(edits[3].text.as_deref(), Some("Done"));

    // A message sent before the fake started is taken as it is edited.
    let old = bot
        .edit_message_text(ChatId(USER), MessageId(7), "Status")
        .await
        .unwrap();
    assert_eq!(old.id, MessageId(7));
}

#[tokio::test]
async fn callback_answers_and_invoices_are_recorded() {
    let (telegram, bot) = fake().await;
    let query = telegram.press(USER, 5, "1:k:10000");
    bot.answer_callback_query(CallbackQueryId(query.clone()))
        .text("Expired")
        .await
        .unwrap();
    let twice = bot
        .answer_callback_query(CallbackQueryId(query.clone()))
        .await;
    assert!(twice.is_err(), "a query is answered once");
    let answers = telegram.calls_of("answerCallbackQuery");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].params["callback_query_id"], query.as_str());
    assert_eq!(answers[0].text.as_deref(), Some("Expired"));

    let invoice = bot
        .send_invoice(
            ChatId(USER),
            "100 credits",
            "Balance top-up",
            "topup:tp_91c0",
            "XTR",
            [LabeledPrice::new("100 credits", 250)],
        )
        .await
        .unwrap();
    let MessageKind::Invoice(shown) = &invoice.kind else {
        panic!("{:?}", invoice.kind)
    };
    assert_eq!(shown.invoice.total_amount, 250);
    assert_eq!(shown.invoice.currency, "XTR");
    let sent = &telegram.calls_to("sendInvoice", USER)[0];
    assert_eq!(sent.params["title"], "100 credits");
    assert_eq!(sent.params["payload"], "topup:tp_91c0");
    assert_eq!(sent.params["currency"], "XTR");
    assert_eq!(sent.params["prices"][0]["amount"], 250);
}

#[tokio::test]
async fn setup_calls_are_accepted() {
    let (telegram, bot) = fake().await;
    let me = bot.get_me().await.unwrap();
    assert_eq!(me.username(), "rei_test_bot");
    bot.delete_webhook().await.unwrap();
    bot.set_my_commands([BotCommand::new("start", "Start")])
        .await
        .unwrap();
    bot.send_chat_action(ChatId(USER), ChatAction::Typing)
        .await
        .unwrap();
    let commands = &telegram.calls_of("setMyCommands")[0];
    assert_eq!(commands.params["commands"][0]["command"], "start");
    assert_eq!(telegram.calls_to("sendChatAction", USER).len(), 1);
}

#[tokio::test]
async fn injected_429s_are_left_for_the_sends() {
    let (telegram, bot) = fake().await;
    telegram.too_many_requests(1);
    bot.get_updates().await.unwrap();
    let refused = bot.send_message(ChatId(USER), "hi").await;
    assert!(
        matches!(refused, Err(RequestError::RetryAfter(s)) if s.seconds() == 1),
        "{refused:?}"
    );
    bot.send_message(ChatId(USER), "hi").await.unwrap();
}

#[tokio::test]
async fn the_language_code_follows_the_test() {
    let (telegram, bot) = fake().await;
    telegram.user_language(USER, Some("en"));
    telegram.send_text(USER, "a");
    telegram.user_language(USER, None);
    telegram.send_text(USER, "b");
    let codes: Vec<Option<String>> = bot
        .get_updates()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.from().unwrap().language_code.clone())
        .collect();
    assert_eq!(codes, [Some("en".to_owned()), None]);
}

/// Sends `request` and parses the answer as JSON.
async fn json_answer(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn form_and_query_parameters_work_too() {
    let (telegram, _bot) = fake().await;
    let first = telegram.send_text(USER, "one");
    telegram.send_text(USER, "two");
    let client = reqwest::Client::new();
    let query = format!(
        "{}/bot123:TEST/getUpdates?offset={}&timeout=0",
        telegram.url,
        first + 1
    );
    let by_query = json_answer(client.get(query)).await;
    assert_eq!(by_query["result"].as_array().unwrap().len(), 1);
    let form = client
        .post(format!("{}/bot123:TEST/sendMessage", telegram.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "chat_id={USER}&text=hi&reply_markup=%7B%22inline_keyboard%22%3A%5B%5B%7B%22text%22%3A%22a%22%2C%22callback_data%22%3A%22b%22%7D%5D%5D%7D"
        ));
    let by_form = json_answer(form).await;
    assert_eq!(by_form["result"]["text"], "hi");
    let call = &telegram.calls_to("sendMessage", USER)[0];
    assert_eq!(
        call.reply_markup.as_ref().unwrap()["inline_keyboard"][0][0]["callback_data"],
        "b"
    );
}
