//! Delivery: the result sent to the user (fetched again from the provider on a host
//! that lacks it), retried while Telegram is down, recorded when the user blocked the bot.

use super::*;

impl Step<'_> {
    /// Tells the user how the job ended, and records it: delivered, unreachable (blocked
    /// the bot), or to be tried again with backoff. A result that is not on this host (a
    /// worker elsewhere stored it) is fetched again from the provider first.
    pub(super) async fn deliver(&mut self) -> Result<Next, JobError> {
        if self.job.delivery != crate::job::Delivery::Pending {
            return Ok(Next::Finished);
        }
        if let Some(next) = self.fetch_result_here().await? {
            return Ok(next);
        }
        let job = &self.job;
        let link = |result: &crate::job::AssetRef| {
            let finished = job.finished_at.unwrap_or(job.updated_at);
            self.runner
                .ports
                .assets
                .download_link(result, finished.plus(self.runner.config.result_link_ttl))
        };
        let notice = match (job.state, &job.result) {
            (JobState::Completed, Some(result)) => match job.cost_actual {
                Some(charged) => Notice::JobCompleted {
                    job_id: job.id,
                    kind: job.spec.kind(),
                    result: result.clone(),
                    charged,
                    download_link: link(result),
                    resent: job.redelivery,
                    status_message: job.status_message.clone(),
                },
                None => {
                    return Err(JobError::Store(crate::ports::StoreError::Corrupt(format!(
                        "completed job {} has no cost",
                        job.id
                    ))));
                }
            },
            (JobState::Completed, None) => {
                return Err(JobError::Store(crate::ports::StoreError::Corrupt(format!(
                    "completed job {} has no result",
                    job.id
                ))));
            }
            (JobState::Failed | JobState::Cancelled, Some(result)) => Notice::JobLateResult {
                job_id: job.id,
                kind: job.spec.kind(),
                result: result.clone(),
                refunded: job.quote.amount,
                download_link: link(result),
                status_message: job.status_message.clone(),
            },
            (JobState::Failed, None) => Notice::JobFailed {
                job_id: job.id,
                reason: job
                    .failure
                    .clone()
                    .unwrap_or(FailureReason::ProviderFailed {
                        detail: String::new(),
                    }),
                refunded: job.quote.amount,
                status_message: job.status_message.clone(),
            },
            (JobState::Cancelled | JobState::Pending | JobState::Processing, None) => {
                Notice::JobCancelled {
                    job_id: job.id,
                    refunded: job.quote.amount,
                    status_message: job.status_message.clone(),
                }
            }
            (JobState::Pending | JobState::Processing, Some(_)) => {
                return Err(JobError::LeaseLost(job.id));
            }
        };
        match self.runner.ports.notifier.notify(job.user_id, notice).await {
            Ok(_) => {
                self.write(JobEvent::Delivered).await?;
                Ok(self.after_delivery())
            }
            Err(NotifyError::Unreachable(_)) => self.undeliverable().await,
            Err(e @ NotifyError::Unavailable(_)) => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: e.to_string(),
                });
                self.delivery_failed().await
            }
        }
    }

    /// The user cannot be given the result (they blocked the bot, or every try failed):
    /// recorded, and the user marked unreachable so that their next message brings every
    /// paid result again.
    async fn undeliverable(&mut self) -> Result<Next, JobError> {
        self.write(JobEvent::Undeliverable).await?;
        self.runner
            .ports
            .jobs
            .mark_unreachable(self.job.user_id)
            .await?;
        Ok(self.after_delivery())
    }

    /// After the user was told: watch on for a late result, or done.
    pub(super) fn after_delivery(&self) -> Next {
        if self.job.watch_until.is_some() {
            Next::Continue
        } else {
            Next::Finished
        }
    }

    /// Telling the user failed for now: tried again with backoff, up to the limit; then
    /// recorded as undeliverable, and the user marked unreachable so that their next
    /// message brings every paid result again.
    pub(super) async fn delivery_failed(&mut self) -> Result<Next, JobError> {
        let config = &self.runner.config;
        if self.job.delivery_attempts.saturating_add(1) >= config.max_delivery_attempts {
            return self.undeliverable().await;
        }
        let wait = self.runner.backoff(self.job.delivery_attempts, None);
        let retry_at = self.runner.now().plus(wait);
        self.write(JobEvent::DeliveryFailed { retry_at }).await?;
        Ok(Next::Released)
    }

    /// Makes sure the result to deliver is in this host's asset store: fetched again from
    /// the provider's result URL when it is not. `Some` is what the step does instead
    /// (tried again later: the file is not here and cannot be fetched now).
    pub(super) async fn fetch_result_here(&mut self) -> Result<Option<Next>, JobError> {
        let Some(result) = self.job.result.clone() else {
            return Ok(None);
        };
        match self.runner.ports.assets.exists(&result).await {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: e.to_string(),
                });
                return self.delivery_failed().await.map(Some);
            }
        }
        let fetched = match (&self.job.result_url, self.runner.ports.videos.clone()) {
            (Some(url), Some(videos)) => videos.download(url, self.job.id).await.ok(),
            _ => None,
        };
        match fetched {
            Some(asset) if asset.asset == result => Ok(None),
            _ => {
                self.notes.push(StepNote::DeliveryFailed {
                    error: format!(
                        "the result {result} is not on this host and cannot be fetched again"
                    ),
                });
                self.delivery_failed().await.map(Some)
            }
        }
    }
}
