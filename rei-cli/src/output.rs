//! Rendering: a table for people, JSON for machines (`--json`).

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::Value;

/// Where command results go.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub json: bool,
}

impl Output {
    /// Prints rows as a table, or the JSON value.
    pub(crate) fn table(&self, json: &Value, header: &[&str], rows: Vec<Vec<String>>) {
        if self.json {
            println!("{json}");
            return;
        }
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_header(header.to_vec());
        for r in rows {
            t.add_row(r);
        }
        println!("{t}");
    }

    /// Prints a list: one row per item as a table, or the items as JSON.
    pub(crate) fn list<T: serde::Serialize>(
        &self,
        items: &[T],
        header: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> serde_json::Result<()> {
        let json = serde_json::to_value(items)?;
        self.table(&json, header, items.iter().map(row).collect());
        Ok(())
    }

    /// Prints one message, or the JSON value.
    pub(crate) fn message(&self, json: &Value, text: &str) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
    }

    /// A progress bar on stderr, shown only to a person at a terminal (never with
    /// `--json` or when output is redirected).
    pub(crate) fn progress(&self, len: u64, what: &'static str) -> indicatif::ProgressBar {
        use std::io::IsTerminal;
        if self.json || !std::io::stderr().is_terminal() || !std::io::stdout().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(len);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} ({eta})")
        {
            bar.set_style(style);
        }
        bar.set_message(what);
        bar
    }

    /// Prints an error to stderr (JSON: `{"error": …}` on stdout for scripts).
    pub(crate) fn error(&self, text: &str) {
        if self.json {
            println!("{}", serde_json::json!({ "error": text }));
        } else {
            eprintln!("error: {text}");
        }
    }
}

/// A timestamp in UTC, for tables.
pub(crate) fn when(t: rei_core::Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.millis()).map_or_else(
        || t.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}
