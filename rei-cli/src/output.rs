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

    /// Prints one message, or the JSON value.
    pub(crate) fn message(&self, json: &Value, text: &str) {
        if self.json {
            println!("{json}");
        } else {
            println!("{text}");
        }
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
