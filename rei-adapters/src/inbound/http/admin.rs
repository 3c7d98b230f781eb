//! The web admin's door (`ADMIN_WEB=1`): signing in with the bot's one-time `/web` link,
//! the session cookie, signing out. The pages behind it check the session on every
//! request and the CSRF token on every form.
//!
//! - `GET /admin/login?token=…` shows a "Sign in" button and uses nothing: Telegram's
//!   link preview fetches the link too, and must not burn it.
//! - `POST /admin/login` (the form) uses the link once and sets the session cookie
//!   (`HttpOnly`, `SameSite=Strict`, `Path=/admin`, `Secure` behind https), then sends
//!   the browser to `/admin`.
//! - `GET /admin` without a live session: the sign-in page (401); with one: the overview.
//! - `POST /admin/logout` (with the CSRF token) ends the session.
//!
//! Sign-in attempts are limited per client address and logged.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rei_core::user::AdminService;
use rei_core::web::{Secret, WebAdminService, WebError as SignInError, WebSession};

use super::{WebError, WebState, escape_html as escape, read_body};

/// The session cookie's name.
pub const COOKIE: &str = "rei_admin";
/// Sign-in attempts a client address may make per minute.
const ATTEMPTS_PER_MINUTE: u32 = 10;
/// The largest form read.
const FORM_LIMIT: usize = 8 * 1024;

/// What the admin pages need.
#[derive(Clone)]
pub struct AdminPages {
    /// Links and sessions.
    pub web: WebAdminService,
    /// Statistics for the overview.
    pub admin: AdminService,
    /// `PUBLIC_URL` is https: the cookie is `Secure`.
    pub secure: bool,
    /// Sign-in attempts per client address.
    attempts: Arc<governor::DefaultKeyedRateLimiter<IpAddr>>,
}

rei_core::opaque_debug!(AdminPages);

impl AdminPages {
    /// The pages over `web` and `admin`; `secure` when served over https.
    #[must_use]
    pub fn new(web: WebAdminService, admin: AdminService, secure: bool) -> Self {
        let quota = governor::Quota::per_minute(
            NonZeroU32::new(ATTEMPTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
        );
        Self {
            web,
            admin,
            secure,
            attempts: Arc::new(governor::RateLimiter::keyed(quota)),
        }
    }
}

fn pages(state: &WebState) -> Result<&AdminPages, WebError> {
    state.admin_web.as_ref().ok_or(WebError::NotFound)
}

/// A whole page; `nav` adds the sign-out form of a session.
fn page(status: StatusCode, title: &str, body: &str, session: Option<&WebSession>) -> Response {
    let nav = session.map_or_else(String::new, |s| {
        format!(
            "<form method=\"post\" action=\"/admin/logout\" class=\"nav\">\
             <span>admin {}</span> <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"logout\">Sign out</button></form>",
            s.admin.get(),
            escape(s.csrf.expose())
        )
    });
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>REI admin: {title}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         .nav{{float:right}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}}\
         th{{text-align:left}} button{{font-size:1rem;padding:.4rem 1rem}}</style></head>\
         <body>{nav}<h1>{title}</h1>{body}</body></html>\n",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    // Pages of a session are never cached or framed.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn sign_in_page(status: StatusCode, why: &str) -> Response {
    page(
        status,
        "Sign in",
        &format!(
            "<p id=\"why\">{}</p><p>Send <code>/web</code> to the bot from an admin account: \
             it answers with a sign-in link that works once, for 5 minutes.</p>",
            escape(why)
        ),
        None,
    )
}

fn cookie_of(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| Secret::new(value))
}

/// The fields of a form body.
fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The session of the request, or the page to answer instead.
async fn session(pages: &AdminPages, headers: &HeaderMap) -> Result<WebSession, Response> {
    let Some(cookie) = cookie_of(headers) else {
        return Err(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in.",
        ));
    };
    match pages.web.session(&cookie).await {
        Ok(session) => Ok(session),
        Err(SignInError::NoSession) => Err(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "Your session has ended.",
        )),
        Err(SignInError::NotAdmin) => Err(sign_in_page(
            StatusCode::FORBIDDEN,
            "This account is not an admin any more.",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "web admin session check failed");
            Err(WebError::Unavailable("database").into_response())
        }
    }
}

/// `GET /admin/login?token=…`: a button that signs in (nothing is used yet).
pub(super) async fn login_page(
    State(state): State<Arc<WebState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    pages(&state)?;
    let Some(token) = field(&query, "token").filter(|t| !t.is_empty()) else {
        return Ok(sign_in_page(
            StatusCode::BAD_REQUEST,
            "This link has no token.",
        ));
    };
    Ok(page(
        StatusCode::OK,
        "Sign in",
        &format!(
            "<form method=\"post\" action=\"/admin/login\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\" id=\"sign-in\">Sign in to REI admin</button></form>",
            escape(token)
        ),
        None,
    ))
}

/// `POST /admin/login`: uses the link, sets the cookie, goes to the overview.
pub(super) async fn login(
    State(state): State<Arc<WebState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Result<Response, WebError> {
    let pages = pages(&state)?;
    let client = super::ips::client_ip(peer.ip(), request.headers(), &state.trusted_proxies)
        .unwrap_or(peer.ip());
    if pages.attempts.check_key(&client).is_err() {
        tracing::warn!(client = %client, "web admin sign-in attempts over the limit");
        return Ok(sign_in_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts: wait a minute.",
        ));
    }
    let body = read_body(request, FORM_LIMIT).await?;
    let form = form(&body);
    let token = Secret::new(field(&form, "token").unwrap_or_default());
    match pages.web.sign_in(&token).await {
        Ok(signed) => {
            tracing::info!(user_id = signed.session.admin.get(), client = %client, "web admin signed in");
            let secure = if pages.secure { "; Secure" } else { "" };
            let cookie = format!(
                "{COOKIE}={}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                signed.cookie.expose(),
                rei_core::web::SESSION_TTL.as_secs()
            );
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            headers.insert(header::LOCATION, HeaderValue::from_static("/admin"));
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.insert(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(SignInError::LinkRefused) => {
            tracing::warn!(client = %client, "web admin sign-in refused: a used, expired or unknown link");
            Ok(sign_in_page(
                StatusCode::FORBIDDEN,
                "This sign-in link was used already or has expired.",
            ))
        }
        Err(SignInError::NotAdmin) => {
            tracing::warn!(client = %client, "web admin sign-in refused: not an admin");
            Ok(sign_in_page(
                StatusCode::FORBIDDEN,
                "This account is not an admin.",
            ))
        }
        Err(e) => {
            tracing::warn!(error = %e, "web admin sign-in failed");
            Err(WebError::Unavailable("database"))
        }
    }
}

/// `GET /admin`: the overview of a signed-in admin.
pub(super) async fn overview(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let pages = pages(&state)?;
    let session = match session(pages, &headers).await {
        Ok(session) => session,
        Err(page) => return Ok(page),
    };
    let report = pages.admin.stats().await.map_err(|e| {
        tracing::warn!(error = %e, "statistics unavailable");
        WebError::Unavailable("database")
    })?;
    let s = &report.stats;
    let rows = [
        ("Users", s.users.to_string()),
        ("Active in 24 h", s.active_since.to_string()),
        ("Banned", s.banned_users.to_string()),
        ("Blocked the bot", s.unreachable_users.to_string()),
        ("Balances", s.balances_total.to_string()),
        ("Held by reservations", s.held_total.to_string()),
        ("Signup bonuses given", s.bonuses_total.to_string()),
        ("Jobs failed in 24 h", s.failed_since.to_string()),
        ("Jobs queued or running", report.queue_depth.to_string()),
    ];
    let mut table = String::from("<table id=\"overview\">");
    for (name, value) in rows {
        table.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name),
            escape(&value)
        ));
    }
    table.push_str("</table>");
    Ok(page(StatusCode::OK, "Overview", &table, Some(&session)))
}

/// `POST /admin/logout`: ends the session (its CSRF token required).
pub(super) async fn logout(
    State(state): State<Arc<WebState>>,
    request: Request,
) -> Result<Response, WebError> {
    let pages = pages(&state)?;
    let Some(cookie) = cookie_of(request.headers()) else {
        return Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in.",
        ));
    };
    let body = read_body(request, FORM_LIMIT).await?;
    let form = form(&body);
    let csrf = field(&form, "csrf").unwrap_or_default();
    match pages.web.sign_out(&cookie, csrf).await {
        Ok(()) => {
            let mut response = sign_in_page(StatusCode::OK, "You are signed out.");
            response.headers_mut().insert(
                header::SET_COOKIE,
                HeaderValue::from_static(
                    "rei_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0",
                ),
            );
            Ok(response)
        }
        Err(SignInError::BadCsrf) => {
            tracing::warn!("web admin form refused: no or a wrong CSRF token");
            Ok(page(
                StatusCode::FORBIDDEN,
                "Refused",
                "<p id=\"why\">The form is stale or forged: reload the page.</p>",
                None,
            ))
        }
        Err(SignInError::NoSession | SignInError::NotAdmin) => Ok(sign_in_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in.",
        )),
        Err(e) => {
            tracing::warn!(error = %e, "web admin sign-out failed");
            Err(WebError::Unavailable("database"))
        }
    }
}
