//! The sandbox's checkout page (`SANDBOX=1`): `GET /sandbox/checkout/{id}` shows the
//! amount with "Pay" and "Cancel"; `POST …/pay` and `POST …/cancel` mark the sandbox
//! payment and hand it to `PaymentService` exactly as a YooKassa webhook would (a hint,
//! re-read from the gateway). The page is in the payer's language; it works without
//! JavaScript.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use rei_core::money::Money;
use rei_core::payment::{GatewayHint, PaymentService};
use rei_core::user::{Language, UserService};

use super::{WebError, WebState, escape_html as escape};
use crate::outbound::locale::{Arg, Locales};
use crate::outbound::sandbox::{CheckoutError, CheckoutRecord, CheckoutState, SandboxCheckout};

/// What the checkout page needs.
#[derive(Clone)]
pub struct SandboxPages {
    /// The sandbox's payments.
    pub checkout: Arc<SandboxCheckout>,
    /// Credits a paid one.
    pub payments: Arc<PaymentService>,
    /// The payer's language.
    pub users: UserService,
    /// The page's texts.
    pub locales: Arc<Locales>,
}

rei_core::opaque_debug!(SandboxPages);

type Page = (StatusCode, Html<String>);

impl SandboxPages {
    async fn language(&self, record: Option<&CheckoutRecord>) -> Language {
        match record {
            Some(r) => match self.users.user(r.user_id).await {
                Ok(Some(user)) => user.language,
                _ => Language::default(),
            },
            None => Language::default(),
        }
    }

    fn text(&self, language: Language, key: &str, amount: Option<Money>) -> String {
        let args: Vec<(&str, Arg)> = amount
            .map(|a| ("amount", Arg::Text(a.to_string())))
            .into_iter()
            .collect();
        escape(&self.locales.text(language, key, &args))
    }

    /// A whole page: the sandbox banner, a title, a paragraph, and `actions` (forms).
    fn page(&self, language: Language, status: StatusCode, body: &str, actions: &str) -> Page {
        let lang = match language {
            Language::Ru => "ru",
            Language::En => "en",
        };
        let html = format!(
            "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}}\
             .banner{{background:#ef233c;color:#fff;padding:.5rem 1rem;border-radius:.5rem}}\
             button{{font-size:1.1rem;padding:.6rem 1.2rem;margin:.3rem .3rem 0 0}}</style></head>\
             <body><p class=\"banner\">{banner}</p><h1>{title}</h1><p id=\"message\">{body}</p>{actions}</body></html>\n",
            banner = self.text(language, "sandbox-banner", None),
            title = self.text(language, "sandbox-checkout-title", None),
        );
        (status, Html(html))
    }

    fn unknown(&self, language: Language) -> Page {
        let body = self.text(language, "sandbox-checkout-unknown", None);
        self.page(language, StatusCode::NOT_FOUND, &body, "")
    }

    fn settled(&self, language: Language, record: &CheckoutRecord, credited: bool) -> Page {
        let (key, status) = match record.state {
            CheckoutState::Paid if credited => ("sandbox-checkout-paid", StatusCode::OK),
            CheckoutState::Paid => ("sandbox-checkout-later", StatusCode::ACCEPTED),
            CheckoutState::Cancelled | CheckoutState::Pending => {
                ("sandbox-checkout-cancelled", StatusCode::OK)
            }
        };
        let body = self.text(language, key, Some(record.amount()));
        self.page(language, status, &body, "")
    }

    /// Hands the clicked payment to the payment service, as a webhook would; false when
    /// it cannot take it now (the poller will, within its interval).
    async fn apply(&self, record: &CheckoutRecord) -> bool {
        let hint = GatewayHint::Payment {
            provider_payment_id: record.id.clone(),
        };
        match self.payments.gateway_notification(&hint).await {
            Ok(applied) => {
                tracing::info!(
                    payment_id = %applied.payment.id,
                    user_id = applied.payment.user_id.get(),
                    amount_kopecks = applied.payment.amount.kopecks(),
                    credited = applied.credited,
                    state = applied.payment.state.as_str(),
                    "sandbox payment applied"
                );
                true
            }
            Err(e) => {
                tracing::warn!(payment_id = %record.payment_id, error = %e, error.chain = ?e, "the sandbox payment could not be applied now; the poller will");
                false
            }
        }
    }
}

fn pages(state: &WebState) -> Result<&SandboxPages, WebError> {
    state.sandbox.as_ref().ok_or(WebError::NotFound)
}

/// `GET /sandbox/checkout/{id}`.
pub(super) async fn checkout(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
) -> Result<Page, WebError> {
    let pages = pages(&state)?;
    let record = match pages.checkout.record(&id).await {
        Ok(record) => record,
        Err(CheckoutError::NotFound) => return Ok(pages.unknown(Language::default())),
        Err(e) => {
            tracing::warn!(error = %e, "sandbox checkout record unreadable");
            return Err(WebError::Unavailable("sandbox checkout"));
        }
    };
    let language = pages.language(Some(&record)).await;
    if record.state != CheckoutState::Pending {
        return Ok(pages.settled(language, &record, true));
    }
    let amount = record.amount();
    let body = pages.text(language, "sandbox-checkout-body", Some(amount));
    let id = escape(&record.id);
    let actions = format!(
        "<form method=\"post\" action=\"./{id}/pay\" style=\"display:inline\">\
         <button type=\"submit\" id=\"pay\">{pay}</button></form>\
         <form method=\"post\" action=\"./{id}/cancel\" style=\"display:inline\">\
         <button type=\"submit\" id=\"cancel\">{cancel}</button></form>",
        pay = pages.text(language, "sandbox-checkout-pay", Some(amount)),
        cancel = pages.text(language, "sandbox-checkout-cancel", None),
    );
    Ok(pages.page(language, StatusCode::OK, &body, &actions))
}

/// `POST /sandbox/checkout/{id}/pay`.
pub(super) async fn pay(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
) -> Result<Page, WebError> {
    settle(&state, &id, true).await
}

/// `POST /sandbox/checkout/{id}/cancel`.
pub(super) async fn cancel(
    State(state): State<Arc<WebState>>,
    Path(id): Path<String>,
) -> Result<Page, WebError> {
    settle(&state, &id, false).await
}

async fn settle(state: &WebState, id: &str, pay: bool) -> Result<Page, WebError> {
    let pages = pages(state)?;
    let record = match pages.checkout.settle(id, pay).await {
        Ok(record) => record,
        // Clicked the other way before (a second tab): show how it ended.
        Err(CheckoutError::Settled(_)) => pages
            .checkout
            .record(id)
            .await
            .map_err(|_| WebError::Unavailable("sandbox checkout"))?,
        Err(CheckoutError::NotFound) => return Ok(pages.unknown(Language::default())),
        Err(e) => {
            tracing::warn!(error = %e, "sandbox checkout record unwritable");
            return Err(WebError::Unavailable("sandbox checkout"));
        }
    };
    let applied = pages.apply(&record).await;
    let language = pages.language(Some(&record)).await;
    Ok(pages.settled(language, &record, applied))
}
