//! The router's API, on its HTTP server beside `/metrics` and `/healthz`, behind a bearer
//! token (`router.api`):
//!
//! - `POST /v1/alerts/{id}/ack` and `POST /v1/alerts/{id}/resolve` (optional JSON body
//!   `{"by": "ana"}`): stop the escalation of an alert to a team, send PagerDuty
//!   `acknowledge` / `resolve` with the alert's `dedup_key`, and publish the updated alert.
//! - `GET /v1/alerts/{id}/ack?sig=…`: the acknowledge link of Slack and Teams messages; the
//!   signature (HMAC-SHA256 of the alert id under the token) stands for the token. A GET
//!   changes nothing (link previews and scanners follow links): it shows a page whose
//!   button POSTs the same URL, and that POST acknowledges.
//! - `POST /v1/silences` (`{"matchers": [...], "ends_at": "…", "starts_at"?, "comment"?,
//!   "created_by"?}`), `GET /v1/silences`, `DELETE /v1/silences/{id}`.
//!
//! The server starts before the router's state is read (so `/healthz` passes during a long
//! start); until it is, every API call answers 503 with `Retry-After`. Every replica reads
//! the whole state, so any replica acknowledges or resolves any alert; an id the replica
//! does not hold answers 404 with why that may be (raised moments ago and not read here
//! yet: retry; or resolved, or not an alert to a team).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use chrono::Utc;
use futures::future::BoxFuture;
use hmac::{KeyInit, Mac};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::escalation::{AckError, Escalations, Publish, Tracked};
use crate::silences::{ApiSilence, Silences};
use crate::state::StateCell;

/// Seconds a client is told to wait while the state is being read.
const RETRY_AFTER_SECS: &str = "5";

/// Signed acknowledge links on the router's public base URL.
#[derive(Clone)]
pub struct AckLinks {
    base: String,
    key: Vec<u8>,
}

impl AckLinks {
    pub fn new(public_base_url: &str, key: &[u8]) -> AckLinks {
        AckLinks {
            base: public_base_url.trim_end_matches('/').to_owned(),
            key: key.to_vec(),
        }
    }

    /// `<base>/v1/alerts/<id>/ack?sig=<hex HMAC-SHA256 of "ack:<id>">`.
    pub fn url(&self, id: Uuid) -> String {
        let signature = hex::encode(self.mac(id).finalize().into_bytes());
        format!("{}/v1/alerts/{id}/ack?sig={signature}", self.base)
    }

    fn verify(&self, id: Uuid, signature: &str) -> bool {
        let Ok(bytes) = hex::decode(signature) else {
            return false;
        };
        self.mac(id).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, id: Uuid) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(format!("ack:{id}").as_bytes());
        mac
    }
}

/// Saves a silence (or its removal, `None`) where it survives restarts.
pub type SaveSilence =
    Arc<dyn Fn(Uuid, Option<ApiSilence>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What the API's handlers share.
pub struct Api {
    pub token: String,
    pub links: Option<AckLinks>,
    pub escalations: Arc<Escalations>,
    pub silences: Arc<Silences>,
    /// Publishes an acknowledged or resolved alert (alerts topic and state).
    pub publish: Publish,
    pub save_silence: SaveSilence,
    /// Set once the state is read: until then every call answers 503.
    pub loaded: StateCell,
}

/// The API's routes, to merge into the HTTP server.
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/alerts/{id}/ack", post(ack).get(ack_page))
        .route("/v1/alerts/{id}/resolve", post(resolve))
        .route("/v1/silences", post(add_silence).get(list_silences))
        .route("/v1/silences/{id}", delete(remove_silence))
        .with_state(api)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActBody {
    #[serde(default)]
    by: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    Acknowledge,
    Resolve,
}

impl Act {
    fn pagerduty_action(self) -> &'static str {
        match self {
            Act::Acknowledge => "acknowledge",
            Act::Resolve => "resolve",
        }
    }
}

/// `POST …/ack`: with the bearer token (the API), or with the link's signature (the button
/// of the page the link opens).
async fn ack(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match query.get("sig") {
        Some(signature) if !headers.contains_key(axum::http::header::AUTHORIZATION) => {
            ack_by_link(&api, &id, signature).await
        }
        _ => act(&api, &id, &headers, &body, Act::Acknowledge).await,
    }
}

async fn resolve(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(&api, &id, &headers, &body, Act::Resolve).await
}

/// The alert id of a link, when the link's signature is valid; else the status and why.
fn signed_link(
    api: &Api,
    id: &str,
    signature: Option<&str>,
) -> Result<Uuid, (StatusCode, &'static str)> {
    let Ok(id) = Uuid::parse_str(id) else {
        return Err((StatusCode::NOT_FOUND, "not an alert id"));
    };
    match (&api.links, signature) {
        (Some(links), Some(signature)) if links.verify(id, signature) => Ok(id),
        _ => Err((
            StatusCode::UNAUTHORIZED,
            "missing or invalid link signature",
        )),
    }
}

/// `GET …/ack?sig=…`: the page the acknowledge link opens. It changes nothing; its button
/// POSTs the same URL.
async fn ack_page(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let signature = query.get("sig").map(String::as_str);
    let id = match signed_link(&api, &id, signature) {
        Ok(id) => id,
        Err((status, why)) => return problem(status, why),
    };
    // Both are checked above: a UUID and the hex of a valid signature, safe in HTML.
    let signature = signature.unwrap_or_default();
    html(
        StatusCode::OK,
        &format!(
            "<h1>Acknowledge alert {id}?</h1>\n<p>Acknowledging stops its escalation.</p>\n\
             <form method=\"post\" action=\"ack?sig={signature}\">\
             <button type=\"submit\">Acknowledge</button></form>"
        ),
    )
}

/// The page's button: acknowledges by the link's signature.
async fn ack_by_link(api: &Api, id: &str, signature: &str) -> Response {
    let id = match signed_link(api, id, Some(signature)) {
        Ok(id) => id,
        Err((status, why)) => return problem(status, why),
    };
    if let Some(response) = not_loaded(api) {
        return response;
    }
    match apply(api, id, Some("ack link".to_owned()), Act::Acknowledge).await {
        Ok(_) => html(
            StatusCode::OK,
            &format!("<h1>Alert {id} acknowledged</h1>\n<p>Its escalation is stopped.</p>"),
        ),
        Err(response) => response,
    }
}

fn html(status: StatusCode, body: &str) -> Response {
    (
        status,
        [("content-type", "text/html; charset=utf-8")],
        format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Earshot</title></head>\n<body>\n{body}\n</body></html>\n"
        ),
    )
        .into_response()
}

/// 503 with `Retry-After` while the state is being read.
fn not_loaded(api: &Api) -> Option<Response> {
    api.loaded.get().is_none().then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", RETRY_AFTER_SECS)],
            Json(json!({"error": "the router is still reading its state; retry shortly"})),
        )
            .into_response()
    })
}

async fn act(api: &Api, id: &str, headers: &HeaderMap, body: &[u8], what: Act) -> Response {
    if !authorized(api, headers) {
        return unauthorized();
    }
    if let Some(response) = not_loaded(api) {
        return response;
    }
    let Ok(id) = Uuid::parse_str(id) else {
        return problem(StatusCode::NOT_FOUND, "not an alert id");
    };
    let body: ActBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(body) => body,
            Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("body: {e}")),
        }
    };
    match apply(api, id, body.by, what).await {
        Ok(tracked) => (StatusCode::OK, Json(status(&tracked))).into_response(),
        Err(response) => response,
    }
}

/// Acknowledges or resolves, tells PagerDuty, and publishes the updated alert.
async fn apply(api: &Api, id: Uuid, by: Option<String>, what: Act) -> Result<Tracked, Response> {
    let now = Utc::now();
    let result = match what {
        Act::Acknowledge => api.escalations.acknowledge(id, by, now),
        Act::Resolve => api.escalations.resolve(id, by, now),
    };
    let tracked = result.map_err(|error| match error {
        AckError::Unknown(_) => problem(
            StatusCode::NOT_FOUND,
            &format!(
                "{error}: every replica reads every alert to a team from the state topic, \
                 and this one has read it to now; an alert raised in the last seconds may \
                 not have reached it yet (retry), otherwise it is not an alert to a team, or \
                 it was resolved"
            ),
        ),
        AckError::Resolved(_) => problem(StatusCode::CONFLICT, &error.to_string()),
    })?;
    let mut receivers: Vec<&str> = tracked
        .alert
        .deliveries
        .iter()
        .filter(|d| d.channel == "pagerduty")
        .map(|d| d.receiver.as_str())
        .collect();
    receivers.sort_unstable();
    receivers.dedup();
    for receiver in receivers {
        if let Err(error) = api
            .escalations
            .deliverer()
            .pagerduty_event(receiver, id, what.pagerduty_action())
            .await
        {
            // The acknowledgement holds here; PagerDuty's incident stays open until someone
            // acts on it there.
            tracing::error!(alert = %id, receiver, %error, action = what.pagerduty_action(), "PagerDuty event failed");
        }
    }
    (api.publish)(tracked.clone(), Vec::new())
        .await
        .map_err(|error| {
            tracing::error!(alert = %id, %error, "publishing the acknowledged alert failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "recorded here but not yet published; try again",
            )
        })?;
    Ok(tracked)
}

fn status(tracked: &Tracked) -> serde_json::Value {
    let time = |micros: Option<i64>| {
        micros
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339())
    };
    json!({
        "id": tracked.alert.id,
        "team": tracked.team,
        "topic": tracked.topic,
        "partition": tracked.partition,
        "escalation_steps_notified": tracked.steps_notified,
        "acknowledged_at": time(tracked.alert.acknowledged_at),
        "acknowledged_by": tracked.alert.acknowledged_by,
        "resolved_at": time(tracked.alert.resolved_at),
    })
}

async fn add_silence(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    if let Some(response) = not_loaded(&api) {
        return response;
    }
    let mut silence: ApiSilence = match serde_json::from_slice(&body) {
        Ok(silence) => silence,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &format!("body: {e}")),
    };
    // The id is the router's to give.
    silence.id = Uuid::new_v4();
    let problems = silence.problems(Utc::now());
    if !problems.is_empty() {
        return (StatusCode::BAD_REQUEST, Json(json!({"errors": problems}))).into_response();
    }
    if let Err(error) = (api.save_silence)(silence.id, Some(silence.clone())).await {
        tracing::error!(%error, "saving a silence failed");
        return problem(StatusCode::SERVICE_UNAVAILABLE, "not saved; try again");
    }
    if let Err(problems) = api.silences.insert(silence.clone()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"errors": problems}))).into_response();
    }
    (StatusCode::CREATED, Json(silence)).into_response()
}

async fn list_silences(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    if let Some(response) = not_loaded(&api) {
        return response;
    }
    Json(api.silences.list(Utc::now())).into_response()
}

async fn remove_silence(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&api, &headers) {
        return unauthorized();
    }
    if let Some(response) = not_loaded(&api) {
        return response;
    }
    let Ok(id) = Uuid::parse_str(&id) else {
        return problem(StatusCode::NOT_FOUND, "no such silence");
    };
    if api.silences.remove(id).is_none() {
        return problem(StatusCode::NOT_FOUND, "no such silence");
    }
    if let Err(error) = (api.save_silence)(id, None).await {
        tracing::error!(%error, "saving a silence's removal failed");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "removed here, not saved; try again",
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

fn authorized(api: &Api, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(api.token.as_bytes())))
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "a-long-enough-token";

    /// The API on loopback, with no alert held and the state not yet read.
    async fn serve() -> (String, Arc<Api>) {
        let config = earshot_core::config::RouterConfig::default();
        let deliverer = Arc::new(
            crate::Deliverer::new(
                &config,
                earshot_core::telemetry::Metrics::default(),
                tokio_util::sync::CancellationToken::new(),
            )
            .unwrap(),
        );
        let links = AckLinks::new("https://earshot.example.com", TOKEN.as_bytes());
        let api = Arc::new(Api {
            token: TOKEN.to_owned(),
            links: Some(links.clone()),
            escalations: Arc::new(Escalations::new(&config, deliverer, Some(links)).unwrap()),
            silences: Arc::default(),
            publish: Arc::new(|_, _| Box::pin(async { Ok(()) })),
            save_silence: Arc::new(|_, _| Box::pin(async { Ok(()) })),
            loaded: StateCell::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = routes(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (base, api)
    }

    #[tokio::test]
    async fn the_api_answers_503_until_the_state_is_read_then_404_says_why() {
        let (base, api) = serve().await;
        let http = reqwest::Client::new();
        let id = Uuid::new_v4();
        let ack = || {
            http.post(format!("{base}/v1/alerts/{id}/ack"))
                .bearer_auth(TOKEN)
                .send()
        };
        let loading = ack().await.unwrap();
        assert_eq!(loading.status(), 503);
        assert_eq!(loading.headers()["retry-after"], RETRY_AFTER_SECS);
        let silences = http
            .get(format!("{base}/v1/silences"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(silences.status(), 503);
        let anonymous = http
            .post(format!("{base}/v1/alerts/{id}/ack"))
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "the token is checked first");

        let table = earshot_core::table::MemoryTable::open();
        let _ = api.loaded.set(crate::state::RouterState::new(table.writer));
        let unknown = ack().await.unwrap();
        assert_eq!(unknown.status(), 404);
        let body: serde_json::Value = unknown.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("(retry)"), "{error}");
    }

    #[tokio::test]
    async fn opening_the_acknowledge_link_shows_a_form_and_changes_nothing() {
        let (base, api) = serve().await;
        let http = reqwest::Client::new();
        let id = Uuid::new_v4();
        let link = api
            .links
            .as_ref()
            .unwrap()
            .url(id)
            .replace("https://earshot.example.com", &base);
        let page = http.get(&link).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let sig = link.rsplit_once("sig=").unwrap().1;
        assert!(
            page.contains(&format!("action=\"ack?sig={sig}\"")),
            "{page}"
        );
        // The page's POST is refused before the state is read, and takes no forged link.
        let posted = http.post(&link).send().await.unwrap();
        assert_eq!(posted.status(), 503);
        let forged = http
            .post(format!("{base}/v1/alerts/{id}/ack?sig=0123"))
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);
        let not_hex = http
            .get(format!("{base}/v1/alerts/{id}/ack?sig=zz"))
            .send()
            .await
            .unwrap();
        assert_eq!(not_hex.status(), 401);
    }

    #[test]
    fn ack_links_verify_only_for_their_alert() {
        let links = AckLinks::new("https://earshot.example.com/", b"a-long-enough-token");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let url = links.url(a);
        assert!(url.starts_with(&format!(
            "https://earshot.example.com/v1/alerts/{a}/ack?sig="
        )));
        let sig = url.rsplit_once("sig=").unwrap().1;
        assert!(links.verify(a, sig));
        assert!(!links.verify(b, sig));
        assert!(!links.verify(a, "00"));
        let other = AckLinks::new("https://earshot.example.com", b"another-token-entirely");
        assert!(!other.verify(a, sig));
    }
}
