//! Talk to the bot in a terminal: the same conversation engine as the Telegram bot, on
//! in-memory stores with an instant image generator and a demo balance.
//!
//! ```text
//! cargo run -p rei-adapters --example console
//! ```
//!
//! Type a description to get a priced draft, `#1` to confirm it; `/balance`, `/history`,
//! `/lang`, `/help` work as in the bot. Results are written under `REI_CONSOLE_DIR`
//! (default: a `rei-console` directory in the system's temporary directory).

use std::error::Error;

use rei_adapters::inbound::console::ConsoleOutput;
use rei_adapters::inbound::console::demo::{self, DemoConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let asset_dir = std::env::var_os("REI_CONSOLE_DIR")
        .map_or_else(|| std::env::temp_dir().join("rei-console"), Into::into);
    let config = DemoConfig {
        asset_dir,
        balance: "500".parse()?,
        finish_within: std::time::Duration::from_secs(30),
    };
    let input = tokio::io::BufReader::new(tokio::io::stdin());
    demo::run(input, ConsoleOutput::new(std::io::stdout()), config).await?;
    Ok(())
}
