//! Small HTTP fakes of the paid outside services, speaking their wire format
//! (`shared/reference/providers.md`), recording what they were sent and answering what a
//! test scripts — including answers that never come (to kill a process mid-call).

pub mod gemini;
pub mod kling;
pub mod telegram;
pub mod yookassa;

use std::net::SocketAddr;

use anyhow::Context;

/// Serves `router` on a free loopback port; returns the base URL and the server task.
///
/// # Errors
/// When no port can be bound.
pub async fn serve(router: axum::Router) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    serve_at("127.0.0.1:0".parse()?, router).await
}

/// Serves `router` at `addr` (a port chosen beforehand: a client may already be trying
/// it); returns the base URL and the server task.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_at(
    addr: SocketAddr,
    router: axum::Router,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind a fake's port at {addr}"))?;
    let addr: SocketAddr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("fake server stopped: {e}");
        }
    });
    Ok((format!("http://{addr}"), task))
}
