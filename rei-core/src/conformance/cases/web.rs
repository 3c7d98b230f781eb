//! `WebStore`: a link is taken once before it expires; sessions are kept and ended.

use super::*;
use crate::user::{Actor, AuditAction, AuditRecord};
use crate::web::{Secret, WebSession};

pub async fn a_sign_in_link_is_taken_once_before_it_expires_and_sessions_end<S: Backend>(
    s: Store<S>,
) {
    let admin = UserId::new(1).unwrap();
    let link = Secret::new("link-token-one").digest();
    s.put_link(&link, admin, at(100)).await.unwrap();
    // Four opens at once: one signs in.
    let taken = join_all((0..4).map(|_| s.take_link(&link, at(50)))).await;
    let wins: Vec<UserId> = taken.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(wins, vec![admin]);
    assert_eq!(s.take_link(&link, at(60)).await.unwrap(), None, "used");
    let late = Secret::new("link-token-two").digest();
    s.put_link(&late, admin, at(100)).await.unwrap();
    assert_eq!(s.take_link(&late, at(100)).await.unwrap(), None, "expired");
    let unknown = Secret::new("never").digest();
    assert_eq!(s.take_link(&unknown, at(1)).await.unwrap(), None);

    let cookie = Secret::new("cookie-token").digest();
    let session = WebSession {
        admin,
        csrf: Secret::new("csrf-token-0123456789"),
        created_at: at(1),
        expires_at: at(1_000),
    };
    assert_eq!(s.session(&cookie).await.unwrap(), None);
    s.put_session(&cookie, &session).await.unwrap();
    assert_eq!(s.session(&cookie).await.unwrap(), Some(session));
    s.end_session(&cookie).await.unwrap();
    s.end_session(&cookie).await.unwrap();
    assert_eq!(s.session(&cookie).await.unwrap(), None);

    crate::web::WebStore::audit(
        s.as_ref(),
        AuditRecord {
            actor: Actor::Admin(admin),
            action: AuditAction::WebSignIn,
            target_user: None,
            amount: None,
            reason: "signed in".into(),
            created_at: at(2),
        },
    )
    .await
    .unwrap();
    let audit = s.audit_log(5).await.unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, AuditAction::WebSignIn);
}
