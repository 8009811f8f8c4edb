//! Avro decoding and encoding of an `EnrichedMention`: the hot path (serde_avro_fast, straight
//! through serde) against apache-avro's generic `Value` path, measured in the same run.
//!
//! `cargo bench -p earshot-core --bench codec` (optionally `-- 200000` records).

use std::hint::black_box;
use std::time::{Duration, Instant};

use earshot_core::codec::{Codec, ENRICHED_MENTION_SCHEMA};
use earshot_core::model::*;

fn sample() -> EnrichedMention {
    let mention = Mention {
        id: mention_id("x", "1864112345678"),
        native_id: "1864112345678".into(),
        source: Source { kind: "x".into(), instance: "brand-search".into() },
        url: Some("https://x.example/parcelly_fan/status/1864112345678".into()),
        author: Author { handle: "@parcelly_fan".into(), name: Some("Sam Okafor".into()), followers: Some(48_210), verified: false, id: None },
        text: "@Parcelly my package has been 'out for delivery' for 3 days now and support just closes the chat. #ParcellyDown".into(),
        lang_hint: Some("en".into()),
        created_at: 1_795_431_600_000_000,
        collected_at: 1_795_431_601_250_000,
        engagement: Engagement { likes: 41, reposts: 9, replies: 12 },
        parent_id: None,
        conversation_id: Some("1864112345678".into()),
        has_media: false,
        deleted_at: None,
    };
    EnrichedMention {
        mention,
        watchlist: "parcelly".into(),
        matches: vec![WatchlistMatch {
            watchlist: "parcelly".into(),
            relevance: 0.75,
            clause: "\"@Parcelly\" OR \"#ParcellyDown\"".into(),
            spans: vec![
                Span { start: 0, end: 9 },
                Span {
                    start: 95,
                    end: 108,
                },
            ],
        }],
        sentiment: Sentiment {
            neg: 0.21,
            neu: 0.79,
            pos: 0.0,
            compound: -0.4767,
        },
        sentences: Default::default(),
        language: Some("en".into()),
        language_confidence: 0.98,
        spam_score: 0.02,
        intent: "complaint".into(),
        reach: 48_272,
        urgency: 0.81,
        signals: Default::default(),
        enriched_at: 1_795_431_601_260_000,
    }
}

fn time<F: FnMut()>(records: usize, mut f: F) -> Duration {
    // Warm up, then take the best of five runs (the machine is shared and noisy).
    for _ in 0..records / 10 {
        f();
    }
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..records {
                f();
            }
            started.elapsed()
        })
        .min()
        .expect("five runs")
}

fn main() {
    let records: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let value = sample();
    let codec = Codec::<EnrichedMention>::single_object().expect("schema parses");
    let payload = codec.encode(&value).expect("encodes");
    let datum = payload[10..].to_vec();
    let apache_schema =
        apache_avro::Schema::parse_str(ENRICHED_MENTION_SCHEMA).expect("schema parses");
    let value_reader = apache_avro::reader::datum::GenericDatumReader::builder(&apache_schema)
        .build()
        .expect("reader");
    let value_writer = apache_avro::writer::datum::GenericDatumWriter::builder(&apache_schema)
        .build()
        .expect("writer");

    // Both decoders must agree before they are timed.
    let via_value: EnrichedMention = apache_avro::from_value(
        &value_reader
            .read_value(&mut &datum[..])
            .expect("apache-avro decodes"),
    )
    .expect("maps onto the type");
    assert_eq!(via_value, value);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let fast_decode = time(records, || {
        black_box(
            codec
                .decode_single_object(black_box(&payload))
                .expect("decodes"),
        );
    });
    let value_decode = time(records, || {
        let decoded = value_reader
            .read_value(&mut black_box(&datum[..]))
            .expect("decodes");
        black_box(apache_avro::from_value::<EnrichedMention>(&decoded).expect("maps"));
    });
    let fast_encode = time(records, || {
        black_box(codec.encode(black_box(&value)).expect("encodes"));
    });
    let value_encode = time(records, || {
        let generic = apache_avro::to_value(black_box(&value)).expect("to value");
        let resolved = generic.resolve(&apache_schema).expect("resolves");
        black_box(value_writer.write_value_to_vec(resolved).expect("encodes"));
    });
    // The async wrapper the stages call, for its overhead over the synchronous decode.
    let async_decode = time(records, || {
        runtime.block_on(async {
            black_box(codec.decode(black_box(&payload)).await.expect("decodes"));
        });
    });

    let per_sec = |d: Duration| records as f64 / d.as_secs_f64();
    println!(
        "EnrichedMention, {} bytes single-object, {records} records, best of 5",
        payload.len()
    );
    println!("{:<44}{:>14}{:>10}", "path", "records/s", "ratio");
    let row = |name: &str, d: Duration, base: Duration| {
        println!(
            "{name:<44}{:>14.0}{:>9.1}x",
            per_sec(d),
            base.as_secs_f64() / d.as_secs_f64()
        );
    };
    row(
        "decode apache-avro Value (baseline)",
        value_decode,
        value_decode,
    );
    row("decode serde_avro_fast", fast_decode, value_decode);
    row(
        "decode serde_avro_fast via Codec::decode",
        async_decode,
        value_decode,
    );
    row(
        "encode apache-avro Value (baseline)",
        value_encode,
        value_encode,
    );
    row("encode serde_avro_fast", fast_encode, value_encode);
}
