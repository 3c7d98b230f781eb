//! The web admin's door over a real listener and a real SQLite file: the access rules of
//! [admin-web] — no session → the sign-in page; a non-admin → refused; a used or expired
//! link → refused; a form without its CSRF token → refused; sign-in attempts limited.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use rei_adapters::app::backends::{Backends, BackendsConfig, connect};
use rei_adapters::inbound::http::{AdminPages, ServerLimits, WebState};
use rei_adapters::outbound::sql::DatabaseTarget;
use rei_adapters::outbound::system::{RandomIds, SystemClock};
use rei_core::ids::UserId;
use rei_core::time::Timestamp;
use rei_core::user::{AdminPorts, AdminService};
use rei_core::web::{Secret, WebAdminService};
use tokio_util::sync::CancellationToken;

const ADMIN: i64 = 1;

struct Door {
    url: String,
    web: WebAdminService,
    backends: Backends,
    http: reqwest::Client,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn door() -> Door {
    let dir = tempfile::tempdir().unwrap().keep();
    let backends = connect(&BackendsConfig {
        database: DatabaseTarget::SqlitePath(dir.join("rei.db").to_string_lossy().into_owned()),
        redis_url: None,
        rate_limit_per_minute: 10,
        lease_for: Duration::from_secs(60),
        write_mode: None,
    })
    .await
    .unwrap();
    let clock = Arc::new(SystemClock);
    let web = WebAdminService::new(
        backends.stores.web.clone(),
        vec![UserId::new(ADMIN).unwrap()],
        clock.clone(),
        Arc::new(RandomIds),
    );
    let admin = AdminService::new(AdminPorts {
        users: backends.stores.users.clone(),
        ledger: backends.stores.ledger.clone(),
        queue: backends.queue.clone(),
        clock,
    });
    let mut state = WebState::new(backends.clone());
    state.admin_web = Some(AdminPages::new(web.clone(), admin, false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(rei_adapters::inbound::http::serve(
        listener,
        state,
        ServerLimits::default(),
        shutdown.clone(),
    ));
    Door {
        url,
        web,
        backends,
        // Redirects are looked at, not followed.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        _shutdown: shutdown.drop_guard(),
    }
}

impl Door {
    async fn get(&self, path: &str, cookie: Option<&str>) -> (u16, String) {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// POSTs a form: status, the `Set-Cookie` header, the body.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        cookie: Option<&str>,
    ) -> (u16, Option<String>, String) {
        let mut request = self.http.post(format!("{}{path}", self.url)).form(form);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let r = request.send().await.unwrap();
        let set = r
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), set, r.text().await.unwrap())
    }
}

/// The `name=value` part of a `Set-Cookie` header.
fn cookie_pair(set: &str) -> String {
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token in a page's sign-out form.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_signs_in_once_with_a_link_and_out_with_the_forms_token() {
    let door = door().await;
    // No session: the sign-in page.
    let (status, page) = door.get("/admin", None).await;
    assert_eq!(status, 401, "{page}");
    assert!(
        page.contains("not signed in") && page.contains("/web"),
        "{page}"
    );

    let link = door
        .web
        .issue_link(UserId::new(ADMIN).unwrap())
        .await
        .unwrap();
    // Opening the link (or Telegram's preview of it) uses nothing.
    for _ in 0..2 {
        let (status, page) = door
            .get(&format!("/admin/login?token={}", link.expose()), None)
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("id=\"sign-in\""), "{page}");
    }
    let (status, set, _) = door
        .post("/admin/login", &[("token", link.expose())], None)
        .await;
    assert_eq!(status, 303);
    let set = set.expect("a session cookie");
    for part in ["rei_admin=", "HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(set.contains(part), "{part}: {set}");
    }
    let cookie = cookie_pair(&set);
    // The same link again: refused.
    let (status, _, page) = door
        .post("/admin/login", &[("token", link.expose())], None)
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("used already or has expired"), "{page}");

    let (status, page) = door.get("/admin", Some(&cookie)).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Overview") && page.contains("<th>Users</th>"),
        "{page}"
    );
    let csrf = csrf_of(&page);

    // A form without the session's CSRF token, or with another: refused, still signed in.
    for form in [&[][..], &[("csrf", "forged")][..]] {
        let (status, _, page) = door.post("/admin/logout", form, Some(&cookie)).await;
        assert_eq!(status, 403, "{page}");
    }
    assert_eq!(door.get("/admin", Some(&cookie)).await.0, 200);
    let (status, set, _) = door
        .post("/admin/logout", &[("csrf", &csrf)], Some(&cookie))
        .await;
    assert_eq!(status, 200);
    assert!(set.unwrap().contains("Max-Age=0"));
    let (status, page) = door.get("/admin", Some(&cookie)).await;
    assert_eq!(status, 401, "the session is over: {page}");

    // Both sign-in and sign-out are in the audit log.
    let audit = door.backends.stores.users.audit_log(10).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert!(
        actions.contains(&"web_sign_in") && actions.contains(&"web_sign_out"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_non_admin_an_expired_link_and_a_flood_of_attempts_are_refused() {
    let door = door().await;
    // A link made for someone who is not an admin (as if ADMIN_IDS changed since).
    let stranger = Secret::new("stranger-token-0123456789");
    let far = Timestamp::from_millis(i64::MAX / 2);
    door.backends
        .stores
        .web
        .put_link(&stranger.digest(), UserId::new(2).unwrap(), far)
        .await
        .unwrap();
    let (status, set, page) = door
        .post("/admin/login", &[("token", stranger.expose())], None)
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(set.is_none());
    assert!(page.contains("not an admin"), "{page}");
    // An expired link.
    let old = Secret::new("expired-token-0123456789");
    door.backends
        .stores
        .web
        .put_link(
            &old.digest(),
            UserId::new(ADMIN).unwrap(),
            Timestamp::from_millis(1),
        )
        .await
        .unwrap();
    let (status, _, page) = door
        .post("/admin/login", &[("token", old.expose())], None)
        .await;
    assert_eq!(status, 403, "{page}");
    // A forged cookie is no session.
    assert_eq!(door.get("/admin", Some("rei_admin=forged")).await.0, 401);
    // Guessing: after 10 attempts a minute from one address, even a good link waits.
    for _ in 0..8 {
        door.post("/admin/login", &[("token", "guess")], None).await;
    }
    let good = door
        .web
        .issue_link(UserId::new(ADMIN).unwrap())
        .await
        .unwrap();
    let (status, _, page) = door
        .post("/admin/login", &[("token", good.expose())], None)
        .await;
    assert_eq!(status, 429, "{page}");
}
