//! The router's API, on its HTTP server beside `/metrics` and `/healthz`, behind a bearer
//! token (`router.api`):
//!
//! - `POST /v1/alerts/{id}/ack` and `POST /v1/alerts/{id}/resolve` (optional JSON body
//!   `{"by": "ana"}`): stop the escalation of an alert to a team, send PagerDuty
//!   `acknowledge` / `resolve` with the alert's `dedup_key`, and publish the updated alert.
//! - `GET /v1/alerts/{id}/ack?sig=…`: the acknowledge link of Slack and Teams messages; the
//!   signature (HMAC-SHA256 of the alert id under the token) stands for the token.
//! - `POST /v1/silences` (`{"matchers": [...], "ends_at": "…", "starts_at"?, "comment"?,
//!   "created_by"?}`), `GET /v1/silences`, `DELETE /v1/silences/{id}`.

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
use uuid::Uuid;

use crate::escalation::{AckError, Escalations, Publish, Tracked};
use crate::silences::{ApiSilence, Silences};

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
        let mut text = String::new();
        for byte in self.mac(id).finalize().into_bytes() {
            text.push_str(&format!("{byte:02x}"));
        }
        format!("{}/v1/alerts/{id}/ack?sig={text}", self.base)
    }

    fn verify(&self, id: Uuid, signature: &str) -> bool {
        let Some(bytes) = decode_hex(signature) else {
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
}

/// The API's routes, to merge into the HTTP server.
pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/alerts/{id}/ack", post(ack).get(ack_link))
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

async fn ack(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(&api, &id, &headers, &body, Act::Acknowledge).await
}

async fn resolve(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    act(&api, &id, &headers, &body, Act::Resolve).await
}

async fn ack_link(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return problem(StatusCode::NOT_FOUND, "not an alert id");
    };
    let signed = match (&api.links, query.get("sig")) {
        (Some(links), Some(signature)) => links.verify(id, signature),
        _ => false,
    };
    if !signed {
        return problem(
            StatusCode::UNAUTHORIZED,
            "missing or invalid link signature",
        );
    }
    match apply(&api, id, Some("ack link".to_owned()), Act::Acknowledge).await {
        Ok(_) => (
            StatusCode::OK,
            [("content-type", "text/plain; charset=utf-8")],
            format!("Alert {id} acknowledged: escalation stopped.\n"),
        )
            .into_response(),
        Err(response) => response,
    }
}

async fn act(api: &Api, id: &str, headers: &HeaderMap, body: &[u8], what: Act) -> Response {
    if !authorized(api, headers) {
        return unauthorized();
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
        AckError::Unknown(_) => problem(StatusCode::NOT_FOUND, &error.to_string()),
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
    presented.is_some_and(|p| constant_time_eq(p.as_bytes(), api.token.as_bytes()))
}

fn unauthorized() -> Response {
    problem(StatusCode::UNAUTHORIZED, "missing or invalid bearer token")
}

fn problem(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
