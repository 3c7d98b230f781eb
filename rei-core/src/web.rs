//! Signing in to the web admin ([admin-web]): an admin asks the bot for a one-time link
//! (`/web`), valid for [`LINK_TTL`]; opening it starts a server-side session of
//! [`SESSION_TTL`] with its own CSRF token; signing out ends it. Only the SHA-256 of a
//! link or session token is stored, so a copy of the database signs nobody in. Who is
//! an admin is decided here, at every step: an id removed from `ADMIN_IDS` loses its
//! links and sessions at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::ids::UserId;
use crate::ports::{Clock, IdGenerator, StoreError};
use crate::time::Timestamp;
use crate::user::{Actor, AuditAction, AuditRecord};

/// How long a sign-in link works.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A secret handed to one person (a link's token, a session cookie, a CSRF token):
/// never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token received from a browser.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token, to put in a link or a cookie.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the store keeps: the SHA-256 of the token, in hex.
    #[must_use]
    pub fn digest(&self) -> String {
        let hash = Sha256::digest(self.0.as_bytes());
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Compares with `other` in time that does not depend on where they differ.
    #[must_use]
    pub fn matches(&self, other: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), other.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A signed-in admin, as stored (by the digest of its cookie).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSession {
    /// Who.
    pub admin: UserId,
    /// The token every form of this session carries.
    pub csrf: Secret,
    /// When it began.
    pub created_at: Timestamp,
    /// When it ends, signed out or not.
    pub expires_at: Timestamp,
}

/// Where links and sessions are kept.
#[cfg_attr(test, mockall::automock)]
#[async_trait]
pub trait WebStore: Send + Sync {
    /// Keeps a new link (by its digest) for `admin` until `expires_at`.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn put_link(
        &self,
        digest: &str,
        admin: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError>;

    /// Uses the link once: its admin when it exists, was not used and has not expired
    /// at `now`, and marks it used; `None` otherwise. Of two uses at once, one wins.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn take_link(&self, digest: &str, now: Timestamp) -> Result<Option<UserId>, StoreError>;

    /// Keeps a new session (by the digest of its cookie).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn put_session(&self, digest: &str, session: &WebSession) -> Result<(), StoreError>;

    /// The session of a cookie, ended or not (the caller checks its time).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn session(&self, digest: &str) -> Result<Option<WebSession>, StoreError>;

    /// Ends a session (signing out): it is gone; ending it again changes nothing.
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn end_session(&self, digest: &str) -> Result<(), StoreError>;

    /// Writes an audit line (a sign-in, a sign-out).
    ///
    /// # Errors
    /// `Unavailable` on storage failure.
    async fn audit(&self, record: AuditRecord) -> Result<(), StoreError>;
}

/// Why signing in (or a request of a session) is refused.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Not an admin (`ADMIN_IDS`).
    #[error("not an admin")]
    NotAdmin,
    /// The link was used already, has expired, or never existed.
    #[error("this sign-in link was used or has expired: ask the bot for a new one with /web")]
    LinkRefused,
    /// No session, or it ended.
    #[error("not signed in")]
    NoSession,
    /// A form without this session's CSRF token.
    #[error("the form is stale: reload the page")]
    BadCsrf,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session just begun: the cookie to set and the CSRF token of its forms.
#[derive(Debug)]
pub struct SignedIn {
    /// The cookie's value.
    pub cookie: Secret,
    /// The session.
    pub session: WebSession,
}

/// Issues links, signs in and out, and checks sessions.
#[derive(Clone)]
pub struct WebAdminService {
    store: Arc<dyn WebStore>,
    admins: Vec<UserId>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
}

crate::opaque_debug!(WebAdminService);

impl WebAdminService {
    /// A service for `admins` over `store`.
    #[must_use]
    pub fn new(
        store: Arc<dyn WebStore>,
        admins: Vec<UserId>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
    ) -> Self {
        Self {
            store,
            admins,
            clock,
            ids,
        }
    }

    fn admin(&self, who: UserId) -> Result<(), WebError> {
        if self.admins.contains(&who) {
            Ok(())
        } else {
            Err(WebError::NotAdmin)
        }
    }

    /// A new one-time sign-in link's token for `admin`, valid for [`LINK_TTL`].
    ///
    /// # Errors
    /// [`WebError::NotAdmin`], [`WebError::Store`].
    pub async fn issue_link(&self, admin: UserId) -> Result<Secret, WebError> {
        self.admin(admin)?;
        let token = Secret(self.ids.secret_token());
        let expires = self.clock.now().plus(LINK_TTL);
        self.store.put_link(&token.digest(), admin, expires).await?;
        Ok(token)
    }

    /// Opens a link: a session of [`SESSION_TTL`] for its admin, audited. A link works
    /// once.
    ///
    /// # Errors
    /// [`WebError::LinkRefused`] (used, expired, unknown), [`WebError::NotAdmin`] (no
    /// longer an admin), [`WebError::Store`].
    pub async fn sign_in(&self, link: &Secret) -> Result<SignedIn, WebError> {
        let now = self.clock.now();
        let admin = self
            .store
            .take_link(&link.digest(), now)
            .await?
            .ok_or(WebError::LinkRefused)?;
        self.admin(admin)?;
        let cookie = Secret(self.ids.secret_token());
        let session = WebSession {
            admin,
            csrf: Secret(self.ids.secret_token()),
            created_at: now,
            expires_at: now.plus(SESSION_TTL),
        };
        self.store.put_session(&cookie.digest(), &session).await?;
        self.store
            .audit(AuditRecord {
                actor: Actor::Admin(admin),
                action: AuditAction::WebSignIn,
                target_user: None,
                amount: None,
                reason: "web admin: signed in with a one-time link".into(),
                created_at: now,
            })
            .await?;
        Ok(SignedIn { cookie, session })
    }

    /// The session of `cookie`, when it is live and its admin still one.
    ///
    /// # Errors
    /// [`WebError::NoSession`], [`WebError::NotAdmin`], [`WebError::Store`].
    pub async fn session(&self, cookie: &Secret) -> Result<WebSession, WebError> {
        let session = self
            .store
            .session(&cookie.digest())
            .await?
            .filter(|s| self.clock.now() < s.expires_at)
            .ok_or(WebError::NoSession)?;
        self.admin(session.admin)?;
        Ok(session)
    }

    /// The session of `cookie` for a write: live, and `csrf` is its token.
    ///
    /// # Errors
    /// [`WebError::BadCsrf`] besides those of [`Self::session`].
    pub async fn writer(&self, cookie: &Secret, csrf: &str) -> Result<WebSession, WebError> {
        let session = self.session(cookie).await?;
        if session.csrf.matches(csrf) {
            Ok(session)
        } else {
            Err(WebError::BadCsrf)
        }
    }

    /// Ends the session of `cookie` (a form with its CSRF token), audited.
    ///
    /// # Errors
    /// Those of [`Self::writer`].
    pub async fn sign_out(&self, cookie: &Secret, csrf: &str) -> Result<(), WebError> {
        let session = self.writer(cookie, csrf).await?;
        self.store.end_session(&cookie.digest()).await?;
        self.store
            .audit(AuditRecord {
                actor: Actor::Admin(session.admin),
                action: AuditAction::WebSignOut,
                target_user: None,
                amount: None,
                reason: "web admin: signed out".into(),
                created_at: self.clock.now(),
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{ManualClock, MemoryStore, SequentialIds};

    fn service(
        store: &Arc<MemoryStore>,
        clock: &Arc<ManualClock>,
        admins: &[i64],
    ) -> WebAdminService {
        WebAdminService::new(
            store.clone(),
            admins.iter().map(|a| UserId::new(*a).unwrap()).collect(),
            clock.clone(),
            Arc::new(SequentialIds::default()),
        )
    }

    #[tokio::test]
    async fn a_link_signs_in_once_within_five_minutes_and_a_session_ends_on_sign_out() {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let web = service(&store, &clock, &[1]);
        let admin = UserId::new(1).unwrap();
        assert!(matches!(
            web.issue_link(UserId::new(2).unwrap()).await,
            Err(WebError::NotAdmin)
        ));
        let link = web.issue_link(admin).await.unwrap();
        let signed = web.sign_in(&link).await.unwrap();
        assert_eq!(signed.session.admin, admin);
        assert!(
            matches!(web.sign_in(&link).await, Err(WebError::LinkRefused)),
            "once"
        );
        let session = web.session(&signed.cookie).await.unwrap();
        assert_eq!(session.admin, admin);
        assert!(matches!(
            web.writer(&signed.cookie, "forged").await,
            Err(WebError::BadCsrf)
        ));
        web.writer(&signed.cookie, signed.session.csrf.expose())
            .await
            .unwrap();
        assert!(matches!(
            web.sign_out(&signed.cookie, "forged").await,
            Err(WebError::BadCsrf)
        ));
        web.sign_out(&signed.cookie, signed.session.csrf.expose())
            .await
            .unwrap();
        assert!(matches!(
            web.session(&signed.cookie).await,
            Err(WebError::NoSession)
        ));

        // A link older than five minutes is refused; a session ends after its time.
        let late = web.issue_link(admin).await.unwrap();
        clock.advance(LINK_TTL + Duration::from_secs(1));
        assert!(matches!(
            web.sign_in(&late).await,
            Err(WebError::LinkRefused)
        ));
        let fresh = web
            .sign_in(&web.issue_link(admin).await.unwrap())
            .await
            .unwrap();
        clock.advance(SESSION_TTL);
        assert!(matches!(
            web.session(&fresh.cookie).await,
            Err(WebError::NoSession)
        ));
        assert!(matches!(
            web.sign_in(&Secret::new("never-issued")).await,
            Err(WebError::LinkRefused)
        ));

        // An admin removed from ADMIN_IDS: their link and session stop working.
        let link = web.issue_link(admin).await.unwrap();
        let live = web
            .sign_in(&web.issue_link(admin).await.unwrap())
            .await
            .unwrap();
        let demoted = service(&store, &clock, &[]);
        assert!(matches!(
            demoted.sign_in(&link).await,
            Err(WebError::NotAdmin)
        ));
        assert!(matches!(
            demoted.session(&live.cookie).await,
            Err(WebError::NotAdmin)
        ));

        let audit = crate::ports::UserStore::audit_log(store.as_ref(), 20)
            .await
            .unwrap();
        let ins = audit
            .iter()
            .filter(|a| a.action == AuditAction::WebSignIn)
            .count();
        let outs = audit
            .iter()
            .filter(|a| a.action == AuditAction::WebSignOut)
            .count();
        assert_eq!((ins, outs), (3, 1));
    }

    #[test]
    fn secrets_are_stored_as_digests_and_never_printed() {
        let s = Secret::new("abc");
        assert_eq!(
            s.digest(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(s.matches("abc") && !s.matches("abd") && !s.matches("ab"));
    }
}
