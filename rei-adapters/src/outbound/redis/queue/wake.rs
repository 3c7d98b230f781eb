//! Wakes across processes: a Kling callback received anywhere is published on
//! `rei:wake`, and every process's listener wakes the worker that owns the job.

use super::*;

/// Listens for wakes published by any process (`{prefix}wake`) and hands each job id to
/// `wake` until `shutdown`; reconnects after a lost connection.
pub async fn listen_for_wakes(
    url: &str,
    key_prefix: &str,
    wake: impl Fn(JobId) + Send,
    shutdown: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    let Ok(client) = ::redis::Client::open(url) else {
        return;
    };
    let channel = format!("{key_prefix}wake");
    while !shutdown.is_cancelled() {
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        }
        .await;
        match subscribed {
            Ok(mut pubsub) => {
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let job = message
                                .get_payload::<String>()
                                .ok()
                                .and_then(|id| id.parse::<JobId>().ok());
                            if let Some(job) = job {
                                wake(job);
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "cannot listen for wakes yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
