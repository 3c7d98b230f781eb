//! `GET /assets/{key}?exp=…&sig=…`: a file of `ASSET_DIR` behind a signed, expiring link
//! REI handed out (Kling fetches a video→video source this way). Anything else is 404,
//! without saying why.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use rei_core::job::AssetRef;
use serde::Deserialize;
use tokio_util::io::ReaderStream;

use super::{WebError, WebState};

#[derive(Debug, Deserialize)]
pub(super) struct Link {
    exp: u64,
    sig: String,
}

pub(super) async fn asset(
    State(state): State<Arc<WebState>>,
    Path(key): Path<String>,
    link: Result<Query<Link>, QueryRejection>,
) -> Result<Response, WebError> {
    let (Some(assets), Ok(Query(link))) = (&state.assets, link) else {
        return Err(WebError::NotFound);
    };
    if !assets.link_is_valid(&key, link.exp, &link.sig, SystemTime::now()) {
        tracing::info!(
            route = "/assets",
            "asset link refused (unknown, forged or expired)"
        );
        return Err(WebError::NotFound);
    }
    let path = assets
        .path(&AssetRef::new(key.clone()))
        .map_err(|_| WebError::NotFound)?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| WebError::NotFound)?;
    let size = file.metadata().await.map(|m| m.len()).ok();
    tracing::info!(route = "/assets", key = %key, bytes = size, "asset served");
    let mut response = Body::from_stream(ReaderStream::new(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        content_type(&key).parse().map_err(|_| WebError::NotFound)?,
    );
    if let Some(size) = size {
        headers.insert(CONTENT_LENGTH, size.into());
    }
    Ok(response)
}

fn content_type(key: &str) -> &'static str {
    match key
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .as_deref()
    {
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}
