//! What `rei-bot` runs: the workers alone (`rei-bot worker`) or everything
//! (`rei-bot run`): the HTTP server, the Telegram front end, the payment poller, the
//! workers and the outbox dispatcher, until shutdown.

use tokio_util::sync::CancellationToken;

use super::build::{App, NOTICE_ROUND, process_name};
use super::{AppError, TelegramMode};
use crate::inbound::http::{AdminPages, KlingHooks, Metrics, SandboxPages, WebState};
use crate::inbound::telegram::{TelegramWebhook, UpdateSource};

impl App {
    /// Warns once of the provider features that are off for lack of credentials.
    fn warn_disabled(&mut self) {
        for feature in self.disabled.drain(..) {
            tracing::warn!(feature, "feature disabled");
        }
    }

    /// Workers (and the queue's background sweep, the wake listener, the asset sweep and
    /// the outbox dispatcher) until shutdown.
    ///
    /// # Errors
    /// [`AppError::NoBot`] without `BOT_TOKEN`; [`AppError::Panicked`] when a task
    /// panicked.
    pub async fn run_workers(mut self, shutdown: CancellationToken) -> Result<(), AppError> {
        self.warn_disabled();
        let bot = self.bot.ok_or(AppError::NoBot)?;
        let maintenance = self.backends.spawn_maintenance(shutdown.clone());
        let wakeups = bot.worker.wakeups();
        let listener = self.backends.spawn_wake_listener(
            move |job| {
                wakeups.wake(job);
            },
            shutdown.clone(),
        );
        // Every process sends the outbox's notices (money notices survive a crash
        // between their commit and the send: they wait there).
        let notices = tokio::spawn(crate::inbound::notices::send_notices(
            bot.notices,
            self.backends.stores.outbox_signal.clone(),
            NOTICE_ROUND,
            shutdown.clone(),
        ));
        let prices = tokio::spawn(crate::inbound::prices::refresh_prices(
            self.services.prices.clone(),
            self.prices_every,
            shutdown.clone(),
        ));
        let sweeper = tokio::spawn(crate::inbound::worker::sweep_assets_daily(
            self.services.jobs,
            self.assets,
            self.retention,
            shutdown.clone(),
        ));
        bot.worker.run(shutdown).await;
        maintenance
            .await
            .map_err(|_| AppError::Panicked("queue maintenance"))?;
        listener
            .await
            .map_err(|_| AppError::Panicked("the wake listener"))?;
        sweeper
            .await
            .map_err(|_| AppError::Panicked("the asset sweep"))?;
        notices
            .await
            .map_err(|_| AppError::Panicked("the outbox dispatcher"))?;
        prices
            .await
            .map_err(|_| AppError::Panicked("the price refresher"))?;
        Ok(())
    }

    /// The whole bot: the HTTP server (on `HTTP_ADDR`; port 0 picks a free port, logged
    /// as "HTTP server listening"), the Telegram front end (long polling or webhook),
    /// the payment poller and the workers. A front end that stops (a second poller on
    /// the token) stops everything.
    ///
    /// # Errors
    /// [`AppError`]: no `BOT_TOKEN`, the address taken, the front end stopped, a task
    /// panicked, the HTTP server failed.
    pub async fn run_all(mut self, shutdown: CancellationToken) -> Result<(), AppError> {
        self.warn_disabled();
        let bot = self.bot.as_ref().ok_or(AppError::NoBot)?;
        let metrics = Metrics::install()?;
        let addr = self.http.addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Listen { addr, source })?;
        if let Some(checkout) = &self.sandbox {
            // Without PUBLIC_URL the checkout page is on this machine, at the bound port.
            if self.public_url.is_none()
                && let Ok(bound) = listener.local_addr()
                && let Ok(base) = super::providers::base_of(bound)
            {
                checkout.set_base_url(base);
            }
            tracing::warn!(
                "SANDBOX=1: no paid provider is called; images and videos are placeholders, top-ups are play money"
            );
        }
        let (telegram, source) = match (bot.telegram_mode, &self.public_url) {
            (TelegramMode::Webhook, Some(base)) => {
                let url = base
                    .join("webhooks/telegram")
                    .map_err(|e| AppError::setting("PUBLIC_URL", e))?;
                let (hook, updates) = TelegramWebhook::new(bot.webhook_secret.clone());
                let source = UpdateSource::Webhook {
                    url,
                    secret: bot.webhook_secret.clone(),
                    updates,
                };
                (Some(hook), source)
            }
            _ => (None, UpdateSource::Polling),
        };
        let offered = self
            .payments_offered
            .then(|| self.services.payments.clone());
        let kling = self.http.kling_callbacks.clone().map(|key| KlingHooks {
            jobs: self.services.jobs.clone(),
            wakeups: bot.worker.wakeups(),
            key,
        });
        let web = WebState {
            backends: self.backends.clone(),
            payments: offered.clone().filter(|p| p.has_gateway()),
            yookassa_ips: self.http.yookassa_ips.clone(),
            trusted_proxies: self.http.trusted_proxies.clone(),
            telegram,
            kling,
            metrics: Some(metrics),
            metrics_ips: self.http.metrics_ips.clone(),
            admin: Some(self.services.admin.clone()),
            assets: self.public_url.is_some().then(|| self.assets.clone()),
            admin_web: self.admin_web.then(|| {
                AdminPages::new(
                    self.services.web.clone(),
                    self.services.admin.clone(),
                    self.public_url
                        .as_ref()
                        .is_some_and(|u| u.scheme() == "https"),
                )
            }),
            sandbox: self.sandbox.clone().map(|checkout| SandboxPages {
                checkout,
                payments: self.services.payments.clone(),
                users: self.services.users.clone(),
                locales: bot.front.locales.clone(),
            }),
        };
        let http = tokio::spawn(crate::inbound::http::serve(
            listener,
            web,
            self.http.limits,
            shutdown.clone(),
        ));
        let front = tokio::spawn(bot.front.clone().run(source, shutdown.clone()));
        let poller = offered.map(|payments| {
            tokio::spawn(crate::inbound::poller::poll_payments(
                payments,
                self.backends.stores.leases.clone(),
                process_name(),
                self.poll_every,
                shutdown.clone(),
            ))
        });
        let broadcasts = tokio::spawn(crate::inbound::broadcasts::send_broadcasts(
            self.services.broadcasts.clone(),
            bot.broadcaster.clone(),
            self.backends.stores.leases.clone(),
            process_name(),
            bot.send_rate.clone(),
            shutdown.clone(),
        ));
        let workers = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { self.run_workers(shutdown).await })
        };
        let stopped = front
            .await
            .map_err(|_| AppError::Panicked("the Telegram front end"))?;
        // Whatever stopped the front end stops the workers too.
        shutdown.cancel();
        workers
            .await
            .map_err(|_| AppError::Panicked("the workers"))??;
        broadcasts
            .await
            .map_err(|_| AppError::Panicked("the broadcast sender"))?;
        if let Some(poller) = poller {
            poller
                .await
                .map_err(|_| AppError::Panicked("the payment poller"))?;
        }
        http.await
            .map_err(|_| AppError::Panicked("the HTTP server"))?
            .map_err(AppError::Http)?;
        stopped?;
        Ok(())
    }
}
