//! Finding a task Kling may have created though its answer was lost: by its
//! `external_task_id`, then in Kling's task list (newest first, bounded).

use super::*;

/// Tasks per page of the task list read when a lookup does not show a job's task (the
/// largest `pageSize` Kling accepts, providers.md §1.4).
pub(super) const LIST_PAGE_SIZE: u32 = 500;

/// Pages of the task list read at most: with [`LIST_PAGE_SIZE`], the 2000 newest tasks.
pub(super) const LIST_MAX_PAGES: u32 = 4;

/// How far back the task list is read: a page that ends with tasks older than this ends
/// the search (a job's task is created minutes, not days, before it is searched for).
pub(super) const LIST_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The endpoint family of a mode (providers.md §1.4).
pub(super) const fn family(mode: VideoMode) -> &'static str {
    match mode {
        VideoMode::TextToVideo => "text2video",
        VideoMode::ImageToVideo => "image2video",
        VideoMode::VideoToVideo => "omni-video",
    }
}

/// What the lookup by `external_task_id` said.
#[derive(Debug)]
pub(super) enum Lookup {
    /// The job's task.
    Found(ProviderTaskId),
    /// "No such task": HTTP 404 or code 1203.
    NotFound,
    /// An answer that shows no task of this job without saying there is none (another
    /// job's task, a task without `external_task_id`, another 4xx, a malformed body); the
    /// text says what came back.
    Unclear(String),
}

/// What one page of the task list says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Scan {
    /// The `task_id` of the job's task.
    Found(String),
    /// No later page can hold the task: the list ended, or this page, newest first, ends
    /// with tasks older than the window.
    End,
    /// The next page may hold it.
    More,
}

/// Looks for `external` on one page of the task list. The list order is not documented:
/// the age rule applies only to a page whose `created_at` never increases (newest first),
/// so a list in any other order is read to its end or to the page budget.
pub(super) fn scan_page(
    tasks: Vec<wire::Task>,
    external: &str,
    page_size: usize,
    oldest_ms: i64,
) -> Scan {
    let last_page = tasks.len() < page_size;
    let created: Option<Vec<i64>> = tasks.iter().map(|t| t.created_at).collect();
    let reaches_old_tasks = created.is_some_and(|created| {
        created.windows(2).all(|pair| pair[0] >= pair[1])
            && created.last().is_some_and(|&last| last < oldest_ms)
    });
    match tasks
        .into_iter()
        .find(|t| t.external_task_id() == Some(external))
    {
        Some(task) => Scan::Found(task.task_id),
        None if last_page || reaches_old_tasks => Scan::End,
        None => Scan::More,
    }
}

/// Now in Unix milliseconds, Kling's timestamps.
pub(super) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl KlingClient {
    /// The task created for this job, if any: looked up by `external_task_id`, then, when
    /// that answer does not show the task, searched for in the task list. `Ok(None)` only
    /// when the lookup said "not found" and the list holds no such task either.
    pub(super) async fn find(
        &self,
        family: &'static str,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        let unclear = match self.lookup(family, job).await? {
            Lookup::Found(task) => return Ok(Some(task)),
            Lookup::NotFound => None,
            Lookup::Unclear(why) => Some(why),
        };
        if let Some(task) = self.search_list(family, job).await? {
            tracing::info!(
                provider = PROVIDER,
                task_id = %task,
                "found the job's task in Kling's task list"
            );
            return Ok(Some(task));
        }
        match unclear {
            None => Ok(None),
            Some(why) => Err(ProviderError::Unknown {
                message: format!(
                    "cannot tell whether Kling has a task for job {job}: the lookup {why}, \
                     and the task list has none"
                ),
            }),
        }
    }

    /// `GET /v1/videos/<family>/<job id>`: what Kling says about the task created for this
    /// job. Failures of the service (timeouts, 5xx, rate limits, auth) are errors; answers
    /// that show no task of this job are [`Lookup::NotFound`] or [`Lookup::Unclear`].
    pub(super) async fn lookup(
        &self,
        family: &'static str,
        job: JobId,
    ) -> Result<Lookup, ProviderError> {
        let external = job.to_string();
        let path = format!("/v1/videos/{family}/{external}");
        let task = match self.send::<wire::Task>(Method::GET, &path, &[], None).await {
            Ok(task) => task,
            // Any 404 (with or without Kling's envelope) and code 1203 say "no such task"
            // (the exact answer is unconfirmed; docs/providers.md). The list confirms it.
            Err(KlingFailure::Provider { code, status, .. })
                if status == Some(404) || code == Some(1203) =>
            {
                tracing::info!(
                    provider = PROVIDER,
                    http_status = status,
                    kling_code = code,
                    "Kling's lookup has no task for this job; reading the task list"
                );
                return Ok(Lookup::NotFound);
            }
            Err(failure) => {
                return match failure.into_error() {
                    ProviderError::InvalidRequest { message }
                    | ProviderError::Unknown { message } => {
                        tracing::warn!(
                            provider = PROVIDER,
                            error = %message,
                            "Kling's lookup answer shows no task; reading the task list"
                        );
                        Ok(Lookup::Unclear(format!("answered `{message}`")))
                    }
                    error => Err(error),
                };
            }
        };
        match task.external_task_id() {
            Some(found) if found == external => task_id(task.task_id).map(Lookup::Found),
            found => {
                let why = found.map_or_else(
                    || "returned a task without external_task_id".to_owned(),
                    |found| format!("returned the task of `{}`", client::truncate(found, 64)),
                );
                tracing::warn!(
                    provider = PROVIDER,
                    task_id = %client::truncate(&task.task_id, 64),
                    "Kling's lookup {why}; reading the task list"
                );
                Ok(Lookup::Unclear(why))
            }
        }
    }

    /// Reads the task list (`GET /v1/videos/<family>?pageNum=N&pageSize=500`, newest first)
    /// for the task whose `external_task_id` is the job id.
    ///
    /// `Ok(None)` once the list ends, or once a page in newest-first order ends with tasks
    /// older than [`LIST_WINDOW`]. A failing page, or [`LIST_MAX_PAGES`] pages without
    /// either end, is an error: the task may exist.
    pub(super) async fn search_list(
        &self,
        family: &'static str,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        let external = job.to_string();
        let path = format!("/v1/videos/{family}");
        let oldest = now_millis().saturating_sub(millis(LIST_WINDOW));
        let page_size = usize::try_from(LIST_PAGE_SIZE).unwrap_or(usize::MAX);
        for page in 1..=LIST_MAX_PAGES {
            let query = [("pageNum", page), ("pageSize", LIST_PAGE_SIZE)];
            let tasks = self
                .send::<Vec<wire::Task>>(Method::GET, &path, &query, None)
                .await
                .map_err(KlingFailure::into_error)?;
            match scan_page(tasks, &external, page_size, oldest) {
                Scan::Found(id) => return task_id(id).map(Some),
                Scan::End => {
                    tracing::info!(
                        provider = PROVIDER,
                        pages = page,
                        "Kling's task list has no task for this job"
                    );
                    return Ok(None);
                }
                Scan::More => {}
            }
        }
        Err(ProviderError::Unknown {
            message: format!(
                "the {LIST_MAX_PAGES} newest pages of Kling's task list hold no task of job \
                 {external} but do not reach tasks older than a day: a task may exist"
            ),
        })
    }
}
