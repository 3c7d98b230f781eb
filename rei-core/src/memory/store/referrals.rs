//! `ReferralStore` in memory, and the referral moves of payment transitions.

use super::*;
use crate::referral::{ReferralCode, ReferralMove, ReferralReward, ReferralStore, ReferralSummary};

#[async_trait]
impl ReferralStore for MemoryStore {
    async fn referral_code(
        &self,
        user: UserId,
        fresh: &ReferralCode,
        _at: Timestamp,
    ) -> Result<ReferralCode, StoreError> {
        let mut s = self.lock();
        s.user(user)?;
        if let Some(code) = s.referral_codes.get(&user) {
            return Ok(code.clone());
        }
        if s.referral_code_owners.contains_key(fresh) {
            return Err(StoreError::Conflict {
                what: "referral code",
                id: fresh.to_string(),
            });
        }
        s.referral_codes.insert(user, fresh.clone());
        s.referral_code_owners.insert(fresh.clone(), user);
        Ok(fresh.clone())
    }

    async fn user_by_referral_code(
        &self,
        code: &ReferralCode,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock().referral_code_owners.get(code).copied())
    }

    async fn referrer_of(&self, user: UserId) -> Result<Option<UserId>, StoreError> {
        Ok(self.lock().referrers.get(&user).copied())
    }

    async fn bind_referrer(
        &self,
        referee: UserId,
        referrer: UserId,
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.user(referee)?;
        s.user(referrer)?;
        if referee == referrer {
            return Err(StoreError::Invalid("a user cannot refer themselves".into()));
        }
        if s.referrers.contains_key(&referee) {
            return Ok(false);
        }
        s.referrers.insert(referee, referrer);
        Ok(true)
    }

    async fn referral_summary(&self, referrer: UserId) -> Result<ReferralSummary, StoreError> {
        let s = self.lock();
        let invited = s.referrers.values().filter(|r| **r == referrer).count();
        let mut summary = ReferralSummary {
            invited: u32::try_from(invited).unwrap_or(u32::MAX),
            ..ReferralSummary::default()
        };
        for r in s
            .referral_rewards
            .values()
            .filter(|r| r.referrer == referrer)
        {
            let kept = r.reward.checked_sub(r.taken_back).unwrap_or(Money::ZERO);
            summary.earned = summary.earned.checked_add(kept).unwrap_or(summary.earned);
            summary.unrecovered = summary
                .unrecovered
                .checked_add(r.unrecovered)
                .unwrap_or(summary.unrecovered);
        }
        Ok(summary)
    }

    async fn referral_reward(
        &self,
        payment: PaymentId,
    ) -> Result<Option<ReferralReward>, StoreError> {
        Ok(self.lock().referral_rewards.get(&payment).cloned())
    }
}

/// A referral move that passed its checks, ready to commit.
pub(super) enum ReferralPlan {
    Reward {
        entry: NewEntry,
        balance: Money,
        referee: UserId,
    },
    TakeBack {
        entry: Option<(NewEntry, Money)>,
        short: Money,
    },
}

impl State {
    /// Checks `t`'s referral move against the stored payment; `None` when there is none.
    /// `credited` says whether the credit it goes with is new (a replay rewards nobody).
    pub(super) fn plan_referral(
        &self,
        t: &PaymentTransition,
        stored: &Payment,
        credited: bool,
    ) -> Result<Option<ReferralPlan>, StoreError> {
        let Some(referral) = t.referral() else {
            return Ok(None);
        };
        let bound = self.referrers.get(&stored.user_id).copied();
        let given = self.referral_rewards.get(&stored.id);
        referral.check(stored, bound, given)?;
        Ok(match referral {
            ReferralMove::Reward { .. } if !credited => None,
            ReferralMove::Reward { referee, entry } => match self.plan_post(entry)? {
                PostPlan::New { balance } => Some(ReferralPlan::Reward {
                    entry: entry.clone(),
                    balance,
                    referee: *referee,
                }),
                PostPlan::Replay(_) => None,
            },
            ReferralMove::TakeBack { entry } => {
                let (debit, short) = ReferralMove::take(entry, self.balance_of(entry.user_id));
                let entry = match debit {
                    Some(debit) => match self.plan_post(&debit)? {
                        PostPlan::New { balance } => Some((debit, balance)),
                        PostPlan::Replay(_) => None,
                    },
                    None => None,
                };
                Some(ReferralPlan::TakeBack { entry, short })
            }
        })
    }

    /// Writes a planned referral move of `payment`'s change at `at`.
    pub(super) fn commit_referral(
        &mut self,
        plan: ReferralPlan,
        payment: PaymentId,
        at: Timestamp,
    ) {
        match plan {
            ReferralPlan::Reward {
                entry,
                balance,
                referee,
            } => {
                let (referrer, amount) = (entry.user_id, entry.amount);
                self.commit_post(entry, balance);
                self.referral_rewards.insert(
                    payment,
                    ReferralReward {
                        payment_id: payment,
                        referrer,
                        referee,
                        reward: amount,
                        taken_back: Money::ZERO,
                        unrecovered: Money::ZERO,
                    },
                );
                let notice = crate::ports::Notice::ReferralRewarded { amount, balance };
                self.queue_notice(referrer, notice, at);
            }
            ReferralPlan::TakeBack { entry, short } => {
                let taken = entry.as_ref().map_or(Money::ZERO, |(e, _)| e.amount);
                if let Some((entry, balance)) = entry {
                    self.commit_post(entry, balance);
                }
                if let Some(r) = self.referral_rewards.get_mut(&payment) {
                    r.taken_back = r.taken_back.checked_add(taken).unwrap_or(r.taken_back);
                    r.unrecovered = r.unrecovered.checked_add(short).unwrap_or(r.unrecovered);
                }
            }
        }
    }
}
