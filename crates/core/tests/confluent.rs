//! The Confluent wire format against a Schema Registry that speaks the Confluent REST API
//! (register under a subject, fetch by id), served on loopback by this test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use earshot_core::codec::{Codec, CodecError, Framing};
use earshot_core::model::*;
use earshot_core::registry::SchemaRegistry;

#[derive(Default)]
struct Registry {
    schemas: Vec<String>,
    subjects: HashMap<String, Vec<u32>>,
}

async fn register(
    State(state): State<Arc<Mutex<Registry>>>,
    Path(subject): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, StatusCode> {
    let schema = body["schema"]
        .as_str()
        .ok_or(StatusCode::UNPROCESSABLE_ENTITY)?
        .to_owned();
    let mut registry = state.lock().unwrap();
    // Like the real registry: the same schema gets the same global id.
    let id = match registry.schemas.iter().position(|s| *s == schema) {
        Some(index) => index as u32 + 1,
        None => {
            registry.schemas.push(schema);
            registry.schemas.len() as u32
        }
    };
    registry.subjects.entry(subject).or_default().push(id);
    Ok(Json(serde_json::json!({ "id": id })))
}

async fn by_id(
    State(state): State<Arc<Mutex<Registry>>>,
    Path(id): Path<u32>,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)> {
    let registry = state.lock().unwrap();
    match registry.schemas.get(id as usize - 1) {
        Some(schema) => Ok(Json(serde_json::json!({ "schema": schema }))),
        None => Err((
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})),
        )),
    }
}

async fn serve_registry() -> (String, Arc<Mutex<Registry>>) {
    let state = Arc::new(Mutex::new(Registry::default()));
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/schemas/ids/{id}", get(by_id))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), state)
}

fn mention() -> Mention {
    Mention {
        id: mention_id("mastodon", "113"),
        native_id: "113".into(),
        source: Source {
            kind: "mastodon".into(),
            instance: "mastodon.social".into(),
        },
        url: None,
        author: Author {
            handle: "@ana@mastodon.social".into(),
            name: None,
            followers: None,
            verified: false,
            id: None,
        },
        text: "Parcelly lost my parcel again".into(),
        lang_hint: None,
        created_at: 1,
        collected_at: 2,
        engagement: Engagement::default(),
        parent_id: None,
        conversation_id: None,
        has_media: false,
        deleted_at: None,
    }
}

#[tokio::test]
async fn writers_register_and_readers_fetch_the_schema_by_id() {
    let (url, state) = serve_registry().await;
    let registry = Arc::new(SchemaRegistry::new(&url));
    let framing = Framing::Confluent {
        registry: registry.clone(),
        subject: "earshot.mentions.raw-value".into(),
    };

    let mut writer = Codec::<Mention>::with_framing(framing.clone()).unwrap();
    writer.register().await.unwrap();
    let payload = writer.encode(&mention()).unwrap();
    assert_eq!(payload[0], 0, "Confluent magic byte");
    assert_eq!(
        u32::from_be_bytes(payload[1..5].try_into().unwrap()),
        1,
        "the registry's id"
    );
    assert_eq!(
        state.lock().unwrap().subjects["earshot.mentions.raw-value"],
        vec![1]
    );

    // A reader that never registered anything fetches the writer schema by id.
    let reader = Codec::<Mention>::with_framing(framing).unwrap();
    assert_eq!(reader.decode(&payload).await.unwrap(), mention());

    // Single-object records still decode during a migration between framings.
    let single = Codec::<Mention>::single_object()
        .unwrap()
        .encode(&mention())
        .unwrap();
    assert_eq!(reader.decode(&single).await.unwrap(), mention());

    // An id the registry does not know is an unknown schema, named in the error.
    let mut unknown = payload.clone();
    unknown[1..5].copy_from_slice(&99u32.to_be_bytes());
    let error = reader.decode(&unknown).await.unwrap_err();
    assert!(
        matches!(error, CodecError::UnknownSchemaId { id: 99, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("404"), "{error}");
}

#[tokio::test]
async fn encoding_before_registering_is_an_error_not_a_bad_record() {
    let (url, _) = serve_registry().await;
    let framing = Framing::Confluent {
        registry: Arc::new(SchemaRegistry::new(&url)),
        subject: "s-value".into(),
    };
    let writer = Codec::<Mention>::with_framing(framing).unwrap();
    let error = writer.encode(&mention()).unwrap_err();
    assert!(error.to_string().contains("not registered"), "{error}");
}
