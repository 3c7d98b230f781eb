//! YooKassa's notifications (`POST /webhooks/yookassa`): only a hint; the payment is
//! read again from the API.

use super::*;

/// A notification body that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a YooKassa notification: {0}")]
pub struct NotificationError(String);

/// Reads an incoming notification (providers.md §3.7) into the hint it is: the payment
/// or refund to re-read. `Ok(None)` for events REI does not act on.
///
/// # Errors
/// [`NotificationError`] for malformed JSON, another `type`, or ids that are not
/// YooKassa ids.
pub fn parse_notification(body: &[u8]) -> Result<Option<GatewayHint>, NotificationError> {
    let n: wire::Notification = serde_json::from_slice(body)
        .map_err(|e| NotificationError(client::truncate(&e.to_string(), 120)))?;
    if n.kind != "notification" {
        return Err(NotificationError("the type is not `notification`".into()));
    }
    let id = |text: &str| {
        path_segment(text)
            .map(str::to_owned)
            .map_err(|_| NotificationError("an object id is not a YooKassa id".into()))
    };
    let (family, _) = n.event.split_once('.').unwrap_or((n.event.as_str(), ""));
    match family {
        "payment" => Ok(Some(GatewayHint::Payment {
            provider_payment_id: id(&n.object.id)?,
        })),
        "refund" => {
            let payment = n
                .object
                .payment_id
                .as_deref()
                .ok_or_else(|| NotificationError("a refund without `payment_id`".into()))?;
            Ok(Some(GatewayHint::Refund {
                refund_id: id(&n.object.id)?,
                provider_payment_id: id(payment)?,
            }))
        }
        _ => Ok(None),
    }
}
