//! Embedding rei-core: a full flow on the in-memory adapters, no database, no network.
//!
//! A user registers, tops up through a (local, in-process) payment gateway, orders an
//! image, the job runs and is captured, a second job fails and is refunded, and the
//! ledger is verified. Run with `cargo run -p rei-core --example embedding`.

use std::error::Error;
use std::sync::Arc;

use async_trait::async_trait;
use rei_core::job::{
    JobLimits, JobPorts, JobRunner, JobSpec, Next, Prompt, RunnerConfig, RunnerPorts, StoreQueue,
};
use rei_core::memory::{
    InstantImages, ManualClock, MemoryAssets, MemoryStore, RecordingNotifier, SequentialIds,
};
use rei_core::notice::{DispatchConfig, NoticeDispatcher};
use rei_core::payment::PaymentConfig;
use rei_core::ports::{
    CreatePayment, DownloadedAsset, GatewayPayment, GatewayRefund, GatewayStatus, LedgerStore,
    PaymentGateway, PaymentListQuery, PaymentPage, ProviderError, RefundRequest, RefundStatus,
    VideoRequest, VideoTaskStatus,
};
use rei_core::prelude::*;

/// A gateway that accepts every payment at once: stands in for YooKassa here.
#[derive(Debug, Default)]
struct InstantGateway;

#[async_trait]
impl PaymentGateway for InstantGateway {
    async fn create_payment(&self, r: &CreatePayment) -> Result<GatewayPayment, ProviderError> {
        Ok(GatewayPayment {
            provider_payment_id: format!("local-{}", r.payment_id),
            status: GatewayStatus::Pending,
            amount: r.amount,
            confirmation_url: Some("https://pay.example/checkout".into()),
            payment_id: Some(r.payment_id),
            user_id: Some(r.user_id),
            created_at: None,
            test: true,
            ..Default::default()
        })
    }

    async fn get_payment(&self, id: &str) -> Result<GatewayPayment, ProviderError> {
        let ours = id.strip_prefix("local-").and_then(|p| p.parse().ok());
        Ok(GatewayPayment {
            provider_payment_id: id.to_owned(),
            status: GatewayStatus::Succeeded,
            amount: "300".parse().map_err(|e| ProviderError::Unknown {
                message: format!("{e}"),
            })?,
            confirmation_url: None,
            payment_id: ours,
            user_id: None,
            created_at: None,
            test: true,
            ..Default::default()
        })
    }

    async fn refund(&self, _: &RefundRequest) -> Result<GatewayRefund, ProviderError> {
        Ok(GatewayRefund {
            refund_id: "local-refund".into(),
            status: RefundStatus::Succeeded,
            provider_payment_id: None,
            amount: None,
        })
    }

    async fn get_refund(&self, id: &str) -> Result<GatewayRefund, ProviderError> {
        Ok(GatewayRefund {
            refund_id: id.to_owned(),
            status: RefundStatus::Succeeded,
            provider_payment_id: None,
            amount: None,
        })
    }

    async fn list_payments(&self, _: &PaymentListQuery) -> Result<PaymentPage, ProviderError> {
        Ok(PaymentPage::default())
    }
}

/// A video generator that refuses everything: stands in for Kling's content check.
#[derive(Debug, Default)]
struct RefusingVideos;

#[async_trait]
impl VideoGenerator for RefusingVideos {
    async fn submit(&self, _: &VideoRequest) -> Result<ProviderTaskId, ProviderError> {
        Err(ProviderError::Refused {
            reason: "content-risk".into(),
        })
    }
    async fn find_by_job(
        &self,
        _: VideoMode,
        _: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        Ok(None)
    }
    async fn status(
        &self,
        _: VideoMode,
        _: &ProviderTaskId,
    ) -> Result<VideoTaskStatus, ProviderError> {
        Ok(VideoTaskStatus::Processing)
    }
    async fn download(&self, _: &str, _: JobId) -> Result<DownloadedAsset, ProviderError> {
        Err(ProviderError::Unknown {
            message: "nothing to download".into(),
        })
    }
}

/// What a worker loop does: claim, run steps until it lets go.
async fn work_once(jobs: &JobService, runner: &JobRunner) -> Result<(), Box<dyn Error>> {
    let mut job = jobs
        .claim("worker-1", std::time::Duration::from_secs(60))
        .await?
        .ok_or("the job was not queued")?;
    loop {
        let out = runner.step(job).await?;
        match out.next {
            Next::Continue => job = out.job,
            Next::Wait(_) | Next::Released | Next::Finished => return Ok(()),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000)));
    let ids = Arc::new(SequentialIds::default());
    let notifier = Arc::new(RecordingNotifier::default());

    let users = UserService::new(store.clone(), clock.clone());
    let payments = PaymentService::new(
        PaymentPorts {
            users: store.clone(),
            payments: store.clone(),
            gateway: Some(Arc::new(InstantGateway)),
            stars: None,
            notifier: notifier.clone(),
            clock: clock.clone(),
            ids: ids.clone(),
        },
        PaymentConfig {
            return_url: "https://t.me/ExampleBot".into(),
            ..PaymentConfig::default()
        },
    );
    let jobs = Arc::new(JobService::new(
        JobPorts {
            users: store.clone(),
            jobs: store.clone(),
            // The jobs table is the queue.
            queue: Arc::new(StoreQueue::new(store.clone())),
            clock: clock.clone(),
            ids,
        },
        PriceList::seed_defaults(),
        JobLimits::default(),
    ));
    let runner = JobRunner::new(
        RunnerPorts {
            jobs: jobs.clone(),
            images: Some(Arc::new(InstantImages)),
            videos: Some(Arc::new(RefusingVideos)),
            assets: Arc::new(MemoryAssets::default()),
            notifier: notifier.clone(),
            clock: clock.clone(),
        },
        RunnerConfig::default(),
    );

    let anna = UserId::new(123_456_789)?;
    users
        .register(UserProfile {
            id: anna,
            username: Some("anna".into()),
            first_name: Some("Anna".into()),
            language: Language::Ru,
        })
        .await?;

    // Top up 300 ₽: a link, then the (duplicated) webhook credits once.
    let payment = payments.create_topup(anna, "300".parse()?, None).await?;
    println!(
        "pay at {}",
        payment.confirmation_url.as_deref().unwrap_or("-")
    );
    let provider_id = payment.provider_payment_id.clone().unwrap_or_default();
    payments.sync_provider_payment(&provider_id).await?;
    payments.sync_provider_payment(&provider_id).await?;
    println!(
        "balance after top-up: {}",
        store.balance(anna).await?.available
    );

    // An image: 50 ₽ held at confirmation, captured on success.
    let spec = JobSpec::image(Prompt::parse("a red fox in the snow, watercolor")?);
    let quote = jobs.quote(&spec);
    println!("draft: {} costs {}", quote.product, quote.amount);
    jobs.create(anna, spec, &quote, IdempotencyKey::new("confirm:1")?)
        .await?;
    work_once(&jobs, &runner).await?;

    // A video that the provider refuses: the hold comes back.
    let video = JobSpec::Video {
        mode: VideoMode::TextToVideo,
        model: "kling-v2-6".into(),
        duration: VideoDuration::Ten,
        prompt: Prompt::parse("a fox running")?,
        input: None,
        aspect: None,
    };
    let quote = jobs.quote(&video);
    println!("draft: {} costs {}", quote.product, quote.amount);
    jobs.create(anna, video, &quote, IdempotencyKey::new("confirm:2")?)
        .await?;
    work_once(&jobs, &runner).await?;

    let balance = store.balance(anna).await?;
    println!(
        "final balance: {} (held {})",
        balance.available, balance.held
    );
    for e in store.entries(anna, 10).await?.iter().rev() {
        println!(
            "  {:>6} {:>10} {:<11} {}",
            e.kind.as_str(),
            e.amount.to_string(),
            e.ref_type.as_str(),
            e.description
        );
    }
    // Money notices wait in the outbox, written with each credit; a dispatcher (run in
    // a loop by a real bot) sends them.
    let dispatcher = NoticeDispatcher::new(
        store.clone(),
        store.clone(),
        notifier.clone(),
        clock.clone(),
        DispatchConfig::default(),
    );
    let round = dispatcher.dispatch_due().await?;
    println!(
        "notices sent: {} ({} from the outbox)",
        notifier.notices().len(),
        round.sent
    );
    if round.sent != 1 {
        return Err("the credit notice did not go out once".into());
    }
    let report = store.verify().await?;
    println!("ledger verified: {} violations", report.violations.len());
    if !report.is_ok() || balance.available != "250".parse()? {
        return Err("the ledger does not add up".into());
    }
    Ok(())
}
