//! The outside services an application is built with, from the settings: YooKassa (or
//! the sandbox's checkout), the image and video generators (or the sandbox's), Kling's
//! keys, and where a browser reaches the HTTP server.

use std::sync::Arc;
use std::time::Duration;

use rei_core::ports::{ImageGenerator, PaymentGateway, VideoGenerator};

use super::error::AppError;
use super::settings::Settings;
use crate::outbound::client::HttpConfig;
use crate::outbound::files::AssetStore;
use crate::outbound::gemini::{GeminiClient, GeminiConfig};
use crate::outbound::kling::{KlingClient, KlingConfig, KlingCredentials, KlingModel};
use crate::outbound::sandbox::{SandboxImages, SandboxVideos};
use crate::outbound::yookassa::{VatCode, YooKassaClient, YooKassaConfig};

/// How long a sandbox video "renders": long enough to see its progress message.
const SANDBOX_RENDER_TIME: Duration = Duration::from_secs(3);

/// YooKassa when its keys are set (`validate` saw to it that they come in pairs).
pub(super) fn gateway(settings: &Settings) -> Result<Option<Arc<dyn PaymentGateway>>, AppError> {
    let (Some(shop), Some(key)) = (&settings.yookassa_shop_id, &settings.yookassa_secret_key)
    else {
        return Ok(None);
    };
    let mut yookassa = YooKassaConfig::new(shop.clone(), key.clone());
    yookassa.base_url = settings.yookassa_api_url.to_string();
    yookassa.receipt_vat_code = settings
        .yookassa_receipt_vat_code
        .map(VatCode::new)
        .transpose()
        .map_err(|e| AppError::setting("YOOKASSA_RECEIPT_VAT_CODE", e))?;
    let client =
        YooKassaClient::new(yookassa).map_err(|e| AppError::setting("YOOKASSA_API_URL", e))?;
    Ok(Some(Arc::new(client)))
}

/// The video models priced: the `/video` menu's and the video→video one.
pub(super) fn sold_models(settings: &Settings) -> Result<Vec<String>, AppError> {
    let models = KlingModel::parse_list(&settings.kling_models)
        .map_err(|e| AppError::setting("KLING_MODELS", e))?;
    let mut names: Vec<String> = models.iter().map(|m| m.api_name().to_owned()).collect();
    if !names.contains(&settings.kling_omni_model) {
        names.push(settings.kling_omni_model.clone());
    }
    Ok(names)
}

/// Where a browser on this machine reaches the HTTP server: `PUBLIC_URL`, else
/// `HTTP_ADDR` (an unspecified address as 127.0.0.1). Port 0 is replaced once bound.
pub(super) fn local_base(settings: &Settings) -> Result<url::Url, AppError> {
    match &settings.public_url {
        Some(public) => Ok(public.clone()),
        None => base_of(settings.http_addr).map_err(|e| AppError::setting("HTTP_ADDR", e)),
    }
}

/// `http://<addr>/`, an unspecified address as the loopback one.
///
/// # Errors
/// Only if the address does not make a URL (it always does).
pub(super) fn base_of(addr: std::net::SocketAddr) -> Result<url::Url, url::ParseError> {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}/", std::net::SocketAddr::new(ip, addr.port())).parse()
}

pub(super) fn images(settings: &Settings) -> Result<Option<Arc<dyn ImageGenerator>>, AppError> {
    if settings.sandbox {
        return Ok(Some(Arc::new(SandboxImages)));
    }
    let Some(key) = &settings.nano_banana_api_key else {
        return Ok(None);
    };
    let mut gemini = GeminiConfig::new(key.clone());
    gemini.base_url = settings.nano_banana_api_url.to_string();
    gemini.model.clone_from(&settings.nano_banana_model);
    gemini.http =
        HttpConfig::with_request_timeout(Duration::from_secs(settings.nano_banana_timeout_secs));
    let client =
        GeminiClient::new(gemini).map_err(|e| AppError::setting("NANO_BANANA_API_URL", e))?;
    Ok(Some(Arc::new(client)))
}

/// Kling's keys (`KLING_API_KEY`, or `KLING_ACCESS_KEY` + `KLING_SECRET_KEY`); `None`
/// when Kling is not configured.
pub(super) fn kling_credentials(settings: &Settings) -> Result<Option<KlingCredentials>, AppError> {
    Ok(Some(
        match (
            &settings.kling_api_key,
            &settings.kling_access_key,
            &settings.kling_secret_key,
        ) {
            (Some(combined), _, _) => KlingCredentials::from_combined(combined)
                .map_err(|e| AppError::setting("KLING_API_KEY", e))?,
            (None, Some(access), Some(secret)) => {
                KlingCredentials::new(access.clone(), secret.clone())
                    .map_err(|e| AppError::setting("KLING_ACCESS_KEY / KLING_SECRET_KEY", e))?
            }
            _ => return Ok(None),
        },
    ))
}

pub(super) fn videos(
    settings: &Settings,
    assets: &AssetStore,
) -> Result<Option<Arc<dyn VideoGenerator>>, AppError> {
    if settings.sandbox {
        return Ok(Some(Arc::new(SandboxVideos::new(
            assets.clone(),
            SANDBOX_RENDER_TIME,
        ))));
    }
    let Some(credentials) = kling_credentials(settings)? else {
        return Ok(None);
    };
    let mut kling = KlingConfig::new(credentials);
    kling.base_url = settings.kling_api_url.to_string();
    kling.models = KlingModel::parse_list(&settings.kling_models)
        .map_err(|e| AppError::setting("KLING_MODELS", e))?;
    kling.omni_model.clone_from(&settings.kling_omni_model);
    kling.mode = settings
        .kling_mode
        .parse()
        .map_err(|e| AppError::setting("KLING_MODE", e))?;
    kling.public_url = settings.public_url.as_ref().map(ToString::to_string);
    kling.http = HttpConfig::with_request_timeout(Duration::from_secs(settings.kling_timeout_secs));
    let client = KlingClient::new(kling, assets.clone())
        .map_err(|e| AppError::setting("KLING_API_URL", e))?;
    Ok(Some(Arc::new(client)))
}
