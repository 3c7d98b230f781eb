//! `PromoStore` in memory.

use super::*;
use crate::promo::{NewPromo, Promo, PromoCode, PromoStore, Redeemed};

#[async_trait]
impl PromoStore for MemoryStore {
    async fn create_promo(&self, p: NewPromo, audit: AuditRecord) -> Result<Promo, StoreError> {
        let mut s = self.lock();
        if s.promos.iter().any(|q| q.code == p.code) {
            return Err(StoreError::Conflict {
                what: "promo code",
                id: p.code.to_string(),
            });
        }
        let promo = Promo {
            code: p.code,
            amount: p.amount,
            max_uses: p.max_uses,
            used: 0,
            expires_at: p.expires_at,
            disabled: false,
            created_at: p.created_at,
        };
        s.promos.push(promo.clone());
        s.audit.push(audit);
        Ok(promo)
    }

    async fn promos(&self) -> Result<Vec<Promo>, StoreError> {
        Ok(self.lock().promos.iter().rev().cloned().collect())
    }

    async fn promo(&self, code: &PromoCode) -> Result<Option<Promo>, StoreError> {
        Ok(self.lock().promos.iter().find(|p| &p.code == code).cloned())
    }

    async fn disable_promo(
        &self,
        code: &PromoCode,
        audit: AuditRecord,
    ) -> Result<Option<Promo>, StoreError> {
        let mut s = self.lock();
        let Some(promo) = s.promos.iter_mut().find(|p| &p.code == code) else {
            return Ok(None);
        };
        promo.disabled = true;
        let promo = promo.clone();
        s.audit.push(audit);
        Ok(Some(promo))
    }

    async fn redeem_promo(
        &self,
        code: &PromoCode,
        entry: NewEntry,
        now: Timestamp,
    ) -> Result<Redeemed, StoreError> {
        let mut s = self.lock();
        s.user(entry.user_id)?;
        let Some(i) = s.promos.iter().position(|p| &p.code == code) else {
            return Ok(Redeemed::Unknown);
        };
        let promo = &s.promos[i];
        let used_it = s.redemptions.contains(&(code.to_string(), entry.user_id));
        if let Some(refused) = promo.refusal(entry.amount, used_it, now)? {
            return Ok(refused);
        }
        let user = entry.user_id;
        let posted = s.post(entry)?;
        s.promos[i].used += 1;
        s.redemptions.insert((code.to_string(), user));
        Ok(Redeemed::Credited(posted))
    }
}
