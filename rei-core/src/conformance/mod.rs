//! The contract suite every store implementation runs against itself.
//!
//! Each case is a generic async function taking a fresh, empty store that implements
//! every store port. [`conformance_tests!`](crate::conformance_tests) stamps one
//! `#[tokio::test]` per case for a backend:
//!
//! ```text
//! rei_core::conformance_tests!(async { std::sync::Arc::new(MyStore::open_fresh().await) });
//! ```
//!
//! The cases check exactly the `# Errors` promises written on the port traits. Panics
//! (failed assertions) are the test failures.
#![allow(
    clippy::missing_panics_doc,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod cases;

pub use cases::*;

use std::sync::Arc;

use crate::broadcast::BroadcastStore;
use crate::ports::{
    DialogueStore, JobStore, LeaseStore, LedgerStore, OutboxStore, PaymentStore, UserStore,
};
use crate::prices::PriceStore;
use crate::promo::PromoStore;
use crate::referral::ReferralStore;
use crate::web::WebStore;

/// Declares [`Backend`] over the store ports, named once: the trait and the blanket
/// implementation for every type that implements them all.
macro_rules! backend_of {
    ($($port:ident),+ $(,)?) => {
        /// A store that implements every store port (the shape of the SQL and memory stores).
        pub trait Backend: $($port +)+ 'static {}

        impl<T> Backend for T where T: $($port +)+ 'static {}
    };
}

backend_of!(
    UserStore,
    LedgerStore,
    JobStore,
    PaymentStore,
    DialogueStore,
    LeaseStore,
    OutboxStore,
    PromoStore,
    ReferralStore,
    PriceStore,
    BroadcastStore,
    WebStore,
);

/// Shared handle the cases take.
pub type Store<S> = Arc<S>;

/// Stamps one `#[tokio::test]` per conformance case. The argument is an expression that
/// evaluates to a future of a fresh `Arc<S>` (awaited once per test). A backend that may
/// be absent (a server on a developer machine) should fail loudly when it is: a test
/// that runs nothing must never count as passed (filter it out instead).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::__conformance_cases!(required $make);
    };
}

/// The list of cases, in one place.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($mode:ident $make:expr) => {
        $crate::__conformance_stamp!($mode $make;
            register_creates_then_refreshes,
            ban_is_audited_and_noticed_once,
            language_is_kept,
            unknown_users_are_not_found,
            credit_updates_balance_and_history,
            growth_entries_have_kinds_of_their_own,
            post_is_idempotent,
            entries_are_found_by_their_key,
            key_reuse_with_other_content_conflicts,
            debit_beyond_balance_posts_nothing,
            zero_amounts_are_invalid,
            audit_is_written_once_with_its_post,
            reserve_holds_and_is_idempotent,
            reserve_beyond_balance_holds_nothing,
            partial_capture_refunds_difference,
            release_refunds_everything,
            settlement_happens_exactly_once,
            unknown_reservation_is_not_found,
            entries_are_newest_first_and_limited,
            job_and_reservation_are_created_together,
            job_creation_is_idempotent,
            job_without_funds_writes_nothing,
            active_job_cap_is_enforced,
            stale_lease_is_refused,
            an_expired_lease_passes_to_the_next_worker,
            the_queue_hands_out_ready_jobs_oldest_first,
            finished_jobs_stay_queued_until_delivered,
            a_running_job_is_cancelled_by_its_worker_once,
            a_cost_above_the_stored_quote_is_refused,
            job_settlements_follow_transitions,
            jobs_are_filtered_newest_first,
            payment_creation_is_idempotent,
            paid_payment_credits_exactly_once,
            forged_payment_transitions_move_no_money,
            only_free_holds_are_settled_on_their_own,
            provider_ids_are_unique,
            refund_hold_is_captured_with_the_transition,
            payments_are_filtered,
            the_poller_sees_due_payments_oldest_first,
            stats_count_everything,
            dialogue_state_round_trips,
            dialogue_of_an_unknown_user_is_not_found,
            receipt_emails_are_kept_per_user,
            imported_payments_and_legacy_jobs_are_written_once,
            a_stale_dialogue_save_is_refused,
            entries_above_the_cap_are_invalid_whatever_their_kind,
            refund_holds_are_checked_against_the_stored_payment,
            concurrent_spends_never_overdraw,
            concurrent_duplicate_credits_post_once,
            concurrent_job_creation_respects_the_cap,
            concurrent_settlements_settle_once,
            verify_reports_a_sound_store,
            balances_are_capped,
            refund_holds_must_fit_their_payment,
            orphaned_refund_holds_are_reported,
            provider_units_and_global_provider_ids,
            reused_ids_are_invalid,
            a_lease_has_one_holder_until_it_runs_out,
            a_wake_is_recorded_on_a_running_job_only,
            money_changes_write_their_notices_with_them,
            outbox_notices_are_taken_oldest_first_held_and_finished,
            promo_codes_are_created_once_listed_and_disabled,
            a_promo_is_redeemed_once_per_user_within_its_uses_and_time,
            fifty_users_redeeming_ten_uses_get_ten_credits,
            referral_codes_and_bindings_are_kept_once,
            concurrent_bindings_bind_once,
            a_reward_comes_with_the_credit_and_goes_with_the_refunds,
            referral_moves_that_do_not_fit_are_refused,
            prices_are_seeded_once_and_set_with_their_audit_line,
            offer_options_are_seeded_per_key_and_set_with_their_audit_line,
            a_sign_in_link_is_taken_once_before_it_expires_and_sessions_end,
            broadcasts_reach_their_segment_and_claim_each_recipient_once,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_stamp {
    (required $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::conformance::$case(store).await;
            }
        )+
    };
}
