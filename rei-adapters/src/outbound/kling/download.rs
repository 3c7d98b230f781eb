//! Results downloaded from Kling's URL into the asset store, within the size limits.

use super::*;

impl KlingClient {
    pub(super) async fn download_once(
        &self,
        url: &Url,
        key: &str,
    ) -> Result<DownloadedAsset, ProviderError> {
        let span = tracing::info_span!(
            "provider_request",
            provider = PROVIDER,
            method = "GET",
            path = url.path(),
            status = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let result = self.fetch_into(url, key).await;
            let latency = started.elapsed();
            tracing::Span::current().record(
                "latency_ms",
                u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            );
            client::record_outcome(PROVIDER, Outcome::of(&result), latency);
            result
        }
        .instrument(span)
        .await
    }

    pub(super) async fn fetch_into(
        &self,
        url: &Url,
        key: &str,
    ) -> Result<DownloadedAsset, ProviderError> {
        let response = self
            .http
            .get(url.clone())
            .timeout(self.download.timeout)
            .send()
            .await
            .map_err(client::transport_error)?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        if !status.is_success() {
            return Err(match status.as_u16() {
                429 => ProviderError::RateLimited {
                    retry_after: client::retry_after(response.headers()),
                },
                408 | 500..=599 => ProviderError::Transient {
                    message: format!("the result download answered HTTP {status}"),
                },
                _ => ProviderError::Unknown {
                    message: format!("the result download answered HTTP {status}"),
                },
            });
        }
        let max = self.download.max_bytes;
        if response.content_length().is_some_and(|n| n > max) {
            return Err(too_large(max));
        }
        let stream = response.bytes_stream().map_err(reqwest::Error::without_url);
        match self.assets.write_stream(key, stream, max).await {
            Ok((asset, bytes)) => Ok(DownloadedAsset { asset, bytes }),
            Err(AssetError::TooLarge { limit }) => Err(too_large(limit)),
            Err(AssetError::Source { message }) => Err(ProviderError::Transient {
                message: format!("the download broke off: {message}"),
            }),
            Err(e @ (AssetError::InvalidKey { .. } | AssetError::Io(_))) => {
                Err(ProviderError::Unknown {
                    message: format!("cannot store the result: {e}"),
                })
            }
        }
    }
}
