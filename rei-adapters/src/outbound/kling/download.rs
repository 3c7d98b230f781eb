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
            .downloads
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

#[cfg(test)]
mod tests {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    fn client(base_url: &str, dir: &std::path::Path) -> KlingClient {
        let credentials =
            KlingCredentials::from_combined(&secrecy::SecretString::from("ak:sk")).unwrap();
        let mut config = KlingConfig::new(credentials);
        config.base_url = base_url.to_owned();
        config.retry.max_attempts = 1;
        KlingClient::new(config, AssetStore::new(dir)).unwrap()
    }

    /// [edge] Result links are fetched over https only; plain http only on this machine,
    /// and only when the API itself is a local http fake (tests).
    #[test]
    fn result_links_must_be_https() {
        let dir = tempfile::tempdir().unwrap();
        let real = client("https://api-singapore.klingai.com", dir.path());
        assert!(real.result_url("https://cdn.klingai.com/r/1.mp4").is_ok());
        for refused in [
            "http://cdn.klingai.com/r/1.mp4",
            "http://127.0.0.1:8080/r/1.mp4",
            "ftp://cdn.klingai.com/r/1.mp4",
            "file:///etc/passwd",
        ] {
            assert!(real.result_url(refused).is_err(), "{refused}");
        }
        let fake = client("http://127.0.0.1:9/", dir.path());
        assert!(fake.result_url("http://127.0.0.1:5/r/1.mp4").is_ok());
        assert!(fake.result_url("http://localhost:5/r/1.mp4").is_ok());
        assert!(fake.result_url("http://cdn.example/r/1.mp4").is_err());
    }

    /// [edge] A result link may redirect within its own origin, never to another one.
    #[tokio::test]
    async fn a_result_download_follows_redirects_only_within_its_origin() {
        let cdn = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/moved.mp4"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/r/1.mp4", cdn.uri()).as_str()),
            )
            .mount(&cdn)
            .await;
        Mock::given(method("GET"))
            .and(path("/r/1.mp4"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"video".to_vec()))
            .mount(&cdn)
            .await;
        Mock::given(method("GET"))
            .and(path("/away.mp4"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/r/1.mp4", elsewhere.uri()).as_str()),
            )
            .mount(&cdn)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_bytes(b"not ours".to_vec()))
            .expect(0)
            .mount(&elsewhere)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let kling = client(&cdn.uri(), dir.path());
        let job = rei_core::ids::JobId::from_uuid(uuid::Uuid::from_u128(1));
        let got = kling
            .download(&format!("{}/moved.mp4", cdn.uri()), job)
            .await
            .unwrap();
        assert_eq!(got.bytes, 5);
        let refused = kling
            .download(&format!("{}/away.mp4", cdn.uri()), job)
            .await;
        assert!(refused.is_err(), "{refused:?}");
    }
}
