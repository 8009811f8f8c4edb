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

use crate::model::{Alert, EnrichedMention, Mention};
use crate::registry::SchemaRegistry;

/// The schemas Earshot writes today, embedded at build time.
pub const MENTION_SCHEMA: &str = include_str!("../../../schemas/mention.avsc");
pub const ENRICHED_MENTION_SCHEMA: &str = include_str!("../../../schemas/enriched_mention.avsc");
pub const ALERT_SCHEMA: &str = include_str!("../../../schemas/alert.avsc");

/// Single-object encoding marker (Avro specification, "Single object encoding").
const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER_LEN: usize = 10;
const CONFLUENT_MAGIC: u8 = 0;
const CONFLUENT_HEADER_LEN: usize = 5;

/// A type carried on a topic, with the Avro schema it is written with.
pub trait AvroRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The writer schema (JSON).
    const SCHEMA: &'static str;
}

impl AvroRecord for Mention {
    const SCHEMA: &'static str = MENTION_SCHEMA;
}
impl AvroRecord for EnrichedMention {
    const SCHEMA: &'static str = ENRICHED_MENTION_SCHEMA;
}
impl AvroRecord for Alert {
    const SCHEMA: &'static str = ALERT_SCHEMA;
}

/// Why a payload could not be encoded or decoded. Decode errors are permanent for the record:
/// it goes to the dead-letter topic with this error as the reason.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("payload is empty")]
    Empty,
    #[error("payload of {len} bytes is shorter than the {expected}-byte {framing} header")]
    Truncated { len: usize, expected: usize, framing: &'static str },
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
            CodecError::UnknownFingerprint { .. } | CodecError::UnknownSchemaId { .. } => "unknown_schema",
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
    /// CRC-64-AVRO (Rabin) fingerprint of the canonical form, as apache-avro computes it.
    pub fingerprint: u64,
    pub canonical_form: String,
}

impl ParsedSchema {
    pub fn parse(json: &str) -> Result<Self, CodecError> {
        let schema_error = |reason: String| CodecError::Schema { name: schema_name(json), reason };
        let avro = apache_avro::Schema::parse_str(json).map_err(|e| schema_error(e.to_string()))?;
        let fingerprint_bytes = avro.fingerprint::<apache_avro::rabin::Rabin>().bytes;
        let fingerprint = u64::from_le_bytes(
            fingerprint_bytes
                .as_slice()
                .try_into()
                .map_err(|_| schema_error("fingerprint is not 8 bytes".into()))?,
        );
        let fast: serde_avro_fast::Schema = json.parse().map_err(|e: serde_avro_fast::schema::SchemaError| schema_error(e.to_string()))?;
        Ok(ParsedSchema { fast: Arc::new(fast), fingerprint, canonical_form: avro.canonical_form() })
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
    Confluent { registry: Arc<SchemaRegistry>, subject: String },
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
        let known = HashMap::from([(writer.fingerprint, writer.clone())]);
        Ok(Codec { writer, framing, known, by_registry_id: RwLock::default(), writer_id: None, _type: PhantomData })
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
            let id = registry.register(subject, T::SCHEMA).await.map_err(|e| CodecError::Schema {
                name: subject.clone(),
                reason: format!("registering with the schema registry failed: {e}"),
            })?;
            self.writer_id = Some(id);
            self.by_registry_id.write().expect("poisoned").insert(id, self.writer.clone());
        }
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
        serde_avro_fast::to_datum(value, out, &mut config).map_err(|e| CodecError::Encode(e.to_string()))
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
            return Err(CodecError::BadMagic { found: payload.iter().take(2).copied().collect() });
        }
        if payload.len() < SINGLE_OBJECT_HEADER_LEN {
            return Err(CodecError::Truncated {
                len: payload.len(),
                expected: SINGLE_OBJECT_HEADER_LEN,
                framing: "single-object",
            });
        }
        let fingerprint = u64::from_le_bytes(payload[2..10].try_into().expect("8 bytes"));
        let schema = self.known.get(&fingerprint).ok_or(CodecError::UnknownFingerprint { fingerprint })?;
        decode_datum(&payload[SINGLE_OBJECT_HEADER_LEN..], schema)
    }

    async fn registry_schema(&self, id: u32) -> Result<ParsedSchema, CodecError> {
        if let Some(found) = self.by_registry_id.read().expect("poisoned").get(&id) {
            return Ok(found.clone());
        }
        let Framing::Confluent { registry, .. } = &self.framing else {
            return Err(CodecError::UnknownSchemaId { id, reason: "no schema registry is configured".into() });
        };
        let json = registry
            .schema_by_id(id)
            .await
            .map_err(|e| CodecError::UnknownSchemaId { id, reason: e.to_string() })?;
        let parsed = ParsedSchema::parse(&json)?;
        self.by_registry_id.write().expect("poisoned").insert(id, parsed.clone());
        Ok(parsed)
    }
}

fn split_confluent(payload: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    if payload.len() < CONFLUENT_HEADER_LEN {
        return Err(CodecError::Truncated { len: payload.len(), expected: CONFLUENT_HEADER_LEN, framing: "Confluent" });
    }
    let id = u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes"));
    Ok((id, &payload[CONFLUENT_HEADER_LEN..]))
}

fn decode_datum<T: DeserializeOwned>(datum: &[u8], schema: &ParsedSchema) -> Result<T, CodecError> {
    serde_avro_fast::from_datum_slice::<T>(datum, &schema.fast).map_err(|e| CodecError::Decode(e.to_string()))
}

/// The codecs of the three record types, built once per service.
pub struct Codecs {
    pub mention: Codec<Mention>,
    pub enriched: Codec<EnrichedMention>,
    pub alert: Codec<Alert>,
}

impl Codecs {
    /// Single-object codecs, or Confluent codecs registered under `<topic>-value` subjects.
    pub async fn new(registry: Option<Arc<SchemaRegistry>>, topics: &crate::config::TopicsConfig) -> Result<Self, CodecError> {
        let Some(registry) = registry else {
            return Ok(Codecs {
                mention: Codec::single_object()?,
                enriched: Codec::single_object()?,
                alert: Codec::single_object()?,
            });
        };
        let framing = |topic: &str| Framing::Confluent { registry: registry.clone(), subject: format!("{topic}-value") };
        let mut codecs = Codecs {
            mention: Codec::with_framing(framing(&topics.raw))?,
            enriched: Codec::with_framing(framing(&topics.enriched))?,
            alert: Codec::with_framing(framing(&topics.alerts))?,
        };
        codecs.mention.register().await?;
        codecs.enriched.register().await?;
        codecs.alert.register().await?;
        Ok(codecs)
    }
}
