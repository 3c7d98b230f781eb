//! The console front end drives the same engine as the Telegram bot: a whole image flow
//! typed into a terminal — start, a draft, confirm, the result on disk, the balance and
//! history after — on the in-memory stores, without a top-up.

#![cfg(feature = "console")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rei_adapters::inbound::console::ConsoleOutput;
use rei_adapters::inbound::console::demo::{self, DemoConfig};

/// What the console printed, shared with the test.
#[derive(Clone, Default)]
struct Screen(Arc<Mutex<Vec<u8>>>);

impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Screen {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

async fn session(lines: &str, dir: &std::path::Path) -> String {
    let screen = Screen::default();
    demo::run(
        lines.as_bytes(),
        ConsoleOutput::new(screen.clone()),
        DemoConfig {
            asset_dir: dir.to_path_buf(),
            balance: "500".parse().unwrap(),
            finish_within: Duration::from_secs(20),
        },
    )
    .await
    .unwrap();
    screen.text()
}

/// Where `needle` is in `haystack`, or a failure that shows the whole screen.
fn at(haystack: &str, needle: &str) -> usize {
    haystack
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not on the screen:\n{haystack}"))
}

#[tokio::test]
async fn an_image_is_ordered_and_delivered_in_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let screen = session(
        "/start\na red fox in the snow, watercolor\n#1\n",
        dir.path(),
    )
    .await;
    // The welcome with the demo balance, the draft with its price and buttons.
    let welcome = at(&screen, "500.00 ₽");
    let draft = at(&screen, "50.00 ₽");
    assert!(welcome < draft, "{screen}");
    assert!(screen.contains("[#1] "), "numbered buttons: {screen}");
    // Confirmed: the status line (the notifier's), then the result and its file.
    let queued = at(&screen, "⏳ Запущено, в резерве 50.00 ₽");
    let done = at(&screen, "✅ Готово! Списано: 50.00 ₽");
    assert!(draft < queued && queued < done, "{screen}");
    let file_line = &screen[at(&screen, "📁 Файл: ")..];
    let path = file_line
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("📁 Файл: ")
        .trim();
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}\n{screen}"));
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "the generated image is on disk"
    );
    assert!(
        std::path::Path::new(path).starts_with(dir.path()),
        "{path} is under the asset dir"
    );
}

#[tokio::test]
async fn the_balance_and_history_follow_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let screen = session("a lighthouse at dusk\n#1\n/balance\n/history\n", dir.path()).await;
    assert!(screen.contains("✅ Готово!"), "{screen}");
    // 50 ₽ held at confirmation (or already captured): 450 ₽ left either way.
    let balance = at(&screen, "Баланс: 450.00 ₽");
    let history = at(&screen, "− 50.00 ₽ — image_generation");
    assert!(balance < history, "{screen}");
}

#[tokio::test]
async fn a_stale_button_a_bad_command_and_a_missing_file_are_told_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let screen = session(
        "#7\n/nosuchcommand\n+photo /no/such/file.jpg make it blue\n/balance\n",
        dir.path(),
    )
    .await;
    assert!(screen.contains("Эта кнопка устарела"), "{screen}");
    assert!(screen.contains("Не знаю такой команды"), "{screen}");
    assert!(screen.contains("Не удалось получить файл"), "{screen}");
    assert!(screen.contains("500.00 ₽"), "nothing spent: {screen}");
}
