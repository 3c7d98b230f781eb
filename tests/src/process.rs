//! Running the real binaries: where a `rei-bot` started with `HTTP_ADDR=127.0.0.1:0`
//! listens (it says so in its log), and a fixed address in front of it for `PUBLIC_URL`
//! (a reverse proxy, as in production), so no test picks a port and hopes it stays free.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

/// The line the HTTP server logs once it listens.
const LISTENING: &str = "HTTP server listening";

/// The one admin of a bot started by [`bot_command`].
pub const BOT_ADMIN: i64 = 1;

/// `rei-bot <subcommand>` (the binary at `bin`) as the tests start it: nothing of the
/// caller's environment but `PATH`, the fake Telegram's bot token, [`BOT_ADMIN`],
/// logs at `info` to `stderr`, stdout dropped, and killed when dropped.
#[must_use]
pub fn bot_command(bin: &str, subcommand: &str, stderr: Stdio) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin);
    command
        .arg(subcommand)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BOT_TOKEN", "123456:TEST")
        .env("ADMIN_IDS", BOT_ADMIN.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    command
}

/// The address a bot's HTTP server reported in the log at `log`, in what was written
/// after byte `from` (a restarted bot appends to the same log), waiting up to `limit`.
///
/// # Errors
/// When the line does not come within `limit`.
pub async fn listening_addr(log: &Path, from: u64, limit: Duration) -> anyhow::Result<SocketAddr> {
    let start = Instant::now();
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let skip = usize::try_from(from).unwrap_or(usize::MAX).min(text.len());
        let text = String::from_utf8_lossy(&text[skip..]).into_owned();
        if let Some(addr) = text
            .lines()
            .filter(|l| l.contains(LISTENING))
            .filter_map(|l| l.split("addr=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .filter_map(|a| a.trim_matches('"').parse().ok())
            .next_back()
        {
            return Ok(addr);
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "no \"{LISTENING}\" in {} within {limit:?}:\n{text}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The length of the log now (where a restarted process's lines begin).
#[must_use]
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

/// A loopback TCP forwarder: a fixed address (the bot's `PUBLIC_URL`) in front of a
/// server whose port is known only once it started, re-pointed when it restarts.
#[derive(Clone, Debug)]
pub struct Forwarder {
    /// Where it listens.
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Forwarder {
    /// Listens on a free loopback port until the runtime ends.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind")?;
        let addr = listener.local_addr()?;
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let live: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (to, conns) = (target.clone(), live.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(target) = *to.lock().unwrap_or_else(PoisonError::into_inner) else {
                    continue;
                };
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        // Either side closing ends the connection; errors are the peer's.
                        let _copied =
                            tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = conns.lock().unwrap_or_else(PoisonError::into_inner);
                conns.retain(|c| !c.is_finished());
                conns.push(connection.abort_handle());
            }
        });
        Ok(Self { addr, target, live })
    }

    /// `http://<addr>/`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Drops every connection it carries and refuses new ones (they are accepted and
    /// closed at once) until [`Self::point_at`]: the server behind it restarting.
    pub fn cut(&self) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = None;
        for connection in self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            connection.abort();
        }
    }

    /// Forwards to `target` from now on.
    pub fn point_at(&self, target: SocketAddr) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = Some(target);
    }
}
