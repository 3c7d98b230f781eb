//! Kling against a fake that speaks providers.md §1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use rei_adapters::outbound::files::AssetStore;
use rei_adapters::outbound::kling::{self, KlingClient, KlingConfig, KlingCredentials, KlingMode};
use rei_core::ids::{JobId, ProviderTaskId};
use rei_core::job::VideoMode;
use rei_core::ports::{
    ImageInput, ProviderError, ProviderErrorKind, VideoGenerator, VideoInput, VideoRequest,
    VideoTaskStatus,
};
use rei_core::pricing::{AspectRatio, VideoDuration};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

use crate::support::{
    LogCapture, RawAnswer, RawServer, TestRecorder, Then, chunked, fast_retry, job, jpeg,
    json_reply, png, requests, respond, respond_first, respond_once,
};

const AK: &str = "ak-test-access-key";
const SK: &str = "sk-test-secret-key-0123456789";
const TASK: &str = "867283741759111202";

struct Fixture {
    server: MockServer,
    dir: TempDir,
    client: KlingClient,
}

async fn fixture() -> Fixture {
    fixture_with(|_| {}).await
}

async fn fixture_with(edit: impl FnOnce(&mut KlingConfig)) -> Fixture {
    let server = MockServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials =
        KlingCredentials::new(SecretString::from(AK), SecretString::from(SK)).unwrap();
    let mut config = KlingConfig::new(credentials);
    config.base_url = server.uri();
    config.retry = fast_retry(3);
    edit(&mut config);
    let client = KlingClient::new(config, AssetStore::new(dir.path())).unwrap();
    Fixture {
        server,
        dir,
        client,
    }
}

impl Fixture {
    /// Submits a text-to-video request of `job` on `model`.
    async fn submit_text(&self, job: JobId, model: &str) -> Result<ProviderTaskId, ProviderError> {
        self.client.submit(&text_request(job, model)).await
    }

    /// Answers the first `n` creates with `refusal` and the next with the create envelope,
    /// then submits a text-to-video request of `job`.
    async fn submit_after(&self, n: u64, refusal: ResponseTemplate, job: JobId) -> ProviderTaskId {
        respond_first(&self.server, "POST", n, refusal).await;
        respond(&self.server, "POST", created(job)).await;
        self.submit_text(job, "kling-v3").await.unwrap()
    }

    /// The JSON body of the first request the server received.
    async fn first_body(&self) -> Value {
        requests(&self.server).await[0].body_json().unwrap()
    }

    /// Serves `account`'s task list behind a lookup that finds nothing, then asks for the
    /// task of `job`.
    async fn find_via_list(
        &self,
        account: &Account,
        mode: VideoMode,
        job: JobId,
    ) -> Result<Option<ProviderTaskId>, ProviderError> {
        let family = family(mode);
        mount_lookup_not_found(&self.server, family, job).await;
        account.mount_list(&self.server, family).await;
        self.client.find_by_job(mode, job).await
    }
}

/// The path segment of `mode`'s endpoints.
fn family(mode: VideoMode) -> &'static str {
    match mode {
        VideoMode::TextToVideo => "text2video",
        VideoMode::ImageToVideo => "image2video",
        VideoMode::VideoToVideo => "omni-video",
    }
}

/// The request line of the lookup of `job`'s task by its `external_task_id`.
fn lookup(family: &str, job: JobId) -> String {
    format!("GET /v1/videos/{family}/{job}")
}

fn text_request(job: JobId, model: &str) -> VideoRequest {
    VideoRequest {
        job_id: job,
        mode: VideoMode::TextToVideo,
        model: model.to_owned(),
        duration: VideoDuration::Five,
        prompt: "A red fox running through snowy forest, cinematic".to_owned(),
        input: VideoInput::None,
        callback_url: None,
        aspect: None,
    }
}

fn image_request(job: JobId, bytes: Vec<u8>) -> VideoRequest {
    VideoRequest {
        mode: VideoMode::ImageToVideo,
        model: "kling-v1-5".to_owned(),
        duration: VideoDuration::Ten,
        prompt: "The astronaut walks away".to_owned(),
        input: VideoInput::Image(ImageInput {
            bytes,
            mime_type: "image/jpeg".to_owned(),
        }),
        ..text_request(job, "kling-v1-5")
    }
}

/// A video-to-video edit of the video at `url`.
fn edit_request(job: JobId, model: &str, prompt: String, url: &str) -> VideoRequest {
    VideoRequest {
        mode: VideoMode::VideoToVideo,
        model: model.to_owned(),
        prompt,
        input: VideoInput::VideoUrl(url.to_owned()),
        ..text_request(job, model)
    }
}

/// The create envelope of §1.7 for `job`'s task.
fn created(job: JobId) -> ResponseTemplate {
    json_reply(
        200,
        json!({"code": 0, "message": "SUCCEED", "request_id": "c0656403-1e6e-4b7e-b8f8-2cdd2595f2b9",
               "data": {"task_id": TASK, "task_status": "submitted", "task_info": {"external_task_id": job.to_string()},
                        "created_at": 1_774_805_076_166_i64, "updated_at": 1_774_805_076_166_i64}}),
    )
}

fn task(job: JobId, status: &str, extra: Value) -> Value {
    let mut data = json!({"task_id": TASK, "task_status": status, "task_status_msg": "", "task_info": {"external_task_id": job.to_string()},
                          "watermark_info": {"enabled": false}, "created_at": 1_774_805_076_166_i64, "updated_at": 1_774_805_161_002_i64});
    if let (Some(data), Some(extra)) = (data.as_object_mut(), extra.as_object()) {
        data.extend(extra.clone());
    }
    json!({"code": 0, "message": "SUCCEED", "request_id": "5d1d0e4b-0f8a-4ad3-9f55-3c1f1a2b3c4d", "data": data})
}

/// A Kling error answer: HTTP `status` with the error envelope of `code`.
fn kling_error(status: u16, code: i64, message: &str) -> ResponseTemplate {
    json_reply(
        status,
        json!({"code": code, "message": message, "request_id": "9984d27b-2a6f-4b1f-a7d5-0e4f4c0d9a11"}),
    )
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    exp: u64,
    nbf: u64,
}

/// The Bearer JWT of a request and its claims, its HS256 signature (with SK) and issuer
/// verified.
fn jwt(request: &Request) -> (String, Claims) {
    let auth = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let decode = |part: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap()
    };
    let header: serde_json::Value = serde_json::from_slice(&decode(parts[0])).unwrap();
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SK.as_bytes()).unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&decode(parts[2])).expect("signed with SK");
    }
    let claims: Claims = serde_json::from_slice(&decode(parts[1])).unwrap();
    assert_eq!(claims.iss, AK);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // As a verifier with a minute's leeway would: valid now.
    assert!(claims.nbf <= now + 60, "not yet valid: nbf {}", claims.nbf);
    assert!(
        claims.exp > now.saturating_sub(60),
        "expired: exp {}",
        claims.exp
    );
    (token.to_owned(), claims)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Decodes and verifies the Bearer JWT of a request: HS256 signed with SK, `iss` = AK,
/// `exp` ≈ now + 1800, `nbf` ≈ now − 5.
fn check_jwt(request: &Request) -> String {
    let (token, claims) = jwt(request);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_eq!(claims.iss, AK);
    assert!(
        claims.exp.abs_diff(now + 1800) <= 5,
        "exp {} vs now {now}",
        claims.exp
    );
    assert!(
        claims.nbf.abs_diff(now - 5) <= 5,
        "nbf {} vs now {now}",
        claims.nbf
    );
    token
}

// ---------------------------------------------------------------- create: every mode

#[tokio::test]
async fn text_to_video_posts_the_documented_body_with_a_valid_jwt() {
    let f = fixture().await;
    let job = job(1);
    respond_once(&f.server, "POST /v1/videos/text2video", created(job)).await;

    let task = f.submit_text(job, "kling-v3").await.unwrap();

    assert_eq!(task.as_str(), TASK);
    let sent = requests(&f.server).await;
    assert_eq!(
        sent[0].headers.get("content-type").unwrap(),
        "application/json"
    );
    check_jwt(&sent[0]);
    let body: Value = sent[0].body_json().unwrap();
    assert_eq!(
        body,
        json!({"model_name": "kling-v3", "prompt": "A red fox running through snowy forest, cinematic", "mode": "std",
               "duration": "5", "external_task_id": job.to_string()})
    );
}

#[tokio::test]
async fn a_chosen_shape_is_sent_as_aspect_ratio_and_a_shape_kling_lacks_is_refused_unsent() {
    let f = fixture().await;
    let job = job(11);
    respond_once(&f.server, "POST /v1/videos/text2video", created(job)).await;
    let mut request = text_request(job, "kling-v2-6");
    request.aspect = Some(AspectRatio::Tall9x16);
    f.client.submit(&request).await.unwrap();
    let body = f.first_body().await;
    assert_eq!(body["aspect_ratio"], "9:16");
    assert_eq!(body["model_name"], "kling-v2-6");
    // 21:9 is an image shape only: refused here, nothing sent.
    request.aspect = Some(AspectRatio::Cinema21x9);
    let refused = f.client.submit(&request).await.unwrap_err();
    assert_eq!(
        refused.kind(),
        ProviderErrorKind::InvalidRequest,
        "{refused:?}"
    );
    assert_eq!(requests(&f.server).await.len(), 1);
}

#[tokio::test]
async fn image_to_video_sends_raw_base64_without_data_prefix() {
    let f = fixture_with(|c| c.mode = KlingMode::Pro).await;
    let job = job(2);
    respond_once(&f.server, "POST /v1/videos/image2video", created(job)).await;
    let image = jpeg(1280, 720);

    f.client
        .submit(&image_request(job, image.clone()))
        .await
        .unwrap();

    let body: Value = f.first_body().await;
    let sent_image = body["image"].as_str().unwrap();
    assert!(!sent_image.starts_with("data:"));
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(sent_image)
            .unwrap(),
        image
    );
    assert_eq!(body["model_name"], "kling-v1-5");
    assert_eq!(body["duration"], "10");
    assert_eq!(body["mode"], "pro");
    assert_eq!(body["prompt"], "The astronaut walks away");
    assert_eq!(body["external_task_id"], job.to_string());
}

#[tokio::test]
async fn video_to_video_edits_through_the_omni_endpoint_with_a_callback() {
    let f = fixture_with(|c| c.public_url = Some("https://bot.example.com/".to_owned())).await;
    let (job, other_job) = (job(3), job(4));
    respond_once(&f.server, "POST /v1/videos/omni-video", created(job)).await;
    let request = edit_request(
        job,
        "kling-v3",
        "Turn <<<video_1>>> into a watercolor animation".to_owned(),
        "https://bot.example.com/assets/s3cr3t/in.mp4",
    );

    f.client.submit(&request).await.unwrap();

    let body: Value = f.first_body().await;
    // The callback URL names the job and carries a token only REI can make.
    let key = KlingCredentials::new(SecretString::from(AK), SecretString::from(SK))
        .unwrap()
        .callback_key();
    let callback = format!(
        "https://bot.example.com/webhooks/kling?job={job}&t={}",
        key.token(job)
    );
    assert!(key.verify(job, &key.token(job)));
    assert!(
        !key.verify(other_job, &key.token(job)),
        "one job's token only"
    );
    assert_eq!(
        body,
        json!({"model_name": "kling-v3-omni", "prompt": "Turn <<<video_1>>> into a watercolor animation",
               "video_list": [{"video_url": "https://bot.example.com/assets/s3cr3t/in.mp4", "refer_type": "base", "keep_original_sound": "no"}],
               "mode": "std", "sound": "off", "callback_url": callback,
               "external_task_id": job.to_string()})
    );
}

#[tokio::test]
async fn a_prompt_without_the_video_reference_gets_one() {
    let f = fixture().await;
    let job = job(4);
    respond(&f.server, "POST /v1/videos/omni-video", created(job)).await;
    let prompt = "make it a watercolor".to_owned();
    let request = edit_request(
        job,
        "kling-video-o1",
        prompt,
        "https://bot.example.com/in.mp4",
    );
    f.client.submit(&request).await.unwrap();
    let body: Value = f.first_body().await;
    assert_eq!(body["prompt"], "Edit <<<video_1>>>: make it a watercolor");
    assert_eq!(
        body["model_name"], "kling-video-o1",
        "an omni model asked for explicitly is kept"
    );
}

#[tokio::test]
async fn the_omni_prefix_counts_against_the_prompt_limit() {
    let f = fixture().await;
    let job = job(40);
    respond(&f.server, "POST /v1/videos/omni-video", created(job)).await;
    let edit = |chars: usize| {
        let prompt = "a".repeat(chars);
        edit_request(
            job,
            "kling-v3-omni",
            prompt,
            "https://bot.example.com/in.mp4",
        )
    };
    // "Edit <<<video_1>>>: " is 20 characters: 2481 + 20 = 2501 > 2500.
    let err = f.client.submit(&edit(2481)).await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::InvalidRequest, "{err:?}");
    assert!(requests(&f.server).await.is_empty(), "nothing is sent");

    f.client.submit(&edit(2480)).await.unwrap();
    let body: Value = f.first_body().await;
    assert_eq!(body["prompt"].as_str().unwrap().chars().count(), 2500);
}

// ---------------------------------------------------------------- checks before any money is spent

#[tokio::test]
async fn kling_1_5_cannot_do_text_to_video_and_nothing_is_sent() {
    let f = fixture().await;
    let err = f.submit_text(job(5), "kling-v1-5").await.unwrap_err();
    let ProviderError::InvalidRequest { message } = err else {
        panic!("expected InvalidRequest, got {err:?}")
    };
    assert!(message.contains("kling-v3, kling-v2-6"), "{message}");
    assert!(requests(&f.server).await.is_empty());
    assert!(!f.client.models()[2].supports(VideoMode::TextToVideo));
}

#[tokio::test]
async fn unusable_images_are_refused_before_sending() {
    let f = fixture().await;
    let mut huge = png(2000, 2000);
    huge.resize(10 * 1024 * 1024 + 1, 0);
    for image in [
        b"GIF89a\x01\x00\x01\x00".to_vec(),
        png(200, 200),
        jpeg(3000, 1000),
        huge,
    ] {
        let err = f
            .client
            .submit(&image_request(job(6), image))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::InvalidRequest, "{err:?}");
    }
    let wrong_input = VideoRequest {
        input: VideoInput::None,
        ..image_request(job(6), png(500, 500))
    };
    assert_eq!(
        f.client.submit(&wrong_input).await.unwrap_err().kind(),
        ProviderErrorKind::InvalidRequest
    );
    assert!(requests(&f.server).await.is_empty());
}

// ---------------------------------------------------------------- query

#[tokio::test]
async fn task_states_map_to_video_task_status() {
    let f = fixture().await;
    let job = job(7);
    let id = ProviderTaskId::new(TASK).unwrap();
    let cases = [
        (
            task(job, "submitted", json!({})),
            VideoTaskStatus::Submitted,
        ),
        (
            task(job, "processing", json!({})),
            VideoTaskStatus::Processing,
        ),
        (
            task(
                job,
                "succeed",
                json!({"final_unit_deduction": "2", "task_result": {"videos": [{"id": "a1b2c3d4", "url": "https://p1.a.kwimgs.com/bs2/output.mp4", "watermark_url": "", "duration": "5.1"}]}}),
            ),
            VideoTaskStatus::Succeeded {
                url: "https://p1.a.kwimgs.com/bs2/output.mp4".to_owned(),
                duration_ms: Some(5_100),
            },
        ),
        (
            task(
                job,
                "failed",
                json!({"task_status_msg": "Failure to pass the risk control system"}),
            ),
            VideoTaskStatus::Failed {
                message: "Failure to pass the risk control system".to_owned(),
            },
        ),
    ];
    for (answer, expected) in cases {
        f.server.reset().await;
        respond_once(
            &f.server,
            &format!("GET /v1/videos/image2video/{TASK}"),
            json_reply(200, answer),
        )
        .await;
        assert_eq!(
            f.client.status(VideoMode::ImageToVideo, &id).await.unwrap(),
            expected
        );
        check_jwt(&requests(&f.server).await[0]);
    }
}

#[tokio::test]
async fn a_success_without_a_video_or_an_unknown_state_is_an_unknown_error() {
    let f = fixture().await;
    let id = ProviderTaskId::new(TASK).unwrap();
    for answer in [
        task(job(8), "succeed", json!({"task_result": {"videos": []}})),
        task(job(8), "exploded", json!({})),
    ] {
        f.server.reset().await;
        respond(&f.server, "GET", json_reply(200, answer)).await;
        assert_eq!(
            f.client
                .status(VideoMode::TextToVideo, &id)
                .await
                .unwrap_err()
                .kind(),
            ProviderErrorKind::Unknown
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_clear_errors_not_panics() {
    let f = fixture().await;
    let id = ProviderTaskId::new(TASK).unwrap();
    let bodies = [
        "<html>502 Bad Gateway</html>".to_owned(),
        r#"{"code":0,"message":"SUCCEED","data":{"task_id":5}}"#.to_owned(),
        r#"{"code":0,"message":"SUCCEED"}"#.to_owned(),
        r#"{"code":0,"data":{"task_id":"1","task_status":"succeed","task_result":{"videos":"nope"}}}"#.to_owned(),
    ];
    for body in bodies {
        f.server.reset().await;
        respond(
            &f.server,
            "GET",
            ResponseTemplate::new(200).set_body_raw(body.clone(), "application/json"),
        )
        .await;
        let err = f
            .client
            .status(VideoMode::TextToVideo, &id)
            .await
            .unwrap_err();
        let ProviderError::Unknown { message } = &err else {
            panic!("{body}: expected Unknown, got {err:?}")
        };
        assert!(message.contains("Kling"), "{message}");
        assert_eq!(
            requests(&f.server).await.len(),
            1,
            "malformed answers are not retried"
        );
    }
}

// ---------------------------------------------------------------- never pay twice

#[tokio::test]
async fn find_by_job_looks_the_task_up_by_external_task_id() {
    let f = fixture().await;
    let job = job(9);
    respond_once(
        &f.server,
        &lookup("text2video", job),
        json_reply(200, task(job, "processing", json!({}))),
    )
    .await;
    let found = f
        .client
        .find_by_job(VideoMode::TextToVideo, job)
        .await
        .unwrap();
    assert_eq!(found, Some(ProviderTaskId::new(TASK).unwrap()));
}

#[tokio::test]
async fn any_404_lookup_confirmed_by_an_empty_list_is_none() {
    let f = fixture().await;
    let job = job(41);
    for answer in [
        ResponseTemplate::new(404),
        ResponseTemplate::new(404).set_body_raw("<html>Not Found</html>", "text/html"),
        kling_error(404, 1202, "invalid method"),
    ] {
        f.server.reset().await;
        respond_once(&f.server, &lookup("text2video", job), answer).await;
        Account::default().mount_list(&f.server, "text2video").await;
        assert_eq!(
            f.client
                .find_by_job(VideoMode::TextToVideo, job)
                .await
                .unwrap(),
            None
        );
        assert_eq!(list_pages(&f.server, "text2video").await.len(), 1);
    }
}

#[tokio::test]
async fn an_unanswered_create_that_neither_the_lookup_nor_the_list_shows_is_posted_again() {
    let f = fixture().await;
    let job = job(42);
    respond_first(&f.server, "POST", 1, kling_error(504, 5002, "timeout")).await;
    respond(&f.server, "POST", created(job)).await;
    respond_once(
        &f.server,
        &lookup("text2video", job),
        ResponseTemplate::new(404),
    )
    .await;
    Account::default().mount_list(&f.server, "text2video").await;
    let task = f.submit_text(job, "kling-v3").await.unwrap();
    assert_eq!(task.as_str(), TASK);
    assert_eq!(posts(&f.server).await, 2);
    assert_eq!(list_pages(&f.server, "text2video").await.len(), 1);
}

#[tokio::test]
async fn a_lookup_answer_that_shows_no_task_of_the_job_is_never_taken_for_none() {
    let other = job(99);
    let job = job(11);
    let unclear = [
        json_reply(200, task(other, "processing", json!({}))),
        json_reply(200, task(job, "processing", json!({"task_info": {}}))),
        kling_error(400, 1201, "invalid task id"),
        json_reply(200, json!({"code": 0, "message": "SUCCEED"})),
    ];
    for answer in unclear {
        // The list has no task of the job: an error, not None.
        let f = fixture().await;
        respond(&f.server, &lookup("text2video", job), answer.clone()).await;
        Account::default().mount_list(&f.server, "text2video").await;
        let err = f
            .client
            .find_by_job(VideoMode::TextToVideo, job)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ProviderErrorKind::Unknown, "{err:?}");

        // The list has it: found.
        let f = fixture().await;
        respond(&f.server, &lookup("text2video", job), answer).await;
        let account = Account::default();
        let ours = account.add("text2video", &job.to_string(), HOUR);
        account.mount_list(&f.server, "text2video").await;
        assert_eq!(
            f.client
                .find_by_job(VideoMode::TextToVideo, job)
                .await
                .unwrap(),
            Some(ProviderTaskId::new(ours).unwrap())
        );
    }
}

#[tokio::test]
async fn a_create_without_answer_is_looked_up_instead_of_posted_again() {
    let f = fixture().await;
    let job = job(12);
    respond_once(
        &f.server,
        "POST /v1/videos/text2video",
        kling_error(500, 5000, "internal error"),
    )
    .await;
    respond_once(
        &f.server,
        &lookup("text2video", job),
        json_reply(200, task(job, "submitted", json!({}))),
    )
    .await;

    let task = f.submit_text(job, "kling-v2-6").await.unwrap();

    assert_eq!(task.as_str(), TASK);
}

#[tokio::test]
async fn a_create_that_did_not_land_is_posted_again_with_the_same_external_task_id() {
    let f = fixture().await;
    let job = job(13);
    respond_first(
        &f.server,
        "POST /v1/videos/text2video",
        1,
        kling_error(503, 5001, "maintenance"),
    )
    .await;
    respond(&f.server, "POST /v1/videos/text2video", created(job)).await;
    respond_once(
        &f.server,
        &lookup("text2video", job),
        kling_error(404, 1203, "resource not found"),
    )
    .await;
    Account::default().mount_list(&f.server, "text2video").await;

    f.submit_text(job, "kling-v2-6").await.unwrap();

    let posts: Vec<Value> = requests(&f.server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.body_json().unwrap())
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0], posts[1],
        "the retry repeats the body and its external_task_id"
    );
}

// ---------------------------------------------------------------- never pay twice: the task list

/// The fake Kling account: every task it holds, as the list endpoint serves them and as a
/// create that reached Kling adds them (providers.md §1.4, §1.7).
#[derive(Clone, Default)]
struct Account {
    tasks: Arc<Mutex<Vec<(&'static str, Value)>>>,
    next_id: Arc<AtomicU64>,
}

/// What the fake answers to a create that it records.
#[derive(Clone, Copy)]
enum CreateAnswer {
    /// The create envelope of §1.7.
    Created,
    /// The task is created but the answer is lost: HTTP 504, code 5002.
    Lost,
}

impl Account {
    /// Records a `submitted` task of `family` for `external`, created `age` ago; returns
    /// its `task_id`.
    fn add(&self, family: &'static str, external: &str, age: Duration) -> String {
        self.add_task(family, external, age)["task_id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Like [`Self::add`], returning the whole task object.
    fn add_task(&self, family: &'static str, external: &str, age: Duration) -> Value {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let task_id = format!("8672837417{:08}", 59_000_000 + n);
        let created_at = now_millis() - i64::try_from(age.as_millis()).unwrap();
        let task = json!({"task_id": task_id, "task_status": "submitted", "task_status_msg": "",
                          "task_info": {"external_task_id": external}, "created_at": created_at, "updated_at": created_at});
        self.tasks.lock().unwrap().push((family, task.clone()));
        task
    }

    /// `count` tasks of other jobs, created `age` ago.
    fn add_others(&self, family: &'static str, count: usize, age: Duration) {
        for n in 0..count {
            self.add(family, &format!("other-job-{n}"), age);
        }
    }

    /// Serves `GET /v1/videos/<family>?pageNum=&pageSize=` from the account.
    async fn mount_list(&self, server: &MockServer, family: &'static str) {
        respond(
            server,
            &format!("GET /v1/videos/{family}"),
            ListTasks {
                account: self.clone(),
                family,
            },
        )
        .await;
    }

    /// Records every `POST /v1/videos/<family>` as a task and answers `answer`.
    async fn mount_create(&self, server: &MockServer, family: &'static str, answer: CreateAnswer) {
        respond(
            server,
            &format!("POST /v1/videos/{family}"),
            CreateTask {
                account: self.clone(),
                family,
                answer,
            },
        )
        .await;
    }
}

fn now_millis() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// Kling's task list (providers.md §1.4): `pageNum` 1–1000 (default 1), `pageSize` 1–500
/// (default 30), `data` an array of task objects, newest first (the order is unconfirmed;
/// newest first is what the client assumes when it stops at old tasks). Out-of-range
/// parameters are refused with HTTP 400, code 1201.
struct ListTasks {
    account: Account,
    family: &'static str,
}

impl Respond for ListTasks {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let param = |name: &str, default: usize, max: usize| {
            request
                .url
                .query_pairs()
                .find(|(key, _)| key == name)
                .map_or(Some(default), |(_, value)| value.parse().ok())
                .filter(|n| (1..=max).contains(n))
        };
        let (Some(page), Some(size)) = (param("pageNum", 1, 1000), param("pageSize", 30, 500))
        else {
            return kling_error(400, 1201, "pageNum or pageSize out of range");
        };
        let mut tasks: Vec<Value> = self
            .account
            .tasks
            .lock()
            .unwrap()
            .iter()
            .filter(|(family, _)| *family == self.family)
            .map(|(_, task)| task.clone())
            .collect();
        tasks.sort_by_key(|t| std::cmp::Reverse(t["created_at"].as_i64().unwrap()));
        let data: Vec<Value> = tasks
            .into_iter()
            .skip((page - 1) * size)
            .take(size)
            .collect();
        json_reply(
            200,
            json!({"code": 0, "message": "SUCCEED",
            "request_id": "7e2a1c3b-5d4f-4e6a-8b9c-0d1e2f3a4b5c", "data": data}),
        )
    }
}

/// A create that reaches Kling: the task exists whatever the answer says.
struct CreateTask {
    account: Account,
    family: &'static str,
    answer: CreateAnswer,
}

impl Respond for CreateTask {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap();
        let external = body["external_task_id"].as_str().unwrap();
        let task = self.account.add_task(self.family, external, Duration::ZERO);
        match self.answer {
            CreateAnswer::Created => json_reply(
                200,
                json!({"code": 0, "message": "SUCCEED",
                    "request_id": "c0656403-1e6e-4b7e-b8f8-2cdd2595f2b9", "data": task}),
            ),
            CreateAnswer::Lost => kling_error(504, 5002, "timeout, please try again later"),
        }
    }
}

/// `GET /v1/videos/<family>/<job id>` answers 404 / code 1203, as if Kling did not resolve
/// `external_task_id` in the path (the unconfirmed case the list covers).
async fn mount_lookup_not_found(server: &MockServer, family: &str, job: JobId) {
    let not_found = kling_error(404, 1203, "resource not found");
    respond(server, &lookup(family, job), not_found).await;
}

/// The task list of `family` fails with HTTP 500, code 5000.
async fn mount_failing_list(server: &MockServer, family: &str) {
    let failure = kling_error(500, 5000, "internal error");
    respond(server, &format!("GET /v1/videos/{family}"), failure).await;
}

/// The list requests received, as `(pageNum, pageSize)`.
async fn list_pages(server: &MockServer, family: &str) -> Vec<(String, String)> {
    let list_path = format!("/v1/videos/{family}");
    requests(server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path() == list_path)
        .map(|r| {
            let param = |name: &str| {
                r.url
                    .query_pairs()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default()
            };
            (param("pageNum"), param("pageSize"))
        })
        .collect()
}

async fn posts(server: &MockServer) -> usize {
    requests(server)
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count()
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test]
async fn a_task_the_lookup_misses_is_found_in_the_list_and_nothing_is_created() {
    let f = fixture().await;
    let job = job(50);
    let account = Account::default();
    account.add_others("text2video", 3, HOUR);
    let ours = account.add("text2video", &job.to_string(), 2 * HOUR);
    account.add_others("text2video", 2, 3 * HOUR);
    account.add("image2video", &job.to_string(), HOUR);
    account
        .mount_create(&f.server, "text2video", CreateAnswer::Created)
        .await;

    let found = f
        .find_via_list(&account, VideoMode::TextToVideo, job)
        .await
        .unwrap();

    assert_eq!(found, Some(ProviderTaskId::new(ours).unwrap()));
    assert_eq!(posts(&f.server).await, 0, "nothing is created");
    assert_eq!(
        list_pages(&f.server, "text2video").await,
        vec![("1".to_owned(), "500".to_owned())]
    );
    let listed = requests(&f.server).await;
    check_jwt(listed.last().unwrap());
}

#[tokio::test]
async fn find_by_job_is_none_only_when_the_lookup_and_the_list_both_have_no_task() {
    let job = job(51);
    let empty = Account::default();
    let others = Account::default();
    others.add_others("omni-video", 4, HOUR);
    others.add("text2video", &job.to_string(), HOUR);
    for account in [empty, others] {
        let f = fixture().await;

        let found = f
            .find_via_list(&account, VideoMode::VideoToVideo, job)
            .await
            .unwrap();

        assert_eq!(
            list_pages(&f.server, "omni-video").await,
            vec![("1".to_owned(), "500".to_owned())],
            "a 404 lookup is confirmed by the list before saying None"
        );
        assert_eq!(found, None);
    }
}

#[tokio::test]
async fn a_failing_list_makes_find_by_job_an_error_not_none() {
    let f = fixture().await;
    let job = job(52);
    mount_lookup_not_found(&f.server, "text2video", job).await;
    mount_failing_list(&f.server, "text2video").await;

    let outcome = f.client.find_by_job(VideoMode::TextToVideo, job).await;

    let err = outcome.expect_err("an unreadable list is inconclusive, never None");
    assert_eq!(err.kind(), ProviderErrorKind::Transient, "{err:?}");
    assert_eq!(posts(&f.server).await, 0);
}

#[tokio::test]
async fn an_unanswered_create_is_not_posted_again_while_the_list_fails() {
    let f = fixture().await;
    let job = job(53);
    let account = Account::default();
    account
        .mount_create(&f.server, "text2video", CreateAnswer::Lost)
        .await;
    mount_lookup_not_found(&f.server, "text2video", job).await;
    mount_failing_list(&f.server, "text2video").await;

    let outcome = f.submit_text(job, "kling-v3").await;

    assert_eq!(posts(&f.server).await, 1, "exactly one create: {outcome:?}");
    assert_eq!(outcome.unwrap_err().kind(), ProviderErrorKind::Transient);
}

#[tokio::test]
async fn an_unanswered_create_found_only_in_the_list_is_not_paid_twice() {
    let f = fixture().await;
    let job = job(54);
    let account = Account::default();
    account.add_others("text2video", 7, HOUR);
    account
        .mount_create(&f.server, "text2video", CreateAnswer::Lost)
        .await;
    mount_lookup_not_found(&f.server, "text2video", job).await;
    account.mount_list(&f.server, "text2video").await;

    let outcome = f.submit_text(job, "kling-v3").await;

    assert_eq!(posts(&f.server).await, 1, "exactly one create: {outcome:?}");
    let task = outcome.unwrap();
    let created: Vec<String> = account
        .tasks
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, t)| t["task_info"]["external_task_id"] == job.to_string())
        .map(|(_, t)| t["task_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created, vec![task.as_str().to_owned()]);
}

#[tokio::test]
async fn the_list_is_read_page_by_page_until_tasks_are_a_day_old() {
    // Our task on page 2, behind 500 newer tasks.
    let f = fixture().await;
    let on_page_2 = job(55);
    let account = Account::default();
    account.add_others("image2video", 500, HOUR);
    let ours = account.add("image2video", &on_page_2.to_string(), 2 * HOUR);
    account.add_others("image2video", 10, 30 * HOUR);
    let found = f
        .find_via_list(&account, VideoMode::ImageToVideo, on_page_2)
        .await;
    assert_eq!(found.unwrap(), Some(ProviderTaskId::new(ours).unwrap()));
    assert_eq!(list_pages(&f.server, "image2video").await.len(), 2);

    // No task of ours: page 2 ends with tasks older than a day, so page 3 is never read.
    let f = fixture().await;
    let absent = job(56);
    let account = Account::default();
    account.add_others("image2video", 700, HOUR);
    account.add_others("image2video", 600, 25 * HOUR);
    let found = f
        .find_via_list(&account, VideoMode::ImageToVideo, absent)
        .await;
    assert_eq!(found.unwrap(), None);
    assert_eq!(
        list_pages(&f.server, "image2video").await,
        vec![
            ("1".to_owned(), "500".to_owned()),
            ("2".to_owned(), "500".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_list_longer_than_the_page_budget_is_inconclusive() {
    let f = fixture().await;
    let job = job(57);
    let account = Account::default();
    account.add_others("text2video", 2_100, HOUR);

    let outcome = f.find_via_list(&account, VideoMode::TextToVideo, job).await;

    let err = outcome.expect_err("recent tasks beyond the last page read may hide ours");
    assert_eq!(err.kind(), ProviderErrorKind::Unknown, "{err:?}");
    assert_eq!(list_pages(&f.server, "text2video").await.len(), 4);
}

// ---------------------------------------------------------------- error classes

#[tokio::test]
async fn every_documented_error_code_maps_to_its_class() {
    use ProviderErrorKind::{Auth, InvalidRequest, OutOfFunds, RateLimited, Refused, Transient};
    let cases = [
        (401, 1000, Auth),
        (401, 1001, Auth),
        (401, 1002, Auth),
        (403, 1103, Auth),
        (429, 1100, Auth),
        (429, 1304, Auth),
        (429, 1101, OutOfFunds),
        (429, 1102, OutOfFunds),
        (429, 1302, RateLimited),
        (429, 1303, RateLimited),
        (400, 1200, InvalidRequest),
        (400, 1201, InvalidRequest),
        (404, 1202, InvalidRequest),
        (404, 1203, InvalidRequest),
        (400, 1300, Refused),
        (400, 1301, Refused),
        (500, 5000, Transient),
        (503, 5001, Transient),
        (504, 5002, Transient),
    ];
    for (status, code, kind) in cases {
        let f = fixture().await;
        respond(
            &f.server,
            "POST",
            kling_error(status, code, "provider words"),
        )
        .await;
        // Transient creates look the task up before posting again: answer "no such task",
        // and an empty task list.
        mount_lookup_not_found(&f.server, "text2video", job(14)).await;
        Account::default().mount_list(&f.server, "text2video").await;
        let err = f.submit_text(job(14), "kling-v3").await.unwrap_err();
        assert_eq!(err.kind(), kind, "HTTP {status} code {code}: {err:?}");
        let expected_posts = if err.is_retryable() { 3 } else { 1 };
        assert_eq!(
            posts(&f.server).await,
            expected_posts,
            "HTTP {status} code {code}: retried only when retryable, within the budget"
        );
        assert_eq!(err.alerts_admins(), matches!(kind, Auth | OutOfFunds));
        if kind == Refused {
            assert_eq!(
                err,
                ProviderError::Refused {
                    reason: "provider words".to_owned()
                }
            );
        }
    }
}

#[tokio::test]
async fn an_expired_token_is_re_signed_and_retried_once() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let f = fixture().await;
    let expired = kling_error(401, 1004, "token expired");

    f.submit_after(1, expired, job(15)).await;

    let sent = requests(&f.server).await;
    assert_eq!(sent.len(), 2);
    check_jwt(&sent[1]);
    let count = |name, labels: &[(&str, &str)]| recorder.counter(name, labels);
    assert_eq!(
        count(
            "provider_errors_total",
            &[("provider", "kling"), ("kind", "auth")]
        ),
        0,
        "a refusal cured by the re-sign is no auth error"
    );
    assert_eq!(count("provider_reauth_total", &[("provider", "kling")]), 1);
    assert_eq!(
        count(
            "provider_requests_total",
            &[("provider", "kling"), ("outcome", "reauth")]
        ),
        1
    );
    assert_eq!(
        count(
            "provider_requests_total",
            &[("provider", "kling"), ("outcome", "ok")]
        ),
        1
    );
}

#[tokio::test]
async fn a_not_yet_valid_token_is_re_signed_with_an_earlier_nbf() {
    let f = fixture().await;
    let not_yet_valid = kling_error(401, 1003, "token not yet valid");

    f.submit_after(1, not_yet_valid, job(43)).await;

    let sent = requests(&f.server).await;
    assert_eq!(sent.len(), 2);
    let (first, first_claims) = jwt(&sent[0]);
    let (second, second_claims) = jwt(&sent[1]);
    assert_ne!(first, second, "the repeat carries another token");
    assert!(
        second_claims.nbf + 50 <= first_claims.nbf,
        "nbf moved back: {} then {}",
        first_claims.nbf,
        second_claims.nbf
    );
    assert!(second_claims.exp.abs_diff(now_secs() + 1800) <= 5);
}

#[tokio::test]
async fn a_token_rejected_twice_is_an_auth_failure_after_one_re_sign() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let f = fixture().await;
    respond(
        &f.server,
        "POST",
        kling_error(401, 1003, "token not yet valid"),
    )
    .await;
    let err = f.submit_text(job(16), "kling-v3").await.unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Auth);
    assert!(err.alerts_admins());
    assert_eq!(requests(&f.server).await.len(), 2);
    assert_eq!(
        recorder.counter(
            "provider_errors_total",
            &[("provider", "kling"), ("kind", "auth")]
        ),
        1,
        "the failed repeat is the one auth error"
    );
    assert_eq!(
        recorder.counter("provider_reauth_total", &[("provider", "kling")]),
        1
    );
}

#[tokio::test]
async fn rate_limits_are_retried_then_succeed_and_are_counted() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let f = fixture().await;
    let too_many = kling_error(429, 1303, "parallel task over resource pack limit");

    f.submit_after(2, too_many, job(18)).await;

    assert_eq!(
        requests(&f.server).await.len(),
        3,
        "no lookup: a rate-limited create created nothing"
    );
    assert_eq!(
        recorder.counter("provider_retries_total", &[("provider", "kling")]),
        2
    );
    assert_eq!(
        recorder.counter(
            "provider_requests_total",
            &[("provider", "kling"), ("outcome", "rate_limited")]
        ),
        2
    );
    assert_eq!(
        recorder.counter(
            "provider_requests_total",
            &[("provider", "kling"), ("outcome", "ok")]
        ),
        1
    );
    assert_eq!(
        recorder.counter(
            "provider_errors_total",
            &[("provider", "kling"), ("kind", "rate_limited")]
        ),
        2
    );
}

#[tokio::test]
async fn a_retry_after_header_is_honoured() {
    let f = fixture().await;
    let too_fast =
        kling_error(429, 1302, "request rate too high").insert_header("Retry-After", "1");
    let started = Instant::now();
    f.submit_after(1, too_fast, job(19)).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_returned_at_once() {
    let f = fixture().await;
    respond(
        &f.server,
        "POST",
        kling_error(429, 1302, "too fast").insert_header("Retry-After", "120"),
    )
    .await;
    let err = f.submit_text(job(20), "kling-v3").await.unwrap_err();
    assert_eq!(
        err,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert_eq!(requests(&f.server).await.len(), 1);
}

// ---------------------------------------------------------------- download

#[tokio::test]
async fn results_are_streamed_into_the_asset_dir_without_credentials() {
    let f = fixture().await;
    let video = vec![0x42u8; 300_000];
    respond_once(
        &f.server,
        "GET /bs2/upload-ylab-stunt/output.mp4",
        ResponseTemplate::new(200).set_body_raw(video.clone(), "video/mp4"),
    )
    .await;
    let job = job(21);

    let asset = f
        .client
        .download(
            &format!(
                "{}/bs2/upload-ylab-stunt/output.mp4?sig=abc",
                f.server.uri()
            ),
            job,
        )
        .await
        .unwrap();

    assert_eq!(asset.bytes, 300_000);
    assert_eq!(asset.asset.as_str(), format!("results/{job}.mp4"));
    assert_eq!(
        std::fs::read(f.dir.path().join("results").join(format!("{job}.mp4"))).unwrap(),
        video
    );
    assert!(
        requests(&f.server).await[0]
            .headers
            .get("authorization")
            .is_none(),
        "the JWT never goes to the CDN"
    );
}

#[tokio::test]
async fn downloads_over_the_cap_fail_and_store_nothing() {
    let f = fixture_with(|c| c.download.max_bytes = 1000).await;
    respond(
        &f.server,
        "GET",
        ResponseTemplate::new(200).set_body_raw(vec![0u8; 1001], "video/mp4"),
    )
    .await;
    let err = f
        .client
        .download(&format!("{}/out.mp4", f.server.uri()), job(22))
        .await
        .unwrap_err();
    let ProviderError::Unknown { message } = err else {
        panic!("expected Unknown, got {err:?}")
    };
    assert!(message.contains("1000-byte"), "{message}");
    assert_eq!(
        requests(&f.server).await.len(),
        1,
        "over the cap is not retried"
    );
    assert!(
        !f.dir
            .path()
            .join("results")
            .join(format!("{}.mp4", job(22)))
            .exists()
    );
}

#[tokio::test]
async fn streamed_downloads_without_a_length_stop_at_the_cap_and_leave_no_file() {
    let f = fixture_with(|c| c.download.max_bytes = 1000).await;
    // No Content-Length, so only the streaming cap can stop them: a chunked body (ten
    // chunks of 300 bytes) and a body ended by closing the connection.
    let answers = [
        RawAnswer::new(
            "HTTP/1.1 200 OK",
            &["Content-Type: video/mp4", "Transfer-Encoding: chunked"],
            &chunked(10, 300),
            Then::Close,
        ),
        RawAnswer::new(
            "HTTP/1.1 200 OK",
            &["Content-Type: video/mp4", "Connection: close"],
            &[7u8; 5000],
            Then::Close,
        ),
    ];
    for (n, answer) in answers.into_iter().enumerate() {
        let cdn = RawServer::start(vec![answer]).await;
        let job = job(44 + n as u128);
        let err = f
            .client
            .download(&format!("{}/out.mp4", cdn.uri()), job)
            .await
            .unwrap_err();
        let ProviderError::Unknown { message } = err else {
            panic!("answer {n}: expected Unknown, got {err:?}")
        };
        assert!(message.contains("1000-byte"), "{message}");
        assert_eq!(cdn.requests().len(), 1, "over the cap is not retried");
        let left: Vec<_> = std::fs::read_dir(f.dir.path().join("results"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "answer {n}: left behind {left:?}");
    }
}

#[tokio::test]
async fn downloads_retry_server_errors_and_give_up_on_missing_files() {
    let f = fixture().await;
    respond_first(&f.server, "GET /flaky.mp4", 1, ResponseTemplate::new(502)).await;
    respond(
        &f.server,
        "GET /flaky.mp4",
        ResponseTemplate::new(200).set_body_raw(vec![1u8; 10], "video/mp4"),
    )
    .await;
    respond(&f.server, "GET /gone.mp4", ResponseTemplate::new(404)).await;
    assert_eq!(
        f.client
            .download(&format!("{}/flaky.mp4", f.server.uri()), job(23))
            .await
            .unwrap()
            .bytes,
        10
    );
    assert_eq!(
        f.client
            .download(&format!("{}/gone.mp4", f.server.uri()), job(24))
            .await
            .unwrap_err()
            .kind(),
        ProviderErrorKind::Unknown
    );
    assert_eq!(
        f.client
            .download("file:///etc/passwd", job(25))
            .await
            .unwrap_err()
            .kind(),
        ProviderErrorKind::InvalidRequest
    );
}

#[tokio::test]
async fn slow_downloads_time_out_as_transient() {
    let f = fixture_with(|c| {
        c.download.timeout = Duration::from_millis(100);
        c.retry = fast_retry(1);
    })
    .await;
    respond(
        &f.server,
        "GET",
        ResponseTemplate::new(200)
            .set_body_raw(vec![1u8; 10], "video/mp4")
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let err = f
        .client
        .download(&format!("{}/slow.mp4", f.server.uri()), job(26))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ProviderErrorKind::Transient, "{err:?}");
}

// ---------------------------------------------------------------- callbacks

#[tokio::test]
async fn callbacks_name_the_task_to_re_read() {
    let job = job(27);
    let body = json!({"task_id": TASK, "task_status": "succeed", "task_status_msg": "", "created_at": 1_774_805_076_166_i64,
                      "updated_at": 1_774_805_161_002_i64, "final_unit_deduction": "2", "task_info": {"external_task_id": job.to_string()},
                      "task_result": {"videos": [{"id": "a1b2", "url": "https://p1.a.kwimgs.com/out.mp4", "duration": "5.1"}]}});
    let callback = kling::parse_callback(&serde_json::to_vec(&body).unwrap()).unwrap();
    assert_eq!(callback.task_id.as_str(), TASK);
    assert_eq!(callback.job_id(), Some(job));
    assert_eq!(callback.status, "succeed");
    assert!(kling::parse_callback(b"{\"code\":0}").is_err());
    assert!(kling::parse_callback(b"not json").is_err());
}

// ---------------------------------------------------------------- secrets

#[tokio::test]
async fn logs_carry_method_path_and_status_but_no_secret() {
    let (logs, _guard) = LogCapture::start();
    let f = fixture().await;
    respond(&f.server, "POST", kling_error(401, 1002, "token invalid")).await;
    let err = f.submit_text(job(30), "kling-v3").await.unwrap_err();
    let token = check_jwt(&requests(&f.server).await[0]);
    let text = logs.text();
    assert!(text.contains("provider_request"), "{text}");
    assert!(
        text.contains("/v1/videos/text2video")
            && text.contains("status=401")
            && text.contains("latency_ms="),
        "{text}"
    );
    for secret in [SK, token.as_str(), "Bearer"] {
        assert!(!text.contains(secret), "a secret leaked into the logs");
        assert!(!format!("{err:?} {err} {:?}", f.client).contains(secret));
    }
}
