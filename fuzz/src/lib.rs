//! The bodies of Earshot's fuzz targets, as plain functions of the input bytes, so that the
//! same code runs under libFuzzer (`cargo fuzz run <target>`, the binaries in
//! `fuzz_targets/`, nightly) and on stable over the committed inputs (`cargo test` in this
//! crate: every file under `seeds/<target>/` and `regressions/<target>/`).
//!
//! Each body feeds untrusted bytes to one parser the services expose to the outside world and
//! checks what must hold of its answer, beyond "no panic":
//! - [`avro_decode`]: a Kafka payload through `Codec::decode`, for every record type, in
//!   single-object and Confluent framing; a decoded record re-encodes to bytes that decode to
//!   the same bytes again.
//! - [`query_parse`]: a watchlist query (first line) parsed, compiled into a `QuerySet` and
//!   matched against a text (the rest); errors point inside the query, spans inside the text.
//! - [`feed_parse`]: an RSS/Atom/JSON feed body through `rss::parse_feed` and every entry
//!   through `rss::map_entry`; every mention it makes encodes and decodes.
//! - [`ingest_body`]: a `POST /v1/mentions` body through `ingest::split_body` and
//!   `ingest::parse_item`; every accepted mention is valid and encodes and decodes.
//! - [`config_load`]: a YAML configuration file through `Config::load` (the same parsing,
//!   merging and validation `earshot check` and every service run at start); a rejected file
//!   names at least one problem, each with the key path or file it is about.

use std::sync::OnceLock;

use earshot_collector::ingest;
use earshot_collector::sources::rss;
use earshot_core::codec::{AvroRecord, Codec};
use earshot_core::config::{Config, ConfigSources};
use earshot_core::model::{Alert, EnrichedMention, Mention, Source, SourceHealthEvent};
use earshot_query::{Document, QuerySet, WatchlistQuery};

/// A target's body: the input bytes in, a panic on a bug.
pub type Target = fn(&[u8]);

/// The targets, by name (the names of the binaries and of the corpus directories).
pub const TARGETS: &[(&str, Target)] = &[
    ("avro_decode", avro_decode),
    ("query_parse", query_parse),
    ("feed_parse", feed_parse),
    ("ingest_body", ingest_body),
    ("config_load", config_load),
];

/// The registry id the Confluent-framed inputs use for each type's current schema; earlier
/// versions (`AvroRecord::HISTORY`) follow it.
pub const CONFLUENT_FIRST_ID: u32 = 1;

/// The first byte picks the record type (its value modulo 4: mention, enriched mention,
/// alert, source health); the rest is the payload as it comes off a topic, in either framing.
pub fn avro_decode(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => decode_and_recode(codecs().mention(), payload),
        1 => decode_and_recode(codecs().enriched(), payload),
        2 => decode_and_recode(codecs().alert(), payload),
        _ => decode_and_recode(codecs().source_health(), payload),
    }
}

/// The first line is a watchlist query, the rest the text of a mention.
pub fn query_parse(data: &[u8]) {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (query, text) = input.split_once('\n').unwrap_or((input, ""));
    let node = match earshot_query::parse(query) {
        Ok(node) => node,
        Err(error) => {
            assert!(
                error.position <= query.chars().count(),
                "error position {} past the end of {query:?}",
                error.position
            );
            let _ = error.to_string();
            return;
        }
    };
    let set = QuerySet::new(vec![WatchlistQuery {
        name: "fuzz".into(),
        query: node,
    }]);
    let document = Document {
        text,
        author: "@fuzz_author",
        url: Some("https://www.reddit.com/r/fuzz/comments/1"),
        source: "reddit",
        lang: Some("en"),
        followers: Some(1_000),
    };
    let matches = set.matches(&document);
    // The candidates' prefilter never hides a match: the trace evaluates the query whatever
    // words the text has.
    let explained = set.explain(0, &document);
    assert_eq!(
        !matches.is_empty(),
        explained.starts_with('✓'),
        "{query:?} on {text:?}:\n{explained}"
    );
    for found in matches {
        assert!((0.0..=1.0).contains(&found.relevance), "{found:?}");
        let mut end_of_previous = 0;
        for &(start, end) in &found.spans {
            let (start, end) = (start as usize, end as usize);
            assert!(start < end && end <= text.len(), "{found:?} in {text:?}");
            assert!(start >= end_of_previous, "overlapping spans {found:?}");
            assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
            end_of_previous = end;
        }
        let _ = set.clause(&found);
    }
}

/// A feed body as a server sends it.
pub fn feed_parse(data: &[u8]) {
    let Ok(feed) = rss::parse_feed(data) else {
        return;
    };
    let source = Source {
        kind: rss::KIND.into(),
        instance: "fuzz".into(),
    };
    for entry in &feed.entries {
        if let Ok(mention) = rss::map_entry(&feed, entry, source.clone(), 1_763_888_400_000_000) {
            assert!(!mention.text.is_empty(), "{mention:?}");
            assert!(!mention.native_id.trim().is_empty(), "{mention:?}");
            encodes_and_decodes(codecs().mention(), &mention);
        }
    }
}

/// A request body of `POST /v1/mentions` (or a replay file's contents).
pub fn ingest_body(data: &[u8]) {
    let Ok(items) = ingest::split_body(data) else {
        return;
    };
    let source = Source {
        kind: "ingest".into(),
        instance: "fuzz".into(),
    };
    for (_, item) in items {
        if let Ok(mention) = ingest::parse_item(item, &source) {
            // Only a retraction may have no text (it is dropped).
            assert!(
                mention.deleted_at.is_some() || !mention.text.trim().is_empty(),
                "{mention:?}"
            );
            assert!(mention.text.len() <= ingest::MAX_TEXT_BYTES);
            assert!(!mention.author.handle.trim().is_empty(), "{mention:?}");
            encodes_and_decodes(codecs().mention(), &mention);
        }
    }
}

/// A configuration file as an operator writes it (YAML).
pub fn config_load(data: &[u8]) {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let sources = ConfigSources {
        defaults_yaml: Some(yaml),
        file: None,
        environment: false,
    };
    match Config::load(sources) {
        Ok(config) => {
            // What was accepted is accepted again as the services see it once loaded: the
            // validated config, written out and read back, names no problem.
            let value = serde_json::to_value(&config).expect("a loaded config serializes");
            if let Err(errors) = Config::from_value(value) {
                panic!("a loaded config is rejected when read back: {errors}\n{yaml:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.problems.is_empty(), "rejected without a reason: {yaml:?}");
            for problem in &errors.problems {
                let (path, message) = problem
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("a problem that names no key path: {problem:?}"));
                assert!(!path.trim().is_empty() && !message.trim().is_empty(), "{problem:?}");
            }
            assert!(errors.to_string().starts_with("invalid configuration ("));
        }
    }
}

/// One codec per record type, built once, knowing every schema version of its type both by
/// fingerprint and by registry id.
pub struct FuzzCodecs {
    mention: Codec<Mention>,
    enriched: Codec<EnrichedMention>,
    alert: Codec<Alert>,
    source_health: Codec<SourceHealthEvent>,
}

impl FuzzCodecs {
    pub fn mention(&self) -> &Codec<Mention> {
        &self.mention
    }
    pub fn enriched(&self) -> &Codec<EnrichedMention> {
        &self.enriched
    }
    pub fn alert(&self) -> &Codec<Alert> {
        &self.alert
    }
    pub fn source_health(&self) -> &Codec<SourceHealthEvent> {
        &self.source_health
    }
}

pub fn codecs() -> &'static FuzzCodecs {
    static CODECS: OnceLock<FuzzCodecs> = OnceLock::new();
    CODECS.get_or_init(|| FuzzCodecs {
        mention: codec(),
        enriched: codec(),
        alert: codec(),
        source_health: codec(),
    })
}

fn codec<T: AvroRecord>() -> Codec<T> {
    let codec = Codec::<T>::single_object().expect("the shipped schemas parse");
    for (id, json) in
        (CONFLUENT_FIRST_ID..).zip(std::iter::once(T::SCHEMA).chain(T::HISTORY.iter().copied()))
    {
        codec
            .remember_registry_schema(id, json)
            .expect("the shipped schemas parse");
    }
    codec
}

/// Decodes `payload`; when it decodes, the record re-encodes, and the re-encoded bytes decode
/// and re-encode to themselves (bytes, not values, are compared: a NaN score is not equal to
/// itself).
fn decode_and_recode<T: AvroRecord>(codec: &Codec<T>, payload: &[u8]) {
    // No I/O: every registry id a payload may name is either remembered or unknown.
    let Ok(record) = futures::executor::block_on(codec.decode(payload)) else {
        return;
    };
    let bytes = codec
        .encode(&record)
        .unwrap_or_else(|e| panic!("a decoded record does not encode: {e}"));
    let again = codec
        .decode_single_object(&bytes)
        .unwrap_or_else(|e| panic!("a re-encoded record does not decode: {e}"));
    assert_eq!(codec.encode(&again).expect("encodes"), bytes);
}

fn encodes_and_decodes<T: AvroRecord>(codec: &Codec<T>, record: &T) {
    let bytes = codec
        .encode(record)
        .unwrap_or_else(|e| panic!("an accepted record does not encode: {e}"));
    let again = codec
        .decode_single_object(&bytes)
        .unwrap_or_else(|e| panic!("an accepted record does not decode: {e}"));
    assert_eq!(codec.encode(&again).expect("encodes"), bytes);
}

#[cfg(test)]
mod tests;
