//! The Avro codec: records encoded and decoded straight through serde (serde_avro_fast) against
//! the schemas in `schemas/`, framed either as Avro single-object encoding (the default: a
//! two-byte marker and the writer schema's CRC-64-AVRO fingerprint) or in the Confluent wire
//! format (magic byte 0 and a 4-byte schema id from a Schema Registry).
//!
//! Decoding always uses the *writer's* schema, found by fingerprint or registry id; serde then
//! maps the writer's fields onto the current Rust type, which is what makes evolution work in
//! both directions: fields the reader lacks are skipped, fields the writer lacks take their
//! `#[serde(default)]`. apache-avro parses the schemas, computes the fingerprints and checks
//! compatibility; it is not on the per-record path.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{Alert, EnrichedMention, Mention, SourceHealthEvent};
use crate::registry::SchemaRegistry;

/// The schemas Earshot writes today, embedded at build time.
pub const MENTION_SCHEMA: &str = include_str!("../../../schemas/mention.avsc");
pub const ENRICHED_MENTION_SCHEMA: &str = include_str!("../../../schemas/enriched_mention.avsc");
pub const ALERT_SCHEMA: &str = include_str!("../../../schemas/alert.avsc");
pub const SOURCE_HEALTH_SCHEMA: &str = include_str!("../../../schemas/source_health.avsc");

/// Single-object encoding marker (Avro specification, "Single object encoding").
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER_LEN: usize = 10;
const CONFLUENT_MAGIC: u8 = 0;
const CONFLUENT_HEADER_LEN: usize = 5;

/// A type carried on a topic, with the Avro schema it is written with.
pub trait AvroRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The writer schema (JSON).
    const SCHEMA: &'static str;
    /// Every earlier version of the schema that was ever written (from `schemas/history/`),
    /// so that records already on a topic stay readable after an upgrade. A test fails when
    /// a schema changes without its predecessor recorded here.
    const HISTORY: &'static [&'static str] = &[];
}

impl AvroRecord for Mention {
    const SCHEMA: &'static str = MENTION_SCHEMA;
    const HISTORY: &'static [&'static str] = &[include_str!(
        "../../../schemas/history/mention.97b696cbeb2ed092.avsc"
    )];
}
impl AvroRecord for EnrichedMention {
    const SCHEMA: &'static str = ENRICHED_MENTION_SCHEMA;
    const HISTORY: &'static [&'static str] = &[
        include_str!("../../../schemas/history/enriched_mention.56c714d59e778f61.avsc"),
        include_str!("../../../schemas/history/enriched_mention.b2b1c53c7c922da6.avsc"),
        include_str!("../../../schemas/history/enriched_mention.bb75c4d84c12a794.avsc"),
    ];
}
impl AvroRecord for Alert {
    const SCHEMA: &'static str = ALERT_SCHEMA;
    const HISTORY: &'static [&'static str] = &[
        include_str!("../../../schemas/history/alert.2cc6512aae6ee46d.avsc"),
        include_str!("../../../schemas/history/alert.23727a3d75a56d29.avsc"),
    ];
}
impl AvroRecord for SourceHealthEvent {
    const SCHEMA: &'static str = SOURCE_HEALTH_SCHEMA;
}

/// Why a payload could not be encoded or decoded. Decode errors are permanent for the record:
/// it goes to the dead-letter topic with this error as the reason.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("payload is empty")]
    Empty,
    #[error("payload of {len} bytes is shorter than the {expected}-byte {framing} header")]
    Truncated {
        len: usize,
        expected: usize,
        framing: &'static str,
    },
    #[error("unknown framing: first bytes {found:02x?} are neither single-object (c3 01) nor Confluent (00)")]
    BadMagic { found: Vec<u8> },
    #[error("unknown writer schema: fingerprint {fingerprint:016x} is not a known schema")]
    UnknownFingerprint { fingerprint: u64 },
    #[error("unknown writer schema: schema registry id {id}: {reason}")]
    UnknownSchemaId { id: u32, reason: String },
    #[error("Avro decoding failed: {0}")]
    Decode(String),
    #[error("Avro encoding failed: {0}")]
    Encode(String),
    #[error("schema {name}: {reason}")]
    Schema { name: String, reason: String },
}

impl CodecError {
    /// A short fixed label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Empty | CodecError::Truncated { .. } => "truncated",
            CodecError::BadMagic { .. } => "bad_magic",
            CodecError::UnknownFingerprint { .. } | CodecError::UnknownSchemaId { .. } => {
                "unknown_schema"
            }
            CodecError::Decode(_) => "decode",
            CodecError::Encode(_) => "encode",
            CodecError::Schema { .. } => "schema",
        }
    }
}

/// A parsed schema with the facts the codec needs.
#[derive(Clone)]
pub struct ParsedSchema {
    pub fast: Arc<serde_avro_fast::Schema>,
    /// CRC-64-AVRO (Rabin) fingerprint of the Parsing Canonical Form.
    pub fingerprint: u64,
    pub canonical_form: String,
}

impl ParsedSchema {
    pub fn parse(json: &str) -> Result<Self, CodecError> {
        let schema_error = |reason: String| CodecError::Schema {
            name: schema_name(json),
            reason,
        };
        let avro = apache_avro::Schema::parse_str(json).map_err(|e| schema_error(e.to_string()))?;
        let fast: serde_avro_fast::Schema = json
            .parse()
            .map_err(|e: serde_avro_fast::schema::SchemaError| schema_error(e.to_string()))?;
        // apache-avro's canonical form keeps `{"type":"long"}` where a logical type was, so its
        // fingerprint of any schema with logical types differs from the specification's (and
        // Java's and Python's); serde_avro_fast follows the specification. Tests check that
        // the two agree on schemas without logical types.
        let fingerprint = u64::from_le_bytes(*fast.rabin_fingerprint());
        Ok(ParsedSchema {
            fast: Arc::new(fast),
            fingerprint,
            canonical_form: avro.canonical_form(),
        })
    }
}

fn schema_name(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "<unnamed>".to_owned())
}

/// How records are framed on the wire.
#[derive(Clone)]
pub enum Framing {
    /// Avro single-object encoding: `c3 01`, 8-byte little-endian fingerprint, datum.
    SingleObject,
    /// Confluent wire format: `00`, 4-byte big-endian schema id, datum.
    Confluent {
        registry: Arc<SchemaRegistry>,
        subject: String,
    },
}

/// Encodes and decodes one record type.
pub struct Codec<T> {
    writer: ParsedSchema,
    framing: Framing,
    /// Writer schemas this codec can read, by fingerprint: the current one plus older ones.
    known: HashMap<u64, ParsedSchema>,
    /// Writer schemas fetched from the registry, by id.
    by_registry_id: RwLock<HashMap<u32, ParsedSchema>>,
    /// This writer schema's registry id, once registered.
    writer_id: Option<u32>,
    _type: PhantomData<fn() -> T>,
}

impl<T: AvroRecord> Codec<T> {
    /// A codec that writes single-object encoding with `T::SCHEMA`.
    pub fn single_object() -> Result<Self, CodecError> {
        Self::with_framing(Framing::SingleObject)
    }

    pub fn with_framing(framing: Framing) -> Result<Self, CodecError> {
        let writer = ParsedSchema::parse(T::SCHEMA)?;
        let mut known = HashMap::from([(writer.fingerprint, writer.clone())]);
        for json in T::HISTORY {
            let earlier = ParsedSchema::parse(json)?;
            known.insert(earlier.fingerprint, earlier);
        }
        Ok(Codec {
            writer,
            framing,
            known,
            by_registry_id: RwLock::default(),
            writer_id: None,
            _type: PhantomData,
        })
    }

    /// Also accept records written with an older (or newer) version of the schema.
    pub fn accept_writer_schema(&mut self, json: &str) -> Result<u64, CodecError> {
        let parsed = ParsedSchema::parse(json)?;
        let fingerprint = parsed.fingerprint;
        self.known.insert(fingerprint, parsed);
        Ok(fingerprint)
    }

    /// For the Confluent framing: register the writer schema and remember its id.
    pub async fn register(&mut self) -> Result<(), CodecError> {
        if let Framing::Confluent { registry, subject } = &self.framing {
            let id =
                registry
                    .register(subject, T::SCHEMA)
                    .await
                    .map_err(|e| CodecError::Schema {
                        name: subject.clone(),
                        reason: format!("registering with the schema registry failed: {e}"),
                    })?;
            self.writer_id = Some(id);
            self.by_registry_id
                .write()
                .expect("poisoned")
                .insert(id, self.writer.clone());
        }
        Ok(())
    }

    /// Knows the schema `json` under registry id `id` without asking the registry, so that
    /// Confluent-framed records with that id decode with no I/O (a schema fetched elsewhere,
    /// the fuzz targets under `fuzz/`).
    pub fn remember_registry_schema(&self, id: u32, json: &str) -> Result<(), CodecError> {
        let parsed = ParsedSchema::parse(json)?;
        self.by_registry_id
            .write()
            .expect("poisoned")
            .insert(id, parsed);
        Ok(())
    }

    pub fn writer_schema(&self) -> &ParsedSchema {
        &self.writer
    }

    pub fn encode(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(256);
        match &self.framing {
            Framing::SingleObject => {
                out.extend_from_slice(&SINGLE_OBJECT_MARKER);
                out.extend_from_slice(&self.writer.fingerprint.to_le_bytes());
            }
            Framing::Confluent { subject, .. } => {
                let id = self.writer_id.ok_or_else(|| CodecError::Schema {
                    name: subject.clone(),
                    reason: "the schema was not registered before encoding".into(),
                })?;
                out.push(CONFLUENT_MAGIC);
                out.extend_from_slice(&id.to_be_bytes());
            }
        }
        let mut config = serde_avro_fast::ser::SerializerConfig::new(&self.writer.fast);
        serde_avro_fast::to_datum(value, out, &mut config)
            .map_err(|e| CodecError::Encode(e.to_string()))
    }

    /// Decodes a payload in either framing (both may be on a topic during a migration).
    pub async fn decode(&self, payload: &[u8]) -> Result<T, CodecError> {
        match payload.first() {
            None => Err(CodecError::Empty),
            Some(&CONFLUENT_MAGIC) => {
                let (id, datum) = split_confluent(payload)?;
                let schema = self.registry_schema(id).await?;
                decode_datum(datum, &schema)
            }
            Some(_) => self.decode_single_object(payload),
        }
    }

    /// Decodes a single-object payload; no I/O.
    pub fn decode_single_object(&self, payload: &[u8]) -> Result<T, CodecError> {
        if payload.len() < 2 || payload[..2] != SINGLE_OBJECT_MARKER {
            return Err(CodecError::BadMagic {
                found: payload.iter().take(2).copied().collect(),
            });
        }
        if payload.len() < SINGLE_OBJECT_HEADER_LEN {
            return Err(CodecError::Truncated {
                len: payload.len(),
                expected: SINGLE_OBJECT_HEADER_LEN,
                framing: "single-object",
            });
        }
        let fingerprint = u64::from_le_bytes(payload[2..10].try_into().expect("8 bytes"));
        let schema = self
            .known
            .get(&fingerprint)
            .ok_or(CodecError::UnknownFingerprint { fingerprint })?;
        decode_datum(&payload[SINGLE_OBJECT_HEADER_LEN..], schema)
    }

    async fn registry_schema(&self, id: u32) -> Result<ParsedSchema, CodecError> {
        if let Some(found) = self.by_registry_id.read().expect("poisoned").get(&id) {
            return Ok(found.clone());
        }
        let Framing::Confluent { registry, .. } = &self.framing else {
            return Err(CodecError::UnknownSchemaId {
                id,
                reason: "no schema registry is configured".into(),
            });
        };
        let json = registry
            .schema_by_id(id)
            .await
            .map_err(|e| CodecError::UnknownSchemaId {
                id,
                reason: e.to_string(),
            })?;
        let parsed = ParsedSchema::parse(&json)?;
        self.by_registry_id
            .write()
            .expect("poisoned")
            .insert(id, parsed.clone());
        Ok(parsed)
    }
}

fn split_confluent(payload: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    if payload.len() < CONFLUENT_HEADER_LEN {
        return Err(CodecError::Truncated {
            len: payload.len(),
            expected: CONFLUENT_HEADER_LEN,
            framing: "Confluent",
        });
    }
    let id = u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes"));
    Ok((id, &payload[CONFLUENT_HEADER_LEN..]))
}

fn decode_datum<T: DeserializeOwned>(datum: &[u8], schema: &ParsedSchema) -> Result<T, CodecError> {
    serde_avro_fast::from_datum_slice::<T>(datum, &schema.fast)
        .map_err(|e| CodecError::Decode(e.to_string()))
}

/// The codecs of the three record types, built once per service.
pub struct Codecs {
    pub mention: Codec<Mention>,
    pub enriched: Codec<EnrichedMention>,
    pub alert: Codec<Alert>,
    pub source_health: Codec<SourceHealthEvent>,
}

impl Codecs {
    /// Single-object codecs, or Confluent codecs registered under `<topic>-value` subjects.
    pub async fn new(
        registry: Option<Arc<SchemaRegistry>>,
        topics: &crate::config::TopicsConfig,
    ) -> Result<Self, CodecError> {
        let Some(registry) = registry else {
            return Ok(Codecs {
                mention: Codec::single_object()?,
                enriched: Codec::single_object()?,
                alert: Codec::single_object()?,
                source_health: Codec::single_object()?,
            });
        };
        let framing = |topic: &str| Framing::Confluent {
            registry: registry.clone(),
            subject: format!("{topic}-value"),
        };
        let mut codecs = Codecs {
            mention: Codec::with_framing(framing(&topics.raw))?,
            enriched: Codec::with_framing(framing(&topics.enriched))?,
            alert: Codec::with_framing(framing(&topics.alerts))?,
            source_health: Codec::with_framing(framing(&topics.source_health))?,
        };
        codecs.mention.register().await?;
        codecs.enriched.register().await?;
        codecs.alert.register().await?;
        codecs.source_health.register().await?;
        Ok(codecs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;

    pub(crate) fn sample_mention() -> Mention {
        Mention {
            id: mention_id("x", "1"),
            native_id: "1".into(),
            source: Source {
                kind: "x".into(),
                instance: "search".into(),
            },
            url: Some("https://x.example/status/1".into()),
            author: Author {
                handle: "@maria".into(),
                name: Some("María".into()),
                followers: Some(1200),
                verified: true,
                id: None,
            },
            text: "Mi lámpara Lumora llegó rota 😡 #lumora".into(),
            lang_hint: Some("es".into()),
            created_at: 1_763_888_400_000_000,
            collected_at: 1_763_888_401_000_000,
            engagement: Engagement {
                likes: 3,
                reposts: 1,
                replies: 0,
            },
            parent_id: None,
            conversation_id: Some("0".into()),
            has_media: true,
            deleted_at: None,
        }
    }

    fn sample_alert() -> Alert {
        let mention = sample_mention();
        let id = alert_id(mention.id, "route");
        Alert {
            id,
            created_at: 1,
            route: "route".into(),
            watchlist: "lumora".into(),
            mention_id: mention.id,
            mention_url: None,
            mention_text: mention.text,
            author_handle: mention.author.handle,
            score_name: "reach".into(),
            score: 1204.0,
            threshold: 1000.0,
            mention_collected_at: mention.collected_at,
            deliveries: vec![Delivery {
                id: delivery_id(id, "hook"),
                channel: "webhook".into(),
                receiver: "hook".into(),
                status: DeliveryStatus::Failed,
                attempts: 6,
                last_error: Some("HTTP 500".into()),
                delivered_at: None,
            }],
            route_path: vec!["lumora".into(), "route".into()],
            review_required: true,
            review_topics: vec!["legal".into()],
            team: None,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            kind: "mention".into(),
            spike: None,
        }
    }

    #[tokio::test]
    async fn records_round_trip_in_single_object_encoding() {
        let codec = Codec::<Mention>::single_object().unwrap();
        let mention = sample_mention();
        let bytes = codec.encode(&mention).unwrap();
        assert_eq!(&bytes[..2], &[0xC3, 0x01]);
        assert_eq!(
            &bytes[2..10],
            &codec.writer_schema().fingerprint.to_le_bytes()
        );
        assert_eq!(codec.decode(&bytes).await.unwrap(), mention);

        let enriched = EnrichedMention {
            mention,
            watchlist: "lumora".into(),
            matches: vec![WatchlistMatch {
                watchlist: "lumora".into(),
                relevance: 0.75,
                clause: "\"Lumora\"".into(),
                spans: vec![Span { start: 12, end: 18 }],
            }],
            sentiment: Sentiment {
                neg: 0.4,
                neu: 0.6,
                pos: 0.0,
                compound: -0.6,
            },
            sentences: SentenceSentiment {
                count: 3,
                mean_compound: -0.2,
                min_compound: -0.8,
                max_compound: 0.4,
                most_negative: "The lamp died after a week.".into(),
            },
            language: Some("es".into()),
            language_confidence: 0.9,
            spam_score: 0.1,
            intent: "complaint".into(),
            reach: 1204,
            urgency: 0.7,
            signals: Default::default(),
            enriched_at: 5,
        };
        let codec = Codec::<EnrichedMention>::single_object().unwrap();
        assert_eq!(
            codec
                .decode(&codec.encode(&enriched).unwrap())
                .await
                .unwrap(),
            enriched
        );

        let codec = Codec::<Alert>::single_object().unwrap();
        let alert = sample_alert();
        assert_eq!(
            codec.decode(&codec.encode(&alert).unwrap()).await.unwrap(),
            alert
        );

        // A spike alert: the nested record, its arrays and the named type used twice.
        let spike = Alert {
            kind: "spike".into(),
            spike: Some(crate::model::Spike {
                metric: "volume".into(),
                direction: "peak".into(),
                window_start: 1_700_000_000_000_000,
                window_end: 1_700_000_300_000_000,
                mentions: 240,
                negative_mentions: 130,
                value: 240.0,
                baseline_mean: 40.5,
                baseline_stddev: 6.4,
                z_score: 31.2,
                top_terms: vec![crate::model::SpikeCount {
                    name: "recall".into(),
                    count: 88,
                }],
                top_authors: vec![crate::model::SpikeCount {
                    name: "@newsdesk".into(),
                    count: 3,
                }],
                samples: vec![crate::model::SpikeSample {
                    mention_id: uuid::Uuid::from_u128(7),
                    author: "@newsdesk".into(),
                    text: "Lumora recalls the Halo".into(),
                    url: Some("https://example.com/1".into()),
                    reach: 23_434,
                }],
            }),
            ..sample_alert()
        };
        assert_eq!(
            codec.decode(&codec.encode(&spike).unwrap()).await.unwrap(),
            spike
        );
    }

    #[tokio::test]
    async fn a_retraction_round_trips_with_the_posts_id() {
        let codec = Codec::<Mention>::single_object().unwrap();
        let post = sample_mention();
        let retraction = Mention::retraction(
            post.source.clone(),
            post.native_id.clone(),
            Author {
                id: Some("2244994945".into()),
                ..Author::handle("@maria")
            },
            Some(post.created_at),
            1_763_888_500_000_000,
        );
        assert_eq!(retraction.id, post.id);
        let decoded = codec
            .decode(&codec.encode(&retraction).unwrap())
            .await
            .unwrap();
        assert_eq!(decoded, retraction);
        assert!(decoded.is_retraction());

        // Records of the previous version (no deleted_at) are posts: serde's default.
        // Their readability is every_shipped_schema_version_stays_readable's business.
        assert!(!codec
            .decode(&codec.encode(&post).unwrap())
            .await
            .unwrap()
            .is_retraction());
    }

    /// Replaces `{"type": "long", "logicalType": ...}` by `"long"`, as the specification's
    /// Parsing Canonical Form does.
    fn strip_logical_types(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if map.contains_key("logicalType") && map["type"].is_string() {
                    *value = map["type"].clone();
                    return;
                }
                map.values_mut().for_each(strip_logical_types);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip_logical_types),
            _ => {}
        }
    }

    #[test]
    fn fingerprints_follow_the_specification() {
        for json in [
            MENTION_SCHEMA,
            ENRICHED_MENTION_SCHEMA,
            ALERT_SCHEMA,
            SOURCE_HEALTH_SCHEMA,
        ] {
            let parsed = ParsedSchema::parse(json).unwrap();
            let mut plain: serde_json::Value = serde_json::from_str(json).unwrap();
            strip_logical_types(&mut plain);
            let apache = apache_avro::Schema::parse_str(&plain.to_string()).unwrap();
            let expected = apache.fingerprint::<apache_avro::rabin::Rabin>().bytes;
            assert_eq!(parsed.fingerprint.to_le_bytes().to_vec(), expected);
        }
    }

    #[tokio::test]
    async fn bad_payloads_get_errors_that_name_the_problem() {
        let codec = Codec::<Mention>::single_object().unwrap();
        let good = codec.encode(&sample_mention()).unwrap();
        let check = |payload: Vec<u8>, expected: &str| {
            let error = codec
                .decode_single_object(&payload)
                .unwrap_err()
                .to_string();
            assert!(
                error.contains(expected),
                "{error} should contain {expected}"
            );
        };
        check(vec![0xC3], "unknown framing");
        check(vec![0x7b, 0x22], "unknown framing");
        check(
            good[..6].to_vec(),
            "shorter than the 10-byte single-object header",
        );
        let mut unknown = good.clone();
        unknown[2] ^= 0xff;
        check(unknown, "unknown writer schema");
        check(good[..good.len() - 5].to_vec(), "Avro decoding failed");
        assert!(matches!(codec.decode(&[]).await, Err(CodecError::Empty)));
        let confluent = codec.decode(&[0, 0, 0, 0, 7, 1]).await.unwrap_err();
        assert_eq!(confluent.kind(), "unknown_schema", "{confluent}");
    }

    /// The Mention schema before `has_media` and `conversation_id` existed.
    fn old_mention_schema() -> String {
        let mut schema: serde_json::Value = serde_json::from_str(MENTION_SCHEMA).unwrap();
        let fields = schema["fields"].as_array_mut().unwrap();
        fields.retain(|f| f["name"] != "has_media" && f["name"] != "conversation_id");
        schema.to_string()
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct OldMention {
        #[serde(with = "uuid_string")]
        id: uuid::Uuid,
        native_id: String,
        source: Source,
        url: Option<String>,
        author: Author,
        text: String,
        lang_hint: Option<String>,
        created_at: i64,
        collected_at: i64,
        engagement: Engagement,
        parent_id: Option<String>,
    }

    impl AvroRecord for OldMention {
        const SCHEMA: &'static str = "";
    }

    #[tokio::test]
    async fn old_writer_new_reader_fills_defaults() {
        let old_json = old_mention_schema();
        let old = ParsedSchema::parse(&old_json).unwrap();
        let m = sample_mention();
        let old_value = OldMention {
            id: m.id,
            native_id: m.native_id.clone(),
            source: m.source.clone(),
            url: m.url.clone(),
            author: m.author.clone(),
            text: m.text.clone(),
            lang_hint: m.lang_hint.clone(),
            created_at: m.created_at,
            collected_at: m.collected_at,
            engagement: m.engagement.clone(),
            parent_id: None,
        };
        let mut payload = SINGLE_OBJECT_MARKER.to_vec();
        payload.extend_from_slice(&old.fingerprint.to_le_bytes());
        let payload = serde_avro_fast::to_datum(
            &old_value,
            payload,
            &mut serde_avro_fast::ser::SerializerConfig::new(&old.fast),
        )
        .unwrap();

        let mut reader = Codec::<Mention>::single_object().unwrap();
        assert!(matches!(
            reader.decode(&payload).await,
            Err(CodecError::UnknownFingerprint { .. })
        ));
        reader.accept_writer_schema(&old_json).unwrap();
        let decoded = reader.decode(&payload).await.unwrap();
        assert_eq!(
            decoded,
            Mention {
                has_media: false,
                conversation_id: None,
                ..m
            }
        );
    }

    #[tokio::test]
    async fn new_writer_old_reader_skips_new_fields() {
        let writer = Codec::<Mention>::single_object().unwrap();
        let m = sample_mention();
        let payload = writer.encode(&m).unwrap();
        // An old reader knows the new schema (from the registry or a schema file) and maps it
        // onto its own type, dropping the fields it does not have.
        let decoded: OldMention =
            decode_datum(&payload[SINGLE_OBJECT_HEADER_LEN..], writer.writer_schema()).unwrap();
        assert_eq!(decoded.text, m.text);
        assert_eq!(decoded.engagement, m.engagement);
    }

    #[test]
    fn schema_changes_stay_compatible_both_ways() {
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let old = apache_avro::Schema::parse_str(&old_mention_schema()).unwrap();
        let new = apache_avro::Schema::parse_str(MENTION_SCHEMA).unwrap();
        SchemaCompatibility::can_read(&old, &new).expect("new reader reads old data");
        SchemaCompatibility::can_read(&new, &old).expect("old reader reads new data");
    }

    /// `schemas/fingerprints.tsv` records every schema version ever shipped. When a schema
    /// changes, its fingerprint is new: record it, and keep the previous version readable.
    #[test]
    fn every_shipped_schema_version_stays_readable() {
        use apache_avro::schema_compatibility::SchemaCompatibility;
        let shipped = include_str!("../../../schemas/fingerprints.tsv");
        let check = |json: &str, history: &[&str]| {
            let current = ParsedSchema::parse(json).unwrap();
            let name = schema_name(json);
            let mut readable: Vec<u64> = vec![current.fingerprint];
            for earlier in history {
                let parsed = ParsedSchema::parse(earlier).unwrap();
                let (old, new) = (
                    apache_avro::Schema::parse_str(earlier).unwrap(),
                    apache_avro::Schema::parse_str(json).unwrap(),
                );
                SchemaCompatibility::can_read(&old, &new).unwrap_or_else(|e| {
                    panic!("{name}: the current schema cannot read an earlier version: {e}")
                });
                readable.push(parsed.fingerprint);
            }
            let recorded: Vec<u64> = shipped
                .lines()
                .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
                .filter_map(|line| {
                    let mut fields = line.split('\t');
                    (fields.next() == Some(name.as_str()))
                        .then(|| u64::from_str_radix(fields.next().unwrap(), 16).unwrap())
                })
                .collect();
            assert!(
                recorded.contains(&current.fingerprint),
                "schema {name} changed (fingerprint {:016x}): copy the previous version to schemas/history/, \
                 add it to {name}'s AvroRecord::HISTORY, and record the new fingerprint in schemas/fingerprints.tsv",
                current.fingerprint
            );
            for fingerprint in recorded {
                assert!(readable.contains(&fingerprint), "{name}: shipped version {fingerprint:016x} is no longer readable; add it to HISTORY");
            }
        };
        check(Mention::SCHEMA, Mention::HISTORY);
        check(EnrichedMention::SCHEMA, EnrichedMention::HISTORY);
        check(Alert::SCHEMA, Alert::HISTORY);
        check(SourceHealthEvent::SCHEMA, SourceHealthEvent::HISTORY);
    }

    #[test]
    fn every_schema_field_has_a_doc() {
        fn walk(value: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
            if let Some(fields) = value.get("fields").and_then(|f| f.as_array()) {
                for field in fields {
                    let name = field["name"].as_str().unwrap_or("?");
                    if field
                        .get("doc")
                        .and_then(|d| d.as_str())
                        .is_none_or(str::is_empty)
                    {
                        missing.push(format!("{path}.{name}"));
                    }
                    walk(&field["type"], &format!("{path}.{name}"), missing);
                }
            }
            if let Some(items) = value.get("items") {
                walk(items, path, missing);
            }
            if let Some(union) = value.as_array() {
                union.iter().for_each(|v| walk(v, path, missing));
            }
        }
        for json in [
            MENTION_SCHEMA,
            ENRICHED_MENTION_SCHEMA,
            ALERT_SCHEMA,
            SOURCE_HEALTH_SCHEMA,
        ] {
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            let mut missing = Vec::new();
            walk(&value, value["name"].as_str().unwrap(), &mut missing);
            assert!(missing.is_empty(), "fields without doc: {missing:?}");
        }
    }

    #[test]
    fn the_enriched_schema_embeds_the_mention_schema_unchanged() {
        let enriched: serde_json::Value = serde_json::from_str(ENRICHED_MENTION_SCHEMA).unwrap();
        let embedded = enriched["fields"][0]["type"].to_string();
        let a = apache_avro::Schema::parse_str(&embedded).unwrap();
        let b = apache_avro::Schema::parse_str(MENTION_SCHEMA).unwrap();
        assert_eq!(a.canonical_form(), b.canonical_form());
    }
}
