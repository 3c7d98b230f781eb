//! Jobs with their holds, and the jobs table as the queue.

use super::*;

pub async fn job_and_reservation_are_created_together<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let nj = new_job(1, u, 5_000);
    let job = s.create_job(nj.clone(), 3).await.unwrap();
    assert_eq!(job, nj.pending());
    assert_eq!(s.job(job.id).await.unwrap(), Some(job.clone()));
    let r = s
        .reservation(job.reservation_id)
        .await
        .unwrap()
        .expect("the job's reservation exists");
    assert_eq!(
        (r.amount, r.state, r.job_id),
        (m(5_000), ReservationState::Held, Some(job.id))
    );
    assert_eq!(available(&*s, u).await, 5_000);
    assert_sound(&*s).await;
}

pub async fn job_creation_is_idempotent<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let first = s.create_job(new_job(1, u, 5_000), 3).await.unwrap();
    let replay = new_job_keyed(2, u, 5_000, "confirm:1");
    assert_eq!(
        s.create_job(replay, 3).await.unwrap(),
        first,
        "same key: the first job, no second hold"
    );
    assert_eq!(available(&*s, u).await, 5_000);
    let conflicting = new_job_keyed(3, u, 4_000, "confirm:1");
    assert!(matches!(
        s.create_job(conflicting, 3).await,
        Err(StoreError::IdempotencyConflict { .. })
    ));
    assert_eq!(s.jobs(JobFilter::default()).await.unwrap().len(), 1);
}

pub async fn job_without_funds_writes_nothing<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 4_999).await;
    let r = s.create_job(new_job(1, u, 5_000), 3).await;
    assert!(
        matches!(r, Err(StoreError::InsufficientFunds { .. })),
        "{r:?}"
    );
    assert!(s.job(JobId::from_uuid(uuid(1))).await.unwrap().is_none());
    assert!(
        s.reservation(ReservationId::from_uuid(uuid(1_000_001)))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(available(&*s, u).await, 4_999);
    let ghost = new_job(2, UserId::new(999).unwrap(), 1);
    assert!(matches!(
        s.create_job(ghost, 3).await,
        Err(StoreError::NotFound(Missing::User(_)))
    ));
    assert_sound(&*s).await;
}

pub async fn active_job_cap_is_enforced<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 10_000).await;
    let a = s.create_job(new_job(1, u, 100), 2).await.unwrap();
    s.create_job(new_job(2, u, 100), 2).await.unwrap();
    assert!(matches!(
        s.create_job(new_job(3, u, 100), 2).await,
        Err(StoreError::ActiveJobLimit { limit: 2 })
    ));
    assert_eq!(available(&*s, u).await, 9_800);
    let processing = claim(&*s, &a).await.unwrap();
    assert!(
        matches!(
            s.create_job(new_job(3, u, 100), 2).await,
            Err(StoreError::ActiveJobLimit { .. })
        ),
        "processing counts"
    );
    let failed = JobEvent::Failed {
        reason: FailureReason::ProviderFailed { detail: "x".into() },
    };
    transition(&*s, &processing, failed).await.unwrap();
    s.create_job(new_job(3, u, 100), 2).await.unwrap();
    assert_sound(&*s).await;
}

pub async fn stale_lease_is_refused<S: Backend>(s: Store<S>) {
    let (u, job) = user_with_job(&*s, 1_000, 100).await;
    let claimed = claim(&*s, &job).await.unwrap();
    let mut forged = claimed.clone();
    forged.lease = Some(JobLease::new(LeaseToken::new("not-the-lease"), at(60_000)));
    let stale = transition(&*s, &forged, success("results/x.png", 100)).await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { job_id }) if job_id == job.id),
        "{stale:?}"
    );
    let unleased = transition(&*s, &job, JobEvent::Generating).await;
    assert!(
        matches!(unleased, Err(StoreError::LeaseLost { .. })),
        "a worker event without a lease: {unleased:?}"
    );
    let now = s.job(job.id).await.unwrap().unwrap();
    assert_eq!(now, claimed, "a refused write changes nothing");
    assert_eq!(available(&*s, u).await, 900, "and settles nothing");
    assert_sound(&*s).await;
}

pub async fn an_expired_lease_passes_to_the_next_worker<S: Backend>(s: Store<S>) {
    let (_, job) = user_with_job(&*s, 1_000, 100).await;
    let first = claim(&*s, &job).await.unwrap();
    assert_eq!((first.state, first.deliveries), (JobState::Processing, 1));
    let second_lease = JobLease::new(LeaseToken::new("second"), at(120_000));
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &second_lease, at(59_999))
            .await
            .unwrap(),
        None,
        "a live lease keeps the job"
    );
    assert_eq!(
        s.claim_job(ClaimTarget::Job(job.id), &second_lease, at(59_999))
            .await
            .unwrap(),
        None
    );
    let second = s
        .claim_job(ClaimTarget::Next, &second_lease, at(60_000))
        .await
        .unwrap()
        .expect("an expired lease frees the job");
    assert_eq!(second.deliveries, 2);
    assert_eq!(second.lease, Some(second_lease));
    let late = JobWrite {
        job_id: job.id,
        event: JobEvent::CallStarted,
        guard: JobGuard::Lease(first.lease.clone().unwrap().token),
        audit: None,
        at: at(60_001),
    };
    assert!(matches!(
        s.write_job(&late).await,
        Err(StoreError::LeaseLost { .. })
    ));
    let mine = JobWrite {
        guard: JobGuard::Lease(LeaseToken::new("second")),
        ..late
    };
    let applied = s.write_job(&mine).await.unwrap();
    assert_eq!((applied.changed, applied.job.provider_calls), (true, 1));
    assert_sound(&*s).await;
}

pub async fn the_queue_hands_out_ready_jobs_oldest_first<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    let a = s.create_job(new_job(1, u, 100), 5).await.unwrap();
    let b = s.create_job(new_job(2, u, 100), 5).await.unwrap();
    assert_eq!(
        a.run_after,
        Some(at(3)),
        "queued with the job, in one write"
    );
    assert_eq!(s.queue_depth().await.unwrap(), 2);
    assert_eq!(s.queued_jobs(10).await.unwrap().len(), 2);
    let lease = |n: &str| JobLease::new(LeaseToken::new(n), at(60_000));
    let first = s
        .claim_job(ClaimTarget::Next, &lease("w1"), at(10))
        .await
        .unwrap()
        .unwrap();
    let second = s
        .claim_job(ClaimTarget::Next, &lease("w2"), at(10))
        .await
        .unwrap()
        .unwrap();
    let mut got = vec![first.id, second.id];
    got.sort();
    let mut want = vec![a.id, b.id];
    want.sort();
    assert_eq!(got, want, "two claims, two different jobs");
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(10))
            .await
            .unwrap(),
        None
    );
    // Handed back for later: not ready before its time.
    let handed = transition(
        &*s,
        &first,
        JobEvent::Released {
            run_after: at(5_000),
        },
    )
    .await
    .unwrap();
    assert_eq!((handed.lease, handed.run_after), (None, Some(at(5_000))));
    assert_eq!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(4_999))
            .await
            .unwrap(),
        None
    );
    assert!(
        s.claim_job(ClaimTarget::Next, &lease("w3"), at(5_000))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(s.queue_depth().await.unwrap(), 2);
}

pub async fn finished_jobs_stay_queued_until_delivered<S: Backend>(s: Store<S>) {
    let (u, job) = user_with_job(&*s, 1_000, 100).await;
    let job = claim(&*s, &job).await.unwrap();
    let done = transition(&*s, &job, success("results/x.png", 100))
        .await
        .unwrap();
    assert_eq!(done.delivery, crate::job::Delivery::Pending);
    assert_eq!(
        s.queue_depth().await.unwrap(),
        1,
        "the result is still to deliver"
    );
    let retry = transition(
        &*s,
        &done,
        JobEvent::DeliveryFailed {
            retry_at: at(1_000),
        },
    )
    .await
    .unwrap();
    assert_eq!((retry.delivery_attempts, retry.lease.is_none()), (1, true));
    let again = s
        .claim_job(ClaimTarget::Next, &lease_for(job.id), at(1_000))
        .await
        .unwrap()
        .expect("an undelivered result is claimed again");
    assert_eq!(again.state, JobState::Completed);
    let delivered = transition(&*s, &again, JobEvent::Delivered).await.unwrap();
    assert_eq!(delivered.delivered_at, Some(at(10)));
    assert_eq!((delivered.run_after, delivered.lease), (None, None));
    assert_eq!(s.queue_depth().await.unwrap(), 0);
    assert_eq!(
        hold_state(&*s, job.reservation_id).await,
        ReservationState::Captured,
        "charged once"
    );
    assert_eq!(available(&*s, u).await, 900);
    assert_sound(&*s).await;
}

/// An admin's cancel of a running job releases its hold at once (audited once); the
/// result of a call that was out still comes, is kept and is delivered free: no second
/// settlement.
pub async fn a_running_job_is_cancelled_by_its_worker_once<S: Backend>(s: Store<S>) {
    let (u, job) = user_with_job(&*s, 1_000, 100).await;
    let running = claim(&*s, &job).await.unwrap();
    let calling = transition(&*s, &running, JobEvent::CallStarted)
        .await
        .unwrap();
    let cancel = JobWrite {
        job_id: job.id,
        event: JobEvent::Cancelled {
            by: CancelledBy::Admin("cli:root".into()),
        },
        guard: JobGuard::Unleased,
        audit: Some(audit(u, AuditAction::JobCancel)),
        at: at(20),
    };
    let cancelled = s.write_job(&cancel).await.unwrap();
    assert_eq!(cancelled.job.state, JobState::Cancelled);
    assert!(
        cancelled.job.watch_until.is_some(),
        "the call is out: watched"
    );
    assert_eq!(available(&*s, u).await, 1_000, "released at once");
    let again = s.write_job(&cancel).await.unwrap();
    assert!(!again.changed, "cancelling twice changes nothing");
    assert_eq!(s.audit_log(10).await.unwrap().len(), 1, "audited once");
    // The worker's result arrives: kept and delivered free, released once.
    let late = transition(&*s, &calling, success("results/x.png", 100))
        .await
        .unwrap();
    assert_eq!(
        (late.state, late.result.clone(), late.cost_actual),
        (
            JobState::Cancelled,
            Some(AssetRef::new("results/x.png")),
            None
        )
    );
    assert_eq!(late.delivery, Delivery::Pending);
    assert_eq!(available(&*s, u).await, 1_000);
    assert_eq!(running.reservation_id, late.reservation_id);
    assert_eq!(
        hold_state(&*s, late.reservation_id).await,
        ReservationState::Released
    );
    assert_sound(&*s).await;
}

pub async fn a_cost_above_the_stored_quote_is_refused<S: Backend>(s: Store<S>) {
    let (u, job) = user_with_job(&*s, 1_000, 100).await;
    let running = claim(&*s, &job).await.unwrap();
    // The caller's copy says the quote is larger: the store decides on its own row.
    let mut forged = running.clone();
    forged.quote.amount = m(1_000);
    let r = transition(&*s, &forged, success("results/x.png", 500)).await;
    assert!(matches!(r, Err(StoreError::Transition(_))), "{r:?}");
    assert_eq!(available(&*s, u).await, 900);
    assert_eq!(s.job(job.id).await.unwrap().unwrap(), running);
    assert_sound(&*s).await;
}

pub async fn job_settlements_follow_transitions<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    fund(&*s, u, 1_000).await;
    // completed at a lower cost: the difference comes back
    let a = s.create_job(new_job(1, u, 300), 3).await.unwrap();
    let a = claim(&*s, &a).await.unwrap();
    let a = transition(
        &*s,
        &a,
        JobEvent::ProviderTaskCreated {
            task_id: crate::ids::ProviderTaskId::new("t-1").unwrap(),
        },
    )
    .await
    .unwrap();
    let done = transition(&*s, &a, success("results/a.png", 200))
        .await
        .unwrap();
    assert_eq!(
        done.provider_task_id
            .as_ref()
            .map(crate::ids::ProviderTaskId::as_str),
        Some("t-1")
    );
    assert_eq!(s.job(done.id).await.unwrap().unwrap(), done);
    assert_eq!(
        hold_state(&*s, done.reservation_id).await,
        ReservationState::Captured
    );
    assert_eq!(available(&*s, u).await, 800);
    // failed: released
    let b = s.create_job(new_job(2, u, 300), 3).await.unwrap();
    let b = claim(&*s, &b).await.unwrap();
    let refused = FailureReason::ContentRefused {
        detail: "nope".into(),
    };
    let failed = transition(
        &*s,
        &b,
        JobEvent::Failed {
            reason: refused.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(failed.failure, Some(refused));
    assert_eq!(
        hold_state(&*s, failed.reservation_id).await,
        ReservationState::Released
    );
    // cancelled while pending: released
    let c = s.create_job(new_job(3, u, 300), 3).await.unwrap();
    transition(
        &*s,
        &c,
        JobEvent::Cancelled {
            by: CancelledBy::Admin("cli:root".into()),
        },
    )
    .await
    .unwrap();
    assert_eq!(available(&*s, u).await, 800);
    assert_sound(&*s).await;
}

pub async fn jobs_are_filtered_newest_first<S: Backend>(s: Store<S>) {
    let u = user(&*s, 1).await;
    let v = user(&*s, 2).await;
    fund(&*s, u, 1_000).await;
    fund(&*s, v, 1_000).await;
    let a = s.create_job(new_job(1, u, 10), 5).await.unwrap();
    let b = s.create_job(new_job(2, v, 10), 5).await.unwrap();
    let c = s.create_job(new_job(3, u, 10), 5).await.unwrap();
    claim(&*s, &a).await.unwrap();
    let everything = JobFilter::default();
    let mine = JobFilter {
        user_id: Some(u),
        ..everything.clone()
    };
    let pending = JobFilter {
        state: Some(JobState::Pending),
        ..everything.clone()
    };
    let newest = JobFilter {
        limit: 1,
        ..everything.clone()
    };
    let second_page = JobFilter {
        limit: 1,
        offset: 1,
        ..everything.clone()
    };
    let my_second = JobFilter {
        offset: 1,
        ..mine.clone()
    };
    let past_the_end = JobFilter {
        offset: 3,
        ..everything.clone()
    };
    for (filter, want) in [
        (everything, vec![c.id, b.id, a.id]),
        (mine, vec![c.id, a.id]),
        (pending, vec![c.id, b.id]),
        (newest, vec![c.id]),
        (second_page, vec![b.id]),
        (my_second, vec![a.id]),
        (past_the_end, vec![]),
    ] {
        let jobs = s.jobs(filter.clone()).await.unwrap();
        let got: Vec<_> = jobs.iter().map(|j| j.id).collect();
        assert_eq!(got, want, "{filter:?}");
    }
}

/// A provider callback's wake is recorded on a running job (its worker sees it), and
/// changes nothing on a job that is not running.
pub async fn a_wake_is_recorded_on_a_running_job_only<S: Backend>(s: Store<S>) {
    let (_, job) = user_with_job(&*s, 1_000, 100).await;
    let wake = |n: i64| JobWrite {
        job_id: job.id,
        event: JobEvent::Woken,
        guard: JobGuard::Unleased,
        audit: None,
        at: at(n),
    };
    assert!(
        !s.write_job(&wake(5)).await.unwrap().changed,
        "not running yet"
    );
    let running = claim(&*s, &job).await.unwrap();
    let woken = s.write_job(&wake(20)).await.unwrap();
    assert!(woken.changed);
    assert_eq!(woken.job.woken_at, Some(at(20)));
    assert_eq!(woken.job.lease, running.lease, "the worker keeps its lease");
    assert_eq!(s.job(job.id).await.unwrap().unwrap().woken_at, Some(at(20)));
}
