//! `LeaseStore` and `DialogueStore` in memory.

use super::*;

#[async_trait]
impl crate::ports::LeaseStore for MemoryStore {
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut s = self.lock();
        let free = s
            .leases
            .get(name)
            .is_none_or(|(h, end)| h == holder || *end <= now);
        if free {
            s.leases.insert(name.to_owned(), (holder.to_owned(), until));
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut s = self.lock();
        if s.leases.get(name).is_some_and(|(h, _)| h == holder) {
            s.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl DialogueStore for MemoryStore {
    async fn load_dialogue(&self, user: UserId) -> Result<Option<DialogueRecord>, StoreError> {
        Ok(self.lock().dialogues.get(&user).cloned())
    }

    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut s = self.lock();
        s.user(user)?;
        let current = s.dialogues.get(&user).map(|d| d.version);
        if current != expected {
            return Err(StoreError::Conflict {
                what: "dialogue",
                id: user.to_string(),
            });
        }
        let version = expected.map_or(1, |v| v.wrapping_add(1));
        s.dialogue_times.insert(user, at);
        s.dialogues.insert(
            user,
            DialogueRecord {
                state: state.to_owned(),
                version,
            },
        );
        Ok(version)
    }

    async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
        self.lock().dialogues.remove(&user);
        Ok(())
    }
}
