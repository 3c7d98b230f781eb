//! What each notice says: a locale key with typed arguments, the same for every front
//! end (the Telegram notifier, the console). How it is shown — a new message, an edit
//! of the status message, a photo's caption — is the front end's.

use crate::conversation::{Arg, Text};
use crate::job::FailureReason;
use crate::money::Money;
use crate::ports::Notice;

/// Every locale key [`Notice::text`] produces: a front end's locale files must hold each
/// (a test checks this list against the code).
pub const NOTICE_KEYS: &[&str] = &[
    "balance-credited",
    "balance-debited",
    "referral-rewarded",
    "failure-bad-input",
    "failure-content-refused",
    "failure-deadline",
    "failure-provider-failed",
    "failure-result-too-large",
    "failure-service-unavailable",
    "failure-too-many-attempts",
    "job-cancelled",
    "job-done-caption",
    "job-failed",
    "job-late-caption",
    "job-progress",
    "job-queued",
    "job-resent",
    "payment-credited",
    "payment-refunded",
];

impl Notice {
    /// What the user is told: the status line of a queued or progressing job, the
    /// caption of a result, the words of a failure, a cancellation or a money notice.
    #[must_use]
    pub fn text(&self) -> Text {
        let money = |key, amount: &Money, balance: &Money| {
            Text::key(key)
                .arg("amount", Arg::Money(*amount))
                .arg("balance", Arg::Money(*balance))
        };
        match self {
            Self::JobQueued { price, .. } => {
                Text::key("job-queued").arg("price", Arg::Money(*price))
            }
            Self::JobProgress { progress, .. } => {
                Text::key("job-progress").arg("percent", Arg::Number(i64::from(progress.percent())))
            }
            Self::JobCompleted {
                charged, resent, ..
            } => {
                let caption = Text::key("job-done-caption").arg("charged", Arg::Money(*charged));
                if *resent {
                    Text::key("job-resent").arg("caption", Arg::List(vec![caption]))
                } else {
                    caption
                }
            }
            Self::JobLateResult { refunded, .. } => {
                Text::key("job-late-caption").arg("refunded", Arg::Money(*refunded))
            }
            Self::JobFailed {
                reason, refunded, ..
            } => Text::key("job-failed")
                .arg("reason", Arg::List(vec![reason.text()]))
                .arg("refunded", Arg::Money(*refunded)),
            Self::JobCancelled { refunded, .. } => {
                Text::key("job-cancelled").arg("refunded", Arg::Money(*refunded))
            }
            Self::PaymentCredited {
                amount, balance, ..
            } => money("payment-credited", amount, balance),
            Self::PaymentRefunded {
                amount, balance, ..
            } => money("payment-refunded", amount, balance),
            Self::BalanceCredited { amount, balance } => money("balance-credited", amount, balance),
            Self::BalanceDebited { amount, balance } => money("balance-debited", amount, balance),
            Self::ReferralRewarded { amount, balance } => {
                money("referral-rewarded", amount, balance)
            }
        }
    }
}

impl FailureReason {
    /// Why a job failed, in the user's words (a provider's own detail only where it is
    /// presentable: a content refusal, a bad input).
    #[must_use]
    pub fn text(&self) -> Text {
        let number = |n: u64| Arg::Number(i64::try_from(n).unwrap_or(i64::MAX));
        match self {
            Self::ContentRefused { detail } => {
                Text::key("failure-content-refused").arg("detail", Arg::Text(detail.clone()))
            }
            Self::ProviderFailed { .. } => Text::key("failure-provider-failed"),
            Self::ServiceUnavailable { .. } => Text::key("failure-service-unavailable"),
            Self::BadInput { detail } => {
                Text::key("failure-bad-input").arg("detail", Arg::Text(detail.clone()))
            }
            Self::TooManyAttempts { attempts } => Text::key("failure-too-many-attempts")
                .arg("attempts", Arg::Number(i64::from(*attempts))),
            Self::ResultTooLarge { megabytes } => {
                Text::key("failure-result-too-large").arg("megabytes", number(*megabytes))
            }
            Self::DeadlineExceeded { after_secs } => {
                Text::key("failure-deadline").arg("minutes", number(after_secs.div_ceil(60)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_the_notices_produce_is_listed() {
        let source = include_str!("text.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut found = std::collections::BTreeSet::new();
        for prefix in ["key(\"", "money(\""] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                found.insert(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        let listed: std::collections::BTreeSet<String> =
            NOTICE_KEYS.iter().map(|k| (*k).to_owned()).collect();
        assert_eq!(found, listed);
    }

    #[test]
    fn a_failure_says_why_and_what_came_back() {
        let text = Notice::JobFailed {
            job_id: crate::ids::JobId::from_uuid(uuid::Uuid::from_u128(1)),
            reason: FailureReason::DeadlineExceeded { after_secs: 61 },
            refunded: Money::from_kopecks(5_000).unwrap(),
            status_message: None,
        }
        .text();
        assert_eq!(text.key, "job-failed");
        assert_eq!(
            text.args,
            vec![
                (
                    "reason",
                    Arg::List(vec![
                        Text::key("failure-deadline").arg("minutes", Arg::Number(2))
                    ])
                ),
                ("refunded", Arg::Money(Money::from_kopecks(5_000).unwrap())),
            ]
        );
    }
}
