//! A deterministic simulation of core, in the spirit of TigerBeetle's simulator and
//! FoundationDB's simulation testing.
//!
//! Core's services (users and admin adjustments, jobs and the job runner, Stars
//! payments, and the conversation engine the bot's front end drives: `/start`,
//! `/balance`, prompts that become drafts, Confirm and Discard pressed late, twice or
//! after a restart, admin `/add`, updates the messenger delivers again) run over the
//! memory store with a simulated clock. A seeded scheduler
//! interleaves many users' steps and two worker "processes" in random order, and faults
//! are injected at every store call (an outage before the call, or an answer lost after
//! it: the write happened, the caller is told it failed), at every provider call
//! (transient, rate limited, refused, unknown) and at every notice. A worker process may
//! crash at any step: it loses what it held in memory (its leased job), the store keeps
//! everything. After every step the ledger's invariants are checked (balance = sum of
//! entries ≥ 0, every hold settled at most once, no credit without a paid payment, every
//! job's hold settled as its state says; no draft makes more than one job, and no more
//! jobs come from the dialogue than drafts were confirmed); at the end, with the faults
//! off, every job must reach a final state.
//!
//! ```text
//! cargo test -p rei-core --test simulation                      # 1,000 seeds (CI)
//! REI_SIM_SEEDS=1000000 cargo test --release -p rei-core --test simulation
//! REI_SIM_SEED=4242 cargo test -p rei-core --test simulation     # replay one seed
//! ```
//! A failure names its seed; the same seed replays the same run exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_lines)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::executor::block_on;
use rei_core::conversation::{
    Action, ButtonTarget, Conversation, ConversationConfig, ConversationPorts, DraftId, Input,
    Media, Reply, Sender,
};
use rei_core::job::{
    Applied, Job, JobFilter, JobPorts, JobRunner, JobWrite, LeaseToken, NewJob, Next, RunnerConfig,
    RunnerPorts, StoreQueue,
};
use rei_core::ledger::{
    LedgerService, NewEntry, NewReservation, Posted, Reservation, VerifyReport,
};
use rei_core::memory::{ManualClock, MemoryAssets, MemoryStore};
use rei_core::payment::{
    DueFilter, DuePayments, NewPayment, PaymentConfig, PaymentFilter, PaymentTransition,
};
use rei_core::ports::{
    AdminAlert, ClaimTarget, DialogueRecord, DialogueStore, DownloadedAsset, GeneratedImage,
    ImageRequest, LimiterError, MediaError, MediaFetcher, MessageRef, Notice, NotifyError,
    ProviderError, RateDecision, RateLimiter, StoreError, VideoRequest, VideoTaskStatus,
};
use rei_core::prelude::*;
use rei_core::user::{AuditRecord, Email, Stats, User};

/// SplitMix64: small, fast and the same everywhere, so a seed replays exactly.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }
}

/// The faults of one run: one seeded source, shared by every faulty port, and a switch
/// for the final drain.
#[derive(Debug)]
struct Faults {
    rng: Mutex<Rng>,
    on: AtomicBool,
    /// Per mille of store calls that fail before (outage) or after (answer lost).
    store_rate: u64,
    injected: AtomicU64,
}

enum Fault {
    None,
    Before,
    After,
}

impl Faults {
    fn draw(&self, per_mille: u64) -> u64 {
        if !self.on.load(Ordering::Relaxed) {
            return u64::MAX;
        }
        let mut rng = self.rng.lock().unwrap();
        if rng.chance(per_mille) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            rng.below(1000)
        } else {
            u64::MAX
        }
    }

    fn store(&self) -> Fault {
        match self.draw(self.store_rate) {
            u64::MAX => Fault::None,
            n if n % 2 == 0 => Fault::Before,
            _ => Fault::After,
        }
    }
}

fn outage() -> StoreError {
    StoreError::Unavailable("simulated outage".into())
}

/// Runs a store call under the fault plan: not at all (outage), or for real with its
/// answer thrown away (the caller cannot tell whether it happened).
macro_rules! faulty {
    ($self:ident, $call:expr) => {
        match $self.faults.store() {
            Fault::None => $call.await,
            Fault::Before => Err(outage()),
            Fault::After => {
                drop($call.await);
                Err(StoreError::Unavailable("simulated lost answer".into()))
            }
        }
    };
}

/// The memory store behind a fault plan.
struct FaultyStore {
    inner: Arc<MemoryStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl UserStore for FaultyStore {
    async fn register(&self, p: UserProfile, at: Timestamp) -> Result<(User, bool), StoreError> {
        faulty!(self, self.inner.register(p, at))
    }
    async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        faulty!(self, self.inner.user(id))
    }
    async fn set_banned(&self, id: UserId, b: bool, a: AuditRecord) -> Result<User, StoreError> {
        faulty!(self, self.inner.set_banned(id, b, a))
    }
    async fn mark_ban_notified(&self, id: UserId) -> Result<bool, StoreError> {
        faulty!(self, self.inner.mark_ban_notified(id))
    }
    async fn set_language(&self, id: UserId, l: Language) -> Result<(), StoreError> {
        faulty!(self, self.inner.set_language(id, l))
    }
    async fn audit_log(&self, n: u32) -> Result<Vec<AuditRecord>, StoreError> {
        faulty!(self, self.inner.audit_log(n))
    }
    async fn set_unreachable(&self, id: UserId, s: Option<Timestamp>) -> Result<(), StoreError> {
        faulty!(self, self.inner.set_unreachable(id, s))
    }
    async fn append_audit(&self, r: AuditRecord) -> Result<(), StoreError> {
        faulty!(self, self.inner.append_audit(r))
    }
    async fn set_receipt_email(&self, id: UserId, e: &Email) -> Result<(), StoreError> {
        faulty!(self, self.inner.set_receipt_email(id, e))
    }
    async fn stats(&self, since: Timestamp) -> Result<Stats, StoreError> {
        faulty!(self, self.inner.stats(since))
    }
}

#[async_trait]
impl LedgerStore for FaultyStore {
    async fn post(&self, e: NewEntry, a: Option<AuditRecord>) -> Result<Posted, StoreError> {
        faulty!(self, self.inner.post(e, a))
    }
    async fn post_adjustment(&self, e: NewEntry, a: AuditRecord) -> Result<Posted, StoreError> {
        faulty!(self, self.inner.post_adjustment(e, a))
    }
    async fn reserve(&self, r: NewReservation) -> Result<Reservation, StoreError> {
        faulty!(self, self.inner.reserve(r))
    }
    async fn settle(
        &self,
        id: ReservationId,
        how: Settlement,
        at: Timestamp,
    ) -> Result<Reservation, StoreError> {
        faulty!(self, self.inner.settle(id, how, at))
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        faulty!(self, self.inner.reservation(id))
    }
    async fn balance(&self, user: UserId) -> Result<Balance, StoreError> {
        faulty!(self, self.inner.balance(user))
    }
    async fn entry_by_key(&self, k: &IdempotencyKey) -> Result<Option<LedgerEntry>, StoreError> {
        faulty!(self, self.inner.entry_by_key(k))
    }
    async fn entries(&self, user: UserId, n: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        faulty!(self, self.inner.entries(user, n))
    }
    async fn verify(&self) -> Result<VerifyReport, StoreError> {
        faulty!(self, self.inner.verify())
    }
}

#[async_trait]
impl JobStore for FaultyStore {
    async fn create_job(&self, job: NewJob, max_active: u32) -> Result<Job, StoreError> {
        faulty!(self, self.inner.create_job(job, max_active))
    }
    async fn job(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        faulty!(self, self.inner.job(id))
    }
    async fn write_job(&self, w: &JobWrite) -> Result<Applied, StoreError> {
        faulty!(self, self.inner.write_job(w))
    }
    async fn claim_job(
        &self,
        target: ClaimTarget,
        lease: &rei_core::job::JobLease,
        at: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        faulty!(self, self.inner.claim_job(target, lease, at))
    }
    async fn queued_jobs(&self, n: u32) -> Result<Vec<JobId>, StoreError> {
        faulty!(self, self.inner.queued_jobs(n))
    }
    async fn queue_depth(&self) -> Result<u64, StoreError> {
        faulty!(self, self.inner.queue_depth())
    }
    async fn jobs(&self, filter: JobFilter) -> Result<Vec<Job>, StoreError> {
        faulty!(self, self.inner.jobs(filter))
    }
    async fn import_legacy_job(&self, j: &rei_core::legacy::LegacyJob) -> Result<bool, StoreError> {
        faulty!(self, self.inner.import_legacy_job(j))
    }
    async fn legacy_jobs(
        &self,
        user: UserId,
        n: u32,
    ) -> Result<Vec<rei_core::legacy::LegacyJob>, StoreError> {
        faulty!(self, self.inner.legacy_jobs(user, n))
    }
}

#[async_trait]
impl PaymentStore for FaultyStore {
    async fn create_payment(&self, p: NewPayment) -> Result<Payment, StoreError> {
        faulty!(self, self.inner.create_payment(p))
    }
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        faulty!(self, self.inner.payment(id))
    }
    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        id: &str,
    ) -> Result<Option<Payment>, StoreError> {
        faulty!(self, self.inner.payment_by_provider_id(provider, id))
    }
    async fn save_payment_transition(&self, t: &PaymentTransition) -> Result<Payment, StoreError> {
        faulty!(self, self.inner.save_payment_transition(t))
    }
    async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, StoreError> {
        faulty!(self, self.inner.payments(filter))
    }
    async fn import_payment(&self, p: &Payment) -> Result<bool, StoreError> {
        faulty!(self, self.inner.import_payment(p))
    }
    async fn due_payments(&self, filter: DueFilter) -> Result<DuePayments, StoreError> {
        faulty!(self, self.inner.due_payments(filter))
    }
    async fn schedule_check(&self, id: PaymentId, n: u32, at: Timestamp) -> Result<(), StoreError> {
        faulty!(self, self.inner.schedule_check(id, n, at))
    }
}

/// Nano Banana under the fault plan: most calls draw, some fail in every way a
/// provider fails.
#[async_trait]
impl DialogueStore for FaultyStore {
    async fn load_dialogue(&self, user: UserId) -> Result<Option<DialogueRecord>, StoreError> {
        faulty!(self, self.inner.load_dialogue(user))
    }
    async fn save_dialogue(
        &self,
        user: UserId,
        state: &str,
        expected: Option<u64>,
        at: Timestamp,
    ) -> Result<u64, StoreError> {
        faulty!(self, self.inner.save_dialogue(user, state, expected, at))
    }
    async fn clear_dialogue(&self, user: UserId) -> Result<(), StoreError> {
        faulty!(self, self.inner.clear_dialogue(user))
    }
}

/// The rate limiter under the fault plan: it fails now and then (the engine then lets
/// the user through), and otherwise allows.
struct SimLimiter(Arc<Faults>);

#[async_trait]
impl RateLimiter for SimLimiter {
    async fn check(&self, _: UserId) -> Result<RateDecision, LimiterError> {
        match self.0.draw(50) {
            u64::MAX => Ok(RateDecision::Allowed),
            _ => Err(LimiterError("simulated".into())),
        }
    }
}

/// Users send no files in the simulation.
struct NoMedia;

#[async_trait]
impl MediaFetcher for NoMedia {
    async fn fetch(&self, _: &Media, _: &str) -> Result<rei_core::job::AssetRef, MediaError> {
        Err(MediaError::Unavailable("no files in the simulation".into()))
    }
    fn max_bytes(&self) -> u64 {
        20 * 1024 * 1024
    }
}

struct SimImages(Arc<Faults>);

#[async_trait]
impl ImageGenerator for SimImages {
    async fn generate(&self, _: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let message = "simulated".to_owned();
        match self.0.draw(300) {
            u64::MAX => Ok(GeneratedImage {
                bytes: vec![0x89, b'P', b'N', b'G'],
                mime_type: "image/png".into(),
                caption: None,
            }),
            n if n < 400 => Err(ProviderError::Transient { message }),
            n if n < 600 => Err(ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(n % 30)),
            }),
            n if n < 800 => Err(ProviderError::Refused { reason: message }),
            _ => Err(ProviderError::Unknown { message }),
        }
    }
}

/// A video task at the provider: polls left before it ends, and how it ends.
struct Task {
    id: ProviderTaskId,
    polls_left: u64,
    succeeds: bool,
}

/// Kling under the fault plan. Its tasks live outside every "process" (they survive
/// crashes, as tasks at the provider do): some finish after a few polls, some fail, a
/// few never finish (the deadline refunds them); a submit may be created at the
/// provider and its answer lost (the runner must find it by job, not pay twice).
struct SimVideos {
    faults: Arc<Faults>,
    tasks: Mutex<std::collections::HashMap<JobId, Task>>,
    submits: AtomicU64,
}

impl SimVideos {
    fn provider_fault(&self) -> Result<(), ProviderError> {
        let message = "simulated".to_owned();
        match self.faults.draw(150) {
            u64::MAX => Ok(()),
            n if n < 500 => Err(ProviderError::Transient { message }),
            n if n < 800 => Err(ProviderError::RateLimited { retry_after: None }),
            _ => Err(ProviderError::Unknown { message }),
        }
    }
}

#[async_trait]
impl VideoGenerator for SimVideos {
    async fn submit(&self, request: &VideoRequest) -> Result<ProviderTaskId, ProviderError> {
        self.provider_fault()?;
        let n = self.submits.fetch_add(1, Ordering::Relaxed);
        let (polls_left, succeeds) = {
            let mut rng = self.faults.rng.lock().unwrap();
            let hangs = rng.chance(100);
            (if hangs { u64::MAX } else { rng.below(6) }, rng.chance(850))
        };
        let id = ProviderTaskId::new(format!("task-{n}")).unwrap();
        let task = Task {
            id: id.clone(),
            polls_left,
            succeeds,
        };
        if self
            .tasks
            .lock()
            .unwrap()
            .insert(request.job_id, task)
            .is_some()
        {
            panic!(
                "job {} was submitted to the provider twice (paid twice)",
                request.job_id
            );
        }
        // Created at the provider, answer lost on the way back.
        if self.faults.draw(100) != u64::MAX {
            return Err(ProviderError::Transient {
                message: "answer lost".into(),
            });
        }
        Ok(id)
    }

    async fn find_by_job(
        &self,
        _: VideoMode,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        self.provider_fault()?;
        Ok(self.tasks.lock().unwrap().get(&job).map(|t| t.id.clone()))
    }

    async fn status(
        &self,
        _: VideoMode,
        task: &ProviderTaskId,
    ) -> Result<VideoTaskStatus, ProviderError> {
        self.provider_fault()?;
        let mut tasks = self.tasks.lock().unwrap();
        let Some(t) = tasks.values_mut().find(|t| &t.id == task) else {
            return Err(ProviderError::NotFound {
                message: task.to_string(),
            });
        };
        if t.polls_left > 0 {
            t.polls_left =
                t.polls_left
                    .saturating_sub(if t.polls_left == u64::MAX { 0 } else { 1 });
            return Ok(VideoTaskStatus::Processing);
        }
        Ok(if t.succeeds {
            VideoTaskStatus::Succeeded {
                url: format!("https://cdn.example/{task}.mp4"),
                duration_ms: Some(5_000),
            }
        } else {
            VideoTaskStatus::Failed {
                message: "simulated".into(),
            }
        })
    }

    async fn download(&self, _: &str, job: JobId) -> Result<DownloadedAsset, ProviderError> {
        self.provider_fault()?;
        Ok(DownloadedAsset {
            asset: AssetRef::new(format!("results/{job}.mp4")),
            bytes: 1_000,
        })
    }
}

/// The user's chat under the fault plan: notices fail now and then, or the user has
/// blocked the bot.
struct SimNotifier(Arc<Faults>, AtomicU64);

#[async_trait]
impl Notifier for SimNotifier {
    async fn notify(&self, user: UserId, _: Notice) -> Result<Option<MessageRef>, NotifyError> {
        match self.0.draw(100) {
            u64::MAX => {
                let n = self.1.fetch_add(1, Ordering::Relaxed);
                Ok(Some(MessageRef::new(n.to_string())))
            }
            n if n < 700 => Err(NotifyError::Unavailable("simulated".into())),
            _ => Err(NotifyError::Unreachable(user)),
        }
    }
    async fn alert_admins(&self, _: AdminAlert) -> Result<(), NotifyError> {
        Ok(())
    }
}

/// Ids that never repeat, across "process" restarts (as random UUIDs would not).
#[derive(Debug, Default)]
struct Ids(AtomicU64);

impl rei_core::ports::IdGenerator for Ids {
    fn job_id(&self) -> JobId {
        JobId::from_uuid(uuid(&self.0, 1))
    }
    fn reservation_id(&self) -> ReservationId {
        ReservationId::from_uuid(uuid(&self.0, 2))
    }
    fn payment_id(&self) -> PaymentId {
        PaymentId::from_uuid(uuid(&self.0, 3))
    }
    fn lease_token(&self) -> LeaseToken {
        LeaseToken::new(uuid(&self.0, 4).to_string())
    }
    fn secret_token(&self) -> String {
        uuid(&self.0, 5).simple().to_string()
    }
}

fn uuid(n: &AtomicU64, kind: u128) -> uuid::Uuid {
    uuid::Uuid::from_u128((kind << 64) | u128::from(n.fetch_add(1, Ordering::Relaxed) + 1))
}

/// One "process": services built over the shared store, and what it holds in memory.
struct Process {
    jobs: Arc<JobService>,
    runner: JobRunner,
    admin: AdminService,
    users: UserService,
    payments: Arc<PaymentService>,
    /// The dialogue engine (the bot's front end hands it every update).
    conversation: Conversation,
    /// The job this worker holds the lease of, and when it may take its next step.
    held: Option<(Job, Timestamp)>,
}

struct World {
    seed: u64,
    rng: Rng,
    store: Arc<MemoryStore>,
    faults: Arc<Faults>,
    clock: Arc<ManualClock>,
    ids: Arc<Ids>,
    videos: Arc<SimVideos>,
    processes: Vec<Process>,
    users: Vec<UserId>,
    payments: Vec<(PaymentId, u32)>,
    jobs: Vec<JobId>,
    steps: u64,
    crashes: u64,
    /// Updates handed to the engine so far (each has its own key).
    updates: u64,
    /// Updates delivered a second time.
    redelivered: u64,
    /// Updates already handled, which the messenger may deliver again.
    delivered: Vec<(UserId, Input, String)>,
    /// Confirm buttons users were shown, by user: pressed later, maybe more than once.
    drafts: Vec<(UserId, DraftId)>,
    /// Drafts a Confirm was pressed for (each may make one job at most).
    confirmed: std::collections::HashSet<(UserId, DraftId)>,
}

const LEASE: Duration = Duration::from_secs(60);
/// The admin of the simulated bot.
fn admin_id() -> UserId {
    UserId::new(999_999).unwrap()
}

impl World {
    fn new(seed: u64) -> Self {
        let faults = Arc::new(Faults {
            rng: Mutex::new(Rng(seed ^ 0x5EED)),
            on: AtomicBool::new(true),
            store_rate: 60,
            injected: AtomicU64::new(0),
        });
        let mut world = Self {
            seed,
            rng: Rng(seed),
            store: Arc::new(MemoryStore::default()),
            faults: faults.clone(),
            clock: Arc::new(ManualClock::new(Timestamp::from_millis(1_767_225_600_000))),
            ids: Arc::new(Ids::default()),
            videos: Arc::new(SimVideos {
                faults: faults.clone(),
                tasks: Mutex::default(),
                submits: AtomicU64::new(0),
            }),
            processes: Vec::new(),
            users: Vec::new(),
            payments: Vec::new(),
            jobs: Vec::new(),
            steps: 0,
            crashes: 0,
            updates: 0,
            redelivered: 0,
            delivered: Vec::new(),
            drafts: Vec::new(),
            confirmed: std::collections::HashSet::new(),
        };
        for _ in 0..2 {
            let p = world.process();
            world.processes.push(p);
        }
        world
    }

    /// A fresh process over the shared store: nothing in memory.
    fn process(&self) -> Process {
        let faulty = Arc::new(FaultyStore {
            inner: self.store.clone(),
            faults: self.faults.clone(),
        });
        let clock: Arc<dyn Clock> = self.clock.clone();
        let queue = Arc::new(StoreQueue::new(faulty.clone()));
        let jobs = Arc::new(JobService::new(
            JobPorts {
                users: faulty.clone(),
                jobs: faulty.clone(),
                queue: queue.clone(),
                clock: clock.clone(),
                ids: self.ids.clone(),
            },
            PriceList::seed_defaults(),
            JobLimits {
                max_active_per_user: 3,
                max_attempts: 3,
                max_deliveries: 5,
            },
        ));
        let runner = JobRunner::new(
            RunnerPorts {
                jobs: jobs.clone(),
                images: Some(Arc::new(SimImages(self.faults.clone()))),
                videos: Some(self.videos.clone()),
                assets: Arc::new(MemoryAssets::default()),
                notifier: Arc::new(SimNotifier(self.faults.clone(), AtomicU64::new(1))),
                clock: clock.clone(),
            },
            RunnerConfig {
                lease_for: LEASE,
                ..RunnerConfig::default()
            },
        );
        let admin = AdminService::new(AdminPorts {
            users: faulty.clone(),
            ledger: faulty.clone(),
            queue,
            clock: clock.clone(),
        });
        let users = UserService::new(faulty.clone(), clock.clone());
        let payments = Arc::new(PaymentService::new(
            PaymentPorts {
                users: faulty.clone(),
                payments: faulty.clone(),
                gateway: None,
                stars: None,
                notifier: Arc::new(SimNotifier(self.faults.clone(), AtomicU64::new(1))),
                clock: clock.clone(),
                ids: self.ids.clone(),
            },
            PaymentConfig {
                stars_rate: Some(Money::from_kopecks(150).unwrap()),
                ..PaymentConfig::default()
            },
        ));
        let conversation = Conversation::new(
            ConversationPorts {
                users: users.clone(),
                ledger: LedgerService::new(faulty.clone()),
                jobs: jobs.clone(),
                payments: Some(payments.clone()),
                admin: admin.clone(),
                promos: rei_core::promo::PromoService::new(self.store.clone(), clock.clone()),
                referrals: rei_core::referral::ReferralService::new(
                    self.store.clone(),
                    self.store.clone(),
                    clock.clone(),
                    self.ids.clone(),
                ),
                broadcasts: rei_core::broadcast::BroadcastService::new(
                    self.store.clone(),
                    users.clone(),
                    clock.clone(),
                ),
                web: rei_core::web::WebAdminService::new(
                    self.store.clone(),
                    vec![admin_id()],
                    clock.clone(),
                    self.ids.clone(),
                ),
                prices: rei_core::prices::PriceService::new(
                    self.store.clone(),
                    jobs.clone(),
                    jobs.prices().as_ref().clone(),
                    Vec::new(),
                    clock.clone(),
                ),
                dialogues: faulty,
                limiter: Arc::new(SimLimiter(self.faults.clone())),
                media: Arc::new(NoMedia),
                notifier: Arc::new(SimNotifier(self.faults.clone(), AtomicU64::new(1))),
                assets: Arc::new(MemoryAssets::default()),
                clock: clock.clone(),
                ids: self.ids.clone(),
            },
            ConversationConfig {
                admins: vec![admin_id()],
                topup_amounts: vec![Money::from_kopecks(10_000).unwrap()],
                images: true,
                videos: true,
                video_models: Vec::new(),
                omni_model: String::new(),
                video_to_video: false,
                draft_ttl: Duration::from_secs(900),
                signup_bonus: Money::from_kopecks(2_500).unwrap(),
                result_link_ttl: Duration::from_secs(24 * 3600),
                web_admin_login: None,
            },
        );
        Process {
            jobs,
            runner,
            admin,
            users,
            payments,
            conversation,
            held: None,
        }
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            None
        } else {
            let i = usize::try_from(self.rng.below(items.len() as u64)).unwrap();
            Some(items[i])
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "simulation seed {} failed at step {}: {what}\nreplay: REI_SIM_SEED={} cargo test -p rei-core --test simulation",
            self.seed, self.steps, self.seed
        );
    }

    /// One scheduler step: a random actor does its next thing.
    fn step(&mut self) {
        self.steps += 1;
        let p = usize::try_from(self.rng.below(2)).unwrap();
        let roll = self.rng.below(130);
        if roll >= 100 {
            self.talk(p);
            self.check();
            return;
        }
        match roll {
            0..=9 => {
                let id = UserId::new(i64::try_from(self.users.len() + 1).unwrap()).unwrap();
                let profile = UserProfile {
                    id,
                    username: None,
                    first_name: None,
                    language: Language::Ru,
                };
                // An error is an outage: the user tries again later (by a new step).
                if block_on(self.processes[p].users.register(profile)).is_ok()
                    && !self.users.contains(&id)
                {
                    self.users.push(id);
                }
            }
            10..=19 => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                // Keys from a small space: repeats are the duplicate deliveries of one
                // admin command.
                let key = format!("credit-{}-{}", user, self.rng.below(4));
                let amount =
                    Money::from_kopecks(i64::try_from(5_000 + self.rng.below(20_000)).unwrap())
                        .unwrap();
                drop(block_on(self.processes[p].admin.credit(
                    Actor::System,
                    user,
                    amount,
                    "simulation",
                    IdempotencyKey::new(key).unwrap(),
                )));
            }
            20..=34 => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                let spec = if self.rng.chance(350) {
                    JobSpec::Video {
                        mode: VideoMode::TextToVideo,
                        model: "kling-v2-6".into(),
                        duration: VideoDuration::Five,
                        prompt: Prompt::parse("a fox runs").unwrap(),
                        input: None,
                        aspect: None,
                    }
                } else {
                    JobSpec::image(Prompt::parse("a fox").unwrap())
                };
                let quote = self.processes[p].jobs.quote(&spec);
                let key = format!("job-{}-{}", user, self.rng.below(6));
                if let Ok(job) = block_on(self.processes[p].jobs.create(
                    user,
                    spec,
                    &quote,
                    IdempotencyKey::new(key).unwrap(),
                )) {
                    if !self.jobs.contains(&job.id) {
                        self.jobs.push(job.id);
                    }
                }
            }
            35..=41 => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                let stars = u32::try_from(50 + self.rng.below(100)).unwrap();
                if let Ok(payment) =
                    block_on(self.processes[p].payments.create_stars_topup(user, stars))
                {
                    self.payments.push((payment.id, stars));
                }
            }
            42..=49 => {
                // Telegram's successful_payment, delivered again now and then.
                let Some((payment, stars)) = self.pick(&self.payments.clone()) else {
                    return;
                };
                let charge = format!("charge-{payment}");
                drop(block_on(
                    self.processes[p]
                        .payments
                        .stars_paid(payment, &charge, stars),
                ));
            }
            50..=54 => {
                // The user's own /cancel, or an admin's.
                let Some(id) = self.pick(&self.jobs.clone()) else {
                    return;
                };
                let Ok(Some(job)) = block_on(self.store.job(id)) else {
                    return;
                };
                let actor = if self.rng.chance(500) {
                    Actor::User(job.user_id)
                } else {
                    Actor::Admin(admin_id())
                };
                drop(block_on(self.processes[p].jobs.cancel(
                    id,
                    actor,
                    "simulation",
                )));
            }
            55..=84 => self.work(p),
            85..=89 => {
                // The process dies: what it held in memory is gone; its lease runs out.
                let fresh = self.process();
                self.processes[p] = fresh;
                self.crashes += 1;
            }
            90..=97 => {
                let by = Duration::from_secs(self.rng.below(90));
                self.clock.advance(by);
            }
            _ => {
                // A clock jump: deadlines and leases pass while tasks run.
                let by = Duration::from_secs(600 + self.rng.below(1_200));
                self.clock.advance(by);
            }
        }
        self.check();
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        let report = block_on(self.store.verify()).unwrap();
        if !report.is_ok() {
            self.fail(&format!(
                "ledger invariants broken: {:?}",
                report.violations
            ));
        }
        // A job made through the dialogue comes from one confirmed draft, once.
        let jobs = block_on(self.store.jobs(JobFilter::default())).unwrap();
        let mut from_drafts = std::collections::BTreeSet::new();
        for job in &jobs {
            let key = job.idempotency_key.as_str();
            if key.starts_with("confirm:") && !from_drafts.insert(key.to_owned()) {
                self.fail(&format!("two jobs of one draft: {key}"));
            }
        }
        if from_drafts.len() > self.confirmed.len() {
            self.fail(&format!(
                "{} jobs from {} confirmed drafts",
                from_drafts.len(),
                self.confirmed.len()
            ));
        }
    }

    /// A user (or the admin) says something to process `p`'s engine: a new update, or
    /// one the messenger delivers again.
    fn talk(&mut self, p: usize) {
        if !self.delivered.is_empty() && self.rng.chance(150) {
            // Telegram redelivers an update it got no answer for: same key, same input.
            let i = usize::try_from(self.rng.below(self.delivered.len() as u64)).unwrap();
            let (user, input, key) = self.delivered[i].clone();
            self.redelivered += 1;
            drop(self.say(p, user, input, &key));
            return;
        }
        let admin = admin_id();
        let (user, input) = match self.rng.below(10) {
            0 => {
                // Someone new, or someone known, starts the bot.
                let n = self.users.len() as u64 + 1 + self.rng.below(2);
                (
                    UserId::new(i64::try_from(n).unwrap()).unwrap(),
                    command("start", &[]),
                )
            }
            1 => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                (user, command("balance", &[]))
            }
            2..=4 => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                let text = format!("a fox number {}", self.rng.below(100));
                (user, Input::Text(text))
            }
            5..=7 => {
                // A Confirm from a draft shown earlier: pressed again, or late (the
                // draft replaced, expired or already confirmed).
                let Some((user, draft)) = self.pick(&self.drafts.clone()) else {
                    return;
                };
                self.confirmed.insert((user, draft));
                (user, Input::Button(Action::Confirm(draft)))
            }
            8 => {
                let Some((user, draft)) = self.pick(&self.drafts.clone()) else {
                    return;
                };
                (user, Input::Button(Action::Discard(draft)))
            }
            _ => {
                let Some(user) = self.pick(&self.users.clone()) else {
                    return;
                };
                let rubles = 1 + self.rng.below(300);
                let args = [user.to_string(), rubles.to_string()];
                (admin, command("add", &[&args[0], &args[1]]))
            }
        };
        self.updates += 1;
        let key = format!("sim:{}", self.updates);
        let replies = self.say(p, user, input.clone(), &key);
        self.delivered.push((user, input, key));
        if let Ok(replies) = replies {
            if user != admin && !self.users.contains(&user) {
                self.users.push(user);
            }
            for reply in &replies {
                for (draft_user, draft) in confirm_buttons(user, reply) {
                    self.drafts.push((draft_user, draft));
                }
            }
        }
    }

    /// Process `p`'s engine handles `input` of `user` under `key`.
    fn say(
        &self,
        p: usize,
        user: UserId,
        input: Input,
        key: &str,
    ) -> Result<Vec<Reply>, rei_core::conversation::ConversationError> {
        let sender = Sender {
            id: user,
            username: None,
            first_name: Some("Sim".into()),
            language_code: Some("ru".into()),
        };
        block_on(self.processes[p].conversation.handle(&sender, input, key))
    }

    /// Worker `p` steps its job, or claims one.
    fn work(&mut self, p: usize) {
        let now = self.clock.now();
        match self.processes[p].held.take() {
            Some((job, due)) if due <= now => {
                match block_on(self.processes[p].runner.step(job.clone())) {
                    Ok(outcome) => match outcome.next {
                        Next::Continue => self.processes[p].held = Some((outcome.job, now)),
                        Next::Wait(d) => self.processes[p].held = Some((outcome.job, now.plus(d))),
                        Next::Released | Next::Finished => {}
                    },
                    Err(rei_core::job::JobError::LeaseLost(_)) => {}
                    // An outage: keep the lease and try again later.
                    Err(_) => self.processes[p].held = Some((job, now)),
                }
            }
            Some(waiting) => self.processes[p].held = Some(waiting),
            None => {
                if let Ok(Some(job)) = block_on(self.processes[p].jobs.claim("sim", LEASE)) {
                    self.processes[p].held = Some((job, now));
                }
            }
        }
    }

    /// Faults off: time passes and the workers run until every job is final.
    fn drain(&mut self) {
        self.faults.on.store(false, Ordering::Relaxed);
        for _ in 0..20_000 {
            // Every job: those the services made and those confirmed in the dialogue.
            let all = block_on(self.store.jobs(JobFilter::default())).unwrap();
            if all.iter().all(|j| j.state.is_final()) {
                return;
            }
            self.clock.advance(Duration::from_secs(5));
            for p in 0..self.processes.len() {
                self.work(p);
            }
        }
        let stuck: Vec<_> = block_on(self.store.jobs(JobFilter::default()))
            .unwrap()
            .into_iter()
            .filter(|j| !j.state.is_final())
            .map(|j| (j.id, j.state))
            .collect();
        self.fail(&format!("jobs never reached a final state: {stuck:?}"));
    }
}

/// A command as the front end reads it.
fn command(name: &str, args: &[&str]) -> Input {
    Input::Command {
        name: name.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
    }
}

/// The drafts whose Confirm button `reply` shows `user`.
fn confirm_buttons(user: UserId, reply: &Reply) -> Vec<(UserId, DraftId)> {
    reply
        .buttons
        .iter()
        .flatten()
        .filter_map(|b| match &b.target {
            ButtonTarget::Action(Action::Confirm(draft)) => Some((user, *draft)),
            _ => None,
        })
        .collect()
}

/// What the runs did, so a plan that exercises nothing is noticed.
#[derive(Debug, Default)]
struct Tally {
    faults: u64,
    crashes: u64,
    completed: u64,
    failed: u64,
    cancelled: u64,
    paid: u64,
    /// Drafts the engine showed with a Confirm button.
    drafts: u64,
    /// Jobs made by pressing Confirm.
    dialogue_jobs: u64,
    /// Updates the messenger delivered again.
    redelivered: u64,
}

fn run(seed: u64, steps: u64, tally: &mut Tally) {
    let mut world = World::new(seed);
    for _ in 0..steps {
        world.step();
    }
    world.drain();
    let report = block_on(world.store.verify()).unwrap();
    if !report.is_ok() {
        world.fail(&format!(
            "ledger invariants broken at the end: {:?}",
            report.violations
        ));
    }
    let stats = block_on(world.store.stats(Timestamp::from_millis(0))).unwrap();
    let jobs = |state: JobState| {
        stats
            .jobs_by_state
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    };
    tally.completed += jobs(JobState::Completed);
    tally.failed += jobs(JobState::Failed);
    tally.cancelled += jobs(JobState::Cancelled);
    tally.paid += stats
        .payments_by_state
        .iter()
        .find(|(s, _, _)| *s == PaymentState::Paid)
        .map_or(0, |(_, n, _)| *n);
    tally.faults += world.faults.injected.load(Ordering::Relaxed);
    tally.crashes += world.crashes;
    tally.drafts += world.drafts.len() as u64;
    tally.redelivered += world.redelivered;
    tally.dialogue_jobs += block_on(world.store.jobs(JobFilter::default()))
        .unwrap()
        .iter()
        .filter(|j| j.idempotency_key.as_str().starts_with("confirm:"))
        .count() as u64;
}

#[test]
fn core_keeps_its_promises_under_random_faults_and_crashes() {
    let steps = 300;
    let mut tally = Tally::default();
    if let Ok(seed) = std::env::var("REI_SIM_SEED") {
        run(
            seed.parse().expect("REI_SIM_SEED is a number"),
            steps,
            &mut tally,
        );
        println!("seed {seed}: {tally:?}");
        return;
    }
    let seeds: u64 = std::env::var("REI_SIM_SEEDS")
        .ok()
        .map_or(1_000, |n| n.parse().expect("REI_SIM_SEEDS is a number"));
    for seed in 0..seeds {
        run(seed, steps, &mut tally);
    }
    println!("{seeds} seeds, {steps} steps each: {tally:?}");
    // The plan exercised every path it claims to (a run that never failed a call,
    // never crashed, or never finished a job one way or another would prove nothing).
    for (what, n) in [
        ("faults", tally.faults),
        ("crashes", tally.crashes),
        ("completed jobs", tally.completed),
        ("failed jobs", tally.failed),
        ("cancelled jobs", tally.cancelled),
        ("paid top-ups", tally.paid),
        ("drafts", tally.drafts),
        ("jobs confirmed in the dialogue", tally.dialogue_jobs),
        ("redelivered updates", tally.redelivered),
    ] {
        assert!(n >= seeds, "only {n} {what} in {seeds} runs: {tally:?}");
    }
}
