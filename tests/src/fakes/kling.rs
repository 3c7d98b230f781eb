//! A fake Kling API (providers.md §1): create, query by task id or `external_task_id`,
//! list, and result download, with JWT bearer auth accepted as is. Tasks finish after a
//! scripted number of polls. Any step can be made to hang (the answer never comes), so a
//! test can SIGKILL the worker inside that step.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

/// Where a call can be made to hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hang {
    /// Nothing hangs.
    Never,
    /// A create is recorded (the task exists and will be billed), then never answered.
    CreateAfterAccept,
    /// Status queries are never answered.
    Status,
    /// Result downloads are never answered.
    Download,
}

/// A create answered wrongly (one per create, in the order given).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateFault {
    /// HTTP 429 code 1303 (concurrency over the resource pack): no task made.
    RateLimited,
    /// HTTP 500 code 5000: no task made (the caller cannot know that).
    ServerError,
    /// The task is made (and will be billed), then the connection breaks before the
    /// answer.
    LostAfterAccept,
    /// HTTP 400 code 1301: the content-security policy refused the prompt.
    Refused,
}

/// A status query answered wrongly (one per query, in the order given); it does not
/// count as a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollFault {
    /// HTTP 429 code 1302 (request rate too high).
    RateLimited,
    /// HTTP 500 code 5000.
    ServerError,
    /// The connection breaks before the answer.
    Lost,
}

#[derive(Debug)]
struct Task {
    id: String,
    external: String,
    family: String,
    polls: u32,
    created_at: i64,
}

#[derive(Debug)]
struct KlingState {
    tasks: BTreeMap<String, Task>,
    creates: Vec<String>,
    bodies: Vec<Value>,
    downloads: u32,
    hang: Hang,
    polls_to_finish: u32,
    base_url: String,
    next_id: u64,
    /// Bytes of each result download (`None`: a short text).
    result_size: Option<usize>,
    /// Status queries still to answer with HTTP 500.
    failing_polls: u32,
    create_faults: std::collections::VecDeque<CreateFault>,
    poll_faults: std::collections::VecDeque<PollFault>,
    /// Tasks end `failed` (the output failed moderation) instead of `succeed`.
    fail_tasks: bool,
}

/// The fake and its recordings.
#[derive(Clone, Debug)]
pub struct FakeKling {
    state: Arc<Mutex<KlingState>>,
    /// Where it listens (`KLING_API_URL`).
    pub url: String,
}

impl FakeKling {
    /// Starts the fake; tasks finish after `polls_to_finish` status queries.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(polls_to_finish: u32) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(KlingState {
            tasks: BTreeMap::new(),
            creates: Vec::new(),
            bodies: Vec::new(),
            downloads: 0,
            hang: Hang::Never,
            polls_to_finish,
            base_url: String::new(),
            next_id: 867_283_741_759_000_000,
            result_size: None,
            failing_polls: 0,
            create_faults: std::collections::VecDeque::new(),
            poll_faults: std::collections::VecDeque::new(),
            fail_tasks: false,
        }));
        let router = Router::new()
            .route("/v1/videos/{family}", get(list).post(create))
            .route("/v1/videos/{family}/{id}", get(query))
            .route("/files/{name}", get(download))
            .with_state(state.clone());
        let (url, _task) = super::serve(router).await?;
        lock(&state).base_url.clone_from(&url);
        Ok(Self { state, url })
    }

    /// Makes a step hang from now on.
    pub fn hang(&self, hang: Hang) {
        lock(&self.state).hang = hang;
    }

    /// Tasks finish after this many status queries from now on.
    pub fn finish_after(&self, polls: u32) {
        lock(&self.state).polls_to_finish = polls;
    }

    /// Results are `bytes` long from now on (an MP4 header, then zeros).
    pub fn result_size(&self, bytes: usize) {
        lock(&self.state).result_size = Some(bytes);
    }

    /// The next `n` status queries answer HTTP 500 (Kling's server error), and do not
    /// count as polls.
    pub fn fail_polls(&self, n: u32) {
        lock(&self.state).failing_polls = n;
    }

    /// The next creates are answered with `faults`, one each, in order.
    pub fn fault_creates(&self, faults: impl IntoIterator<Item = CreateFault>) {
        lock(&self.state).create_faults.extend(faults);
    }

    /// The next status queries are answered with `faults`, one each, in order.
    pub fn fault_polls(&self, faults: impl IntoIterator<Item = PollFault>) {
        lock(&self.state).poll_faults.extend(faults);
    }

    /// From now on tasks end `failed` with Kling's risk-control message (the output
    /// was refused) instead of `succeed`.
    pub fn fail_tasks(&self) {
        lock(&self.state).fail_tasks = true;
    }

    /// Tasks made (accepted creates) for the job `external`, whatever their answer.
    #[must_use]
    pub fn tasks_of(&self, external: &str) -> usize {
        lock(&self.state)
            .tasks
            .values()
            .filter(|t| t.external == external)
            .count()
    }

    /// External ids of every create received (accepted or not).
    #[must_use]
    pub fn creates(&self) -> Vec<String> {
        lock(&self.state).creates.clone()
    }

    /// The body of every create received, in order.
    #[must_use]
    pub fn create_bodies(&self) -> Vec<Value> {
        lock(&self.state).bodies.clone()
    }

    /// Downloads served or started.
    #[must_use]
    pub fn downloads(&self) -> u32 {
        lock(&self.state).downloads
    }

    /// Status queries answered or started for the task of `external`.
    #[must_use]
    pub fn polls(&self, external: &str) -> u32 {
        lock(&self.state)
            .tasks
            .values()
            .filter(|t| t.external == external)
            .map(|t| t.polls)
            .sum()
    }
}

fn lock(state: &Mutex<KlingState>) -> std::sync::MutexGuard<'_, KlingState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

fn envelope(data: Value) -> Response {
    Json(json!({"code": 0, "message": "SUCCEED", "request_id": uuid::Uuid::new_v4().to_string(), "data": data}))
        .into_response()
}

/// Kling's error envelope with `status`.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message, "request_id": uuid::Uuid::new_v4().to_string()})),
    )
        .into_response()
}

/// Headers go out, then the body fails: the connection drops mid-answer.
fn broken() -> Response {
    let body = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("connection dropped"))
    });
    (
        [("content-type", "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 1203, "message": "resource not found", "request_id": uuid::Uuid::new_v4().to_string()})),
    )
        .into_response()
}

fn task_json(t: &Task, state: &KlingState) -> Value {
    let finished = t.polls >= state.polls_to_finish;
    let failed = finished && state.fail_tasks;
    let mut task = json!({
        "task_id": t.id,
        "task_status": if failed { "failed" } else if finished { "succeed" } else if t.polls == 0 { "submitted" } else { "processing" },
        "task_status_msg": if failed { "Failure to pass the risk control system" } else { "" },
        "task_info": {"external_task_id": t.external},
        "created_at": t.created_at,
        "updated_at": now_ms(),
    });
    if finished && !failed {
        task["final_unit_deduction"] = json!("1");
        task["task_result"] = json!({"videos": [{"id": format!("v-{}", t.id), "url": format!("{}/files/{}.mp4", state.base_url, t.id), "duration": "5.1"}]});
    }
    task
}

async fn create(
    State(state): State<Arc<Mutex<KlingState>>>,
    Path(family): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let external = body["external_task_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (task, hang, fault) = {
        let mut s = lock(&state);
        s.creates.push(external.clone());
        s.bodies.push(body.clone());
        // `aspect_ratio` is `16:9`, `9:16` or `1:1`, and only for text → video
        // (providers.md §1.6): anything else is a parameter error.
        if let Some(ratio) = body.get("aspect_ratio") {
            let known = ratio
                .as_str()
                .is_some_and(|r| ["16:9", "9:16", "1:1"].contains(&r));
            if !known || family != "text2video" {
                return error(StatusCode::BAD_REQUEST, 1201, "aspect_ratio is invalid");
            }
        }
        let fault = s.create_faults.pop_front();
        match fault {
            Some(CreateFault::RateLimited) => {
                return error(
                    StatusCode::TOO_MANY_REQUESTS,
                    1303,
                    "parallel task over resource pack limit",
                );
            }
            Some(CreateFault::ServerError) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    5000,
                    "server internal error",
                );
            }
            Some(CreateFault::Refused) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    1301,
                    "Failure to pass the risk control system",
                );
            }
            Some(CreateFault::LostAfterAccept) | None => {}
        }
        s.next_id += 1;
        let task = Task {
            id: s.next_id.to_string(),
            external,
            family,
            polls: 0,
            created_at: now_ms(),
        };
        let json = task_json(&task, &s);
        s.tasks.insert(task.id.clone(), task);
        (json, s.hang, fault)
    };
    if hang == Hang::CreateAfterAccept {
        std::future::pending::<()>().await;
    }
    if fault == Some(CreateFault::LostAfterAccept) {
        return broken();
    }
    envelope(task)
}

async fn query(
    State(state): State<Arc<Mutex<KlingState>>>,
    Path((family, id)): Path<(String, String)>,
) -> Response {
    let (answer, hang) = {
        let mut s = lock(&state);
        match s.poll_faults.pop_front() {
            Some(PollFault::RateLimited) => {
                return error(StatusCode::TOO_MANY_REQUESTS, 1302, "request rate too high");
            }
            Some(PollFault::ServerError) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    5000,
                    "server internal error",
                );
            }
            Some(PollFault::Lost) => return broken(),
            None => {}
        }
        if s.failing_polls > 0 {
            s.failing_polls -= 1;
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"code": 5000, "message": "server internal error", "request_id": uuid::Uuid::new_v4().to_string()})),
            )
                .into_response();
        }
        let hang = s.hang;
        let found = s
            .tasks
            .values()
            .find(|t| (t.id == id || t.external == id) && t.family == family)
            .map(|t| t.id.clone());
        let Some(task_id) = found else {
            return not_found();
        };
        if let Some(t) = s.tasks.get_mut(&task_id) {
            // A lookup by external id is not a poll; a query by task id is.
            if t.id == id {
                t.polls += 1;
            }
        }
        let answer = s.tasks.get(&task_id).map(|t| task_json(t, &s));
        (answer, hang)
    };
    if hang == Hang::Status {
        std::future::pending::<()>().await;
    }
    answer.map_or_else(not_found, envelope)
}

async fn list(
    State(state): State<Arc<Mutex<KlingState>>>,
    Path(family): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let s = lock(&state);
    let page: usize = params
        .get("pageNum")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let size: usize = params
        .get("pageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30);
    let mut tasks: Vec<&Task> = s.tasks.values().filter(|t| t.family == family).collect();
    tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let items: Vec<Value> = tasks
        .into_iter()
        .skip((page.max(1) - 1) * size)
        .take(size)
        .map(|t| task_json(t, &s))
        .collect();
    envelope(Value::Array(items))
}

async fn download(
    State(state): State<Arc<Mutex<KlingState>>>,
    Path(name): Path<String>,
) -> Response {
    let (hang, size) = {
        let mut s = lock(&state);
        s.downloads += 1;
        (s.hang, s.result_size)
    };
    if hang == Hang::Download {
        std::future::pending::<()>().await;
    }
    let body = match size {
        Some(size) => {
            let mut bytes = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00".to_vec();
            bytes.resize(size.max(bytes.len()), 0);
            bytes
        }
        None => format!("fake mp4 for {name}").into_bytes(),
    };
    ([("content-type", "video/mp4")], body).into_response()
}
