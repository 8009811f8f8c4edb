//! Configuration: built-in defaults, then a YAML or TOML file, then `EARSHOT_…` environment
//! variables (`EARSHOT_KAFKA__BOOTSTRAP_SERVERS` sets `kafka.bootstrap_servers`).
//!
//! The structs do not use `deny_unknown_fields`, which would stop at the first unknown key:
//! [`Config::from_value`] (the only way a config is loaded) walks them with `serde_ignored`
//! and rejects every unknown key it reports.
//!
//! Loading reports every problem at once, each with its key path: unknown keys anywhere, a
//! type error per section, and every failed validation rule. Binaries exit with code 64
//! ([`EXIT_CONFIG`]) when there is any.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Exit code for invalid configuration (`EX_CONFIG` would be 78; sysexits' `EX_USAGE` is 64,
/// which is what Earshot documents and tests for).
pub const EXIT_CONFIG: i32 = 64;

/// The whole configuration; each service reads its own section plus `kafka`, `topics` and
/// `telemetry`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Kafka connection and client tuning.
    pub kafka: KafkaConfig,
    /// Topic names.
    pub topics: TopicsConfig,
    /// Metrics, health endpoints and logs.
    pub telemetry: TelemetryConfig,
    /// The collector: HTTP ingest and NDJSON replay.
    pub collector: CollectorConfig,
    /// The enricher: watchlists.
    pub enricher: EnricherConfig,
    /// The router: routes, receivers and delivery.
    pub router: RouterConfig,
    /// The sink: PostgreSQL and Parquet.
    pub sink: SinkConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers.
    pub bootstrap_servers: String,
    /// Prefix of consumer group ids; each service appends its name (`earshot-enricher`).
    pub group_prefix: String,
    /// Create missing topics at start (for development; production provisions them).
    pub create_topics: bool,
    /// Partitions of topics created at start.
    pub topic_partitions: i32,
    /// Replication factor of topics created at start.
    pub topic_replication_factor: i32,
    /// How long the producer keeps retrying a record before reporting it failed.
    pub message_timeout_ms: u64,
    /// Records in flight per service (read but not yet acknowledged downstream).
    pub max_in_flight: usize,
    /// Upper bound on draining in-flight records at shutdown.
    pub drain_timeout_ms: u64,
    /// Consumer group session timeout.
    pub session_timeout_ms: u64,
    /// How often stored offsets are committed in the background (they are also committed
    /// when partitions are revoked and at shutdown).
    pub commit_interval_ms: u64,
    /// Cap on librdkafka's producer queue, in KiB (keep it below the memory limit).
    pub producer_queue_max_kbytes: u64,
    /// Cap on librdkafka's prefetch queue per partition, in KiB.
    pub consumer_queue_max_kbytes: u64,
    /// Largest record accepted or produced, in bytes.
    pub max_message_bytes: usize,
    /// URL of a Confluent-compatible Schema Registry; when set, records use the Confluent wire
    /// format, otherwise Avro single-object encoding.
    pub schema_registry_url: Option<String>,
    /// Extra librdkafka properties (`security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `ssl.ca.location`, `client.rack`, ...). Not for secrets: put those in
    /// `secret_properties_env` or `secret_properties_file`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties read from environment variables at start, property name to
    /// variable name, e.g. `sasl.password: KAFKA_SASL_PASSWORD`.
    pub secret_properties_env: BTreeMap<String, String>,
    /// librdkafka properties read from files at start (for example a mounted Kubernetes
    /// Secret), property name to path, e.g. `sasl.password: /etc/kafka-user/password`. Trailing
    /// whitespace is ignored.
    pub secret_properties_file: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".into(),
            group_prefix: "earshot".into(),
            create_topics: true,
            topic_partitions: 4,
            topic_replication_factor: 1,
            message_timeout_ms: 120_000,
            max_in_flight: 10_000,
            drain_timeout_ms: 20_000,
            session_timeout_ms: 10_000,
            commit_interval_ms: 1_000,
            producer_queue_max_kbytes: 65_536,
            consumer_queue_max_kbytes: 16_384,
            max_message_bytes: 1_048_576,
            schema_registry_url: None,
            properties: BTreeMap::new(),
            secret_properties_env: BTreeMap::new(),
            secret_properties_file: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TopicsConfig {
    /// Collector → enricher, `Mention` keyed by mention id.
    pub raw: String,
    /// Enricher → router and sink, `EnrichedMention` keyed by watchlist.
    pub enriched: String,
    /// Router → sink, `Alert` keyed by alert id.
    pub alerts: String,
    /// Records that could not be decoded, processed or delivered, with the reason in headers.
    pub deadletter: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw: "earshot.mentions.raw".into(),
            enriched: "earshot.mentions.enriched".into(),
            alerts: "earshot.alerts".into(),
            deadletter: "earshot.deadletter".into(),
        }
    }
}

impl TopicsConfig {
    pub fn all(&self) -> [&str; 4] {
        [&self.raw, &self.enriched, &self.alerts, &self.deadletter]
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetryConfig {
    /// Address of the `/metrics`, `/healthz` and `/readyz` server; port 0 picks a free port.
    pub listen: SocketAddr,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `earshot_router=debug,info`.
    pub log_level: String,
    /// `/healthz` fails when the processing loop has not ticked for this long.
    pub stall_timeout_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: "0.0.0.0:9464".parse().expect("valid address"),
            log_format: LogFormat::Text,
            log_level: "info".into(),
            stall_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectorConfig {
    /// The HTTP ingest endpoint `POST /v1/mentions`.
    pub http: Option<HttpIngestConfig>,
    /// Replay an NDJSON file of mentions, then stop replaying.
    pub replay: Option<ReplayConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpIngestConfig {
    /// Listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Environment variable holding the bearer token clients must send.
    pub token_env: Option<String>,
    /// File holding the bearer token (trailing whitespace ignored).
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How long a request waits for Kafka to acknowledge its mentions before answering 503.
    pub ack_timeout_ms: u64,
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        HttpIngestConfig {
            listen: "0.0.0.0:8080".parse().expect("valid address"),
            token_env: Some("EARSHOT_INGEST_TOKEN".into()),
            token_file: None,
            max_body_bytes: 8 * 1024 * 1024,
            ack_timeout_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayConfig {
    /// NDJSON file, one mention per line (the ingest format).
    pub path: PathBuf,
    /// Mentions per second; 0 replays as fast as the pipeline takes them.
    #[serde(default)]
    pub rate_per_sec: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EnricherConfig {
    /// Named watchlists: brands, products, competitors, topics.
    pub watchlists: Vec<WatchlistConfig>,
    /// Intent cue phrases per language (ISO 639-1) and intent, replacing the built-in list of
    /// that intent in that language; other intents and languages keep theirs. Intents:
    /// complaint, question, praise, purchase_intent, churn_threat, crisis_risk, opportunity.
    /// A cue matches whole words, case- and accent-insensitively.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub intent_cues: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Link-farm and SEO phrases added to the built-in list ("replica watches", "payday
    /// loan", "packers and movers", ...); one found makes a mention likely spam.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spam_phrases: Vec<String>,
    /// Weights of the urgency score (see RELIABILITY.md, "Urgency").
    pub urgency: UrgencyWeights,
    /// Text longer than this is cut (at a character boundary) and flagged `text_truncated`.
    pub max_text_bytes: usize,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            watchlists: Vec::new(),
            intent_cues: BTreeMap::new(),
            spam_phrases: Vec::new(),
            urgency: UrgencyWeights::default(),
            max_text_bytes: 64 * 1024,
        }
    }
}

/// Urgency = (negativity·w_n + intent·w_i + reach·w_r + velocity·w_v) / (w_n + w_i + w_r + w_v),
/// times 1 − spam_score.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrgencyWeights {
    /// Weight of negativity (max(0, −compound sentiment)).
    pub negativity: f64,
    /// Weight of the most urgent intent's severity (crisis 1, churn 0.8, complaint 0.6, ...).
    pub intent: f64,
    /// Weight of the reach score.
    pub reach: f64,
    /// Weight of engagement velocity.
    pub velocity: f64,
}

impl Default for UrgencyWeights {
    fn default() -> Self {
        UrgencyWeights {
            negativity: 0.35,
            intent: 0.35,
            reach: 0.2,
            velocity: 0.1,
        }
    }
}

/// The intents the enricher knows, most urgent first.
pub const INTENTS: [&str; 7] = [
    "crisis_risk",
    "churn_threat",
    "complaint",
    "question",
    "purchase_intent",
    "opportunity",
    "praise",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WatchlistConfig {
    /// Unique name; the enriched topic is keyed by it.
    pub name: String,
    /// Plain terms, matched case- and accent-insensitively as whole words (also inside
    /// `#hashtags` and `@mentions`); any one matches. Shorthand for `query: a OR b OR ...`;
    /// with a `query` too, the watchlist matches either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<String>,
    /// A boolean query in the watchlist language: terms, "exact phrases", wildcards
    /// (`refund*`), AND / OR / NOT (juxtaposition is AND), parentheses, `NEAR/n` and ordered
    /// `NEAR/nf`, `#hashtag`, `@mention`, and the fields `author:`, `site:`, `lang:`,
    /// `source:`, `url:` and `followers:>N`. Case- and accent-insensitive. Example:
    /// `(lumora OR #lumora) AND (refund* OR "money back") NOT author:lumora_help`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Sentiment valences that differ for this watchlist's audience, word to VADER valence
    /// (-4 most negative .. 4 most positive; 0 makes a word neutral). A skate brand's
    /// `sick: 2.5` is praise; a game's `killer: 0` is no threat. Mentions keyed by this
    /// watchlist are scored with VADER's lexicon changed so; empty (the default) keeps the
    /// reference scores.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sentiment_lexicon: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouterConfig {
    /// Routes, tried in order; every matching route raises its own alert.
    pub routes: Vec<RouteConfig>,
    /// Receivers the routes name.
    pub receivers: Vec<ReceiverConfig>,
    /// Retry policy of deliveries.
    pub delivery: DeliveryConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Unique route name, recorded in each alert.
    pub name: String,
    /// The watchlist a mention must match.
    pub watchlist: String,
    /// The score tested against `threshold`.
    pub score: ScoreName,
    /// The route fires when the score is at least this.
    pub threshold: f64,
    /// The receiver to deliver to.
    pub receiver: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreName {
    /// Enriched `urgency`, 0..1.
    Urgency,
    /// The matched watchlist's relevance, 0..1.
    Relevance,
    /// Negative sentiment: `-compound`, -1..1.
    Negativity,
    /// Enriched `reach`.
    Reach,
    /// Enriched `spam_score`, 0..1.
    Spam,
}

impl ScoreName {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreName::Urgency => "urgency",
            ScoreName::Relevance => "relevance",
            ScoreName::Negativity => "negativity",
            ScoreName::Reach => "reach",
            ScoreName::Spam => "spam",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReceiverConfig {
    /// Unique receiver name.
    pub name: String,
    /// A generic JSON webhook.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Print each alert on standard output (the embedded mode's demo receiver).
    #[serde(default)]
    pub console: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// Target URL. Prefer `url_env` when the URL carries a token.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the target URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Allow targets on loopback or private addresses (off by default; on for local demos).
    #[serde(default)]
    pub allow_private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DeliveryConfig {
    /// Attempts per delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; doubles up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// Timeout of one attempt.
    pub request_timeout_ms: u64,
    /// Deliveries in flight at once.
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 6,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            request_timeout_ms: 10_000,
            concurrency: 64,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Write to PostgreSQL.
    pub postgres: Option<PostgresConfig>,
    /// Write Parquet files.
    pub parquet: Option<ParquetConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresConfig {
    /// Connection URL; prefer `url_env` when it holds a password.
    pub url: Option<String>,
    /// Environment variable holding the connection URL.
    pub url_env: Option<String>,
    /// Rows per transaction at most.
    pub batch_size: usize,
    /// How long a partial batch waits for more rows.
    pub batch_linger_ms: u64,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            url_env: Some("DATABASE_URL".into()),
            batch_size: 2000,
            batch_linger_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ParquetConfig {
    /// Root directory; files go under `<table>/date=YYYY-MM-DD/hour=HH/`.
    pub dir: PathBuf,
    /// Roll a file after this many rows.
    pub roll_rows: usize,
    /// Roll a file after it has been open this long.
    pub roll_secs: u64,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            dir: "earshot-data".into(),
            roll_rows: 100_000,
            roll_secs: 60,
        }
    }
}

/// Every problem found in a configuration, each naming its key path.
#[derive(Debug, Default)]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}

impl ConfigErrors {
    fn push(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.problems.push(format!("{path}: {message}"));
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where a configuration comes from, lowest precedence first.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources<'a> {
    /// Built-in defaults of the mode (for example the embedded mode's demo config), as YAML.
    pub defaults_yaml: Option<&'a str>,
    /// A YAML or TOML file, by extension.
    pub file: Option<&'a Path>,
    /// Read `EARSHOT_…` variables.
    pub environment: bool,
}

impl Config {
    /// Loads and validates; on failure, returns every problem found.
    pub fn load(sources: ConfigSources<'_>) -> Result<Config, ConfigErrors> {
        let mut builder = config::Config::builder();
        if let Some(yaml) = sources.defaults_yaml {
            builder = builder.add_source(config::File::from_str(yaml, config::FileFormat::Yaml));
        }
        if let Some(path) = sources.file {
            builder = builder.add_source(config::File::from(path).required(true));
        }
        if sources.environment {
            // Only `EARSHOT_<SECTION>__<KEY>` variables are config; others with the prefix (such
            // as the ingest token) are secrets read by name.
            let variables: config::Map<String, String> = std::env::vars()
                .filter(|(name, _)| name.starts_with("EARSHOT_") && name.contains("__"))
                .collect();
            builder = builder.add_source(
                config::Environment::with_prefix("EARSHOT")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(variables)),
            );
        }
        let mut errors = ConfigErrors::default();
        let merged = match builder.build() {
            Ok(merged) => merged,
            Err(e) => {
                errors.push(
                    sources
                        .file
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "config".into()),
                    e,
                );
                return Err(errors);
            }
        };
        let value: serde_json::Value = match merged.try_deserialize() {
            Ok(value) => value,
            Err(e) => {
                errors.push("config", e);
                return Err(errors);
            }
        };
        Self::from_value(value)
    }

    /// Builds a config from a merged JSON-like tree, reporting every problem.
    pub fn from_value(value: serde_json::Value) -> Result<Config, ConfigErrors> {
        let mut errors = ConfigErrors::default();
        let mut config = Config::default();
        let serde_json::Value::Object(mut sections) = value else {
            errors.push("config", "the top level must be a map of sections");
            return Err(errors);
        };
        macro_rules! section {
            ($name:ident) => {
                if let Some(raw) = sections.remove(stringify!($name)) {
                    match deserialize_section(stringify!($name), raw, &mut errors) {
                        Some(parsed) => config.$name = parsed,
                        None => {}
                    }
                }
            };
        }
        section!(kafka);
        section!(topics);
        section!(telemetry);
        section!(collector);
        section!(enricher);
        section!(router);
        section!(sink);
        for unknown in sections.keys() {
            errors.push(unknown, "unknown section (expected kafka, topics, telemetry, collector, enricher, router or sink)");
        }
        config.validate(&mut errors);
        if errors.problems.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn validate(&self, errors: &mut ConfigErrors) {
        if self.kafka.bootstrap_servers.trim().is_empty() {
            errors.push("kafka.bootstrap_servers", "must name at least one broker");
        }
        for (property, variable) in &self.kafka.secret_properties_env {
            if self.kafka.properties.contains_key(property) {
                errors.push(
                    format!("kafka.secret_properties_env.{property}"),
                    "also set in kafka.properties; set it in one place",
                );
            }
            if variable.trim().is_empty() {
                errors.push(
                    format!("kafka.secret_properties_env.{property}"),
                    "must name an environment variable",
                );
            }
        }
        for (property, path) in &self.kafka.secret_properties_file {
            if self.kafka.properties.contains_key(property)
                || self.kafka.secret_properties_env.contains_key(property)
            {
                errors.push(
                    format!("kafka.secret_properties_file.{property}"),
                    "also set in kafka.properties or kafka.secret_properties_env; set it in one place",
                );
            }
            if path.as_os_str().is_empty() {
                errors.push(
                    format!("kafka.secret_properties_file.{property}"),
                    "must name a file",
                );
            }
        }
        validate_kafka_security(&self.kafka, errors);
        if self.kafka.topic_partitions < 1 {
            errors.push("kafka.topic_partitions", "must be at least 1");
        }
        if self.kafka.topic_replication_factor < 1 {
            errors.push("kafka.topic_replication_factor", "must be at least 1");
        }
        if self.kafka.commit_interval_ms == 0 {
            errors.push("kafka.commit_interval_ms", "must be at least 1");
        }
        if self.kafka.max_in_flight == 0 {
            errors.push("kafka.max_in_flight", "must be at least 1");
        }
        let topics = self.topics.all();
        for (name, topic) in ["raw", "enriched", "alerts", "deadletter"]
            .iter()
            .zip(topics)
        {
            if !valid_topic_name(topic) {
                errors.push(
                    format!("topics.{name}"),
                    format!("{topic:?} is not a valid Kafka topic name"),
                );
            }
        }
        for (i, a) in topics.iter().enumerate() {
            if topics[..i].contains(a) {
                errors.push("topics", format!("topic {a:?} is used for two purposes"));
            }
        }
        if let Some(http) = &self.collector.http {
            if http.token_env.is_none() && http.token_file.is_none() {
                errors.push(
                    "collector.http",
                    "set token_env or token_file: the ingest endpoint requires a bearer token",
                );
            }
            if http.max_body_bytes == 0 {
                errors.push("collector.http.max_body_bytes", "must be at least 1");
            }
        }
        let mut watchlists = Vec::new();
        for (i, watchlist) in self.enricher.watchlists.iter().enumerate() {
            let path = format!("enricher.watchlists[{i}]");
            if watchlist.name.trim().is_empty() {
                errors.push(format!("{path}.name"), "must not be empty");
            }
            if watchlists.contains(&watchlist.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate watchlist name {:?}", watchlist.name),
                );
            }
            watchlists.push(&watchlist.name);
            if watchlist.terms.is_empty() && watchlist.query.is_none() {
                errors.push(&path, "needs a query or at least one term");
            }
            for (j, term) in watchlist.terms.iter().enumerate() {
                if term.trim().is_empty() {
                    errors.push(format!("{path}.terms[{j}]"), "must not be empty");
                } else if let Err(error) = earshot_query::Node::any_of_terms(&[term]) {
                    errors.push(format!("{path}.terms[{j}]"), error);
                }
            }
            if let Some(query) = &watchlist.query {
                if let Err(error) = earshot_query::parse(query) {
                    errors.push(format!("{path}.query"), format!("{error} in {query:?}"));
                }
            }
            for (word, valence) in &watchlist.sentiment_lexicon {
                let key = format!("{path}.sentiment_lexicon.{word}");
                if word.is_empty() || word.chars().any(char::is_whitespace) {
                    errors.push(
                        &key,
                        "must be one word: VADER scores words one at a time, so a phrase never matches",
                    );
                }
                if !(-4.0..=4.0).contains(valence) {
                    errors.push(&key, format!("valence {valence} is outside VADER's -4..4"));
                }
            }
        }
        let enricher = &self.enricher;
        for (lang, intents) in &enricher.intent_cues {
            let path = format!("enricher.intent_cues.{lang}");
            if lang.len() != 2 || !lang.chars().all(|c| c.is_ascii_lowercase()) {
                errors.push(&path, "must be a two-letter ISO 639-1 language code");
            }
            for (intent, cues) in intents {
                if !INTENTS.contains(&intent.as_str()) {
                    errors.push(
                        format!("{path}.{intent}"),
                        format!("unknown intent; expected one of {}", INTENTS.join(", ")),
                    );
                }
                for (k, cue) in cues.iter().enumerate() {
                    if cue.trim().is_empty() {
                        errors.push(format!("{path}.{intent}[{k}]"), "must not be empty");
                    }
                }
            }
        }
        for (k, phrase) in enricher.spam_phrases.iter().enumerate() {
            if phrase.trim().is_empty() {
                errors.push(format!("enricher.spam_phrases[{k}]"), "must not be empty");
            }
        }
        let weights = &enricher.urgency;
        for (name, weight) in [
            ("negativity", weights.negativity),
            ("intent", weights.intent),
            ("reach", weights.reach),
            ("velocity", weights.velocity),
        ] {
            if !(weight >= 0.0 && weight.is_finite()) {
                errors.push(format!("enricher.urgency.{name}"), "must be 0 or more");
            }
        }
        if weights.negativity + weights.intent + weights.reach + weights.velocity <= 0.0 {
            errors.push("enricher.urgency", "at least one weight must be above 0");
        }
        if enricher.max_text_bytes < 1024 {
            errors.push("enricher.max_text_bytes", "must be at least 1024");
        }
        let mut receivers = Vec::new();
        for (i, receiver) in self.router.receivers.iter().enumerate() {
            let path = format!("router.receivers[{i}]");
            if receivers.contains(&receiver.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate receiver name {:?}", receiver.name),
                );
            }
            receivers.push(&receiver.name);
            match (&receiver.webhook, receiver.console) {
                (None, false) => errors.push(&path, "set a channel: webhook or console"),
                (Some(_), true) => errors.push(&path, "set only one channel: webhook or console"),
                (None, true) => {}
                (Some(webhook), false) => match (&webhook.url, &webhook.url_env) {
                    (None, None) => errors.push(format!("{path}.webhook"), "set url or url_env"),
                    (Some(_), Some(_)) => {
                        errors.push(format!("{path}.webhook"), "set only one of url and url_env")
                    }
                    (Some(url), None) => match reqwest::Url::parse(url) {
                        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                        Ok(parsed) => errors.push(
                            format!("{path}.webhook.url"),
                            format!("scheme {:?} is not http or https", parsed.scheme()),
                        ),
                        Err(e) => errors.push(
                            format!("{path}.webhook.url"),
                            format!("{url:?} is not a URL: {e}"),
                        ),
                    },
                    (None, Some(_)) => {}
                },
            }
        }
        let mut routes = Vec::new();
        for (i, route) in self.router.routes.iter().enumerate() {
            let path = format!("router.routes[{i}]");
            if routes.contains(&route.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", route.name),
                );
            }
            routes.push(&route.name);
            if !watchlists.contains(&route.watchlist.as_str()) {
                errors.push(
                    format!("{path}.watchlist"),
                    format!(
                        "no watchlist named {:?} in enricher.watchlists",
                        route.watchlist
                    ),
                );
            }
            if !receivers.contains(&route.receiver.as_str()) {
                errors.push(
                    format!("{path}.receiver"),
                    format!("no receiver named {:?} in router.receivers", route.receiver),
                );
            }
            if !route.threshold.is_finite() {
                errors.push(format!("{path}.threshold"), "must be a finite number");
            }
        }
        let delivery = &self.router.delivery;
        if delivery.max_attempts == 0 {
            errors.push("router.delivery.max_attempts", "must be at least 1");
        }
        if delivery.concurrency == 0 {
            errors.push("router.delivery.concurrency", "must be at least 1");
        }
        if delivery.initial_backoff_ms > delivery.max_backoff_ms {
            errors.push(
                "router.delivery.initial_backoff_ms",
                "must not exceed max_backoff_ms",
            );
        }
        if let Some(pg) = &self.sink.postgres {
            if pg.url.is_none() && pg.url_env.is_none() {
                errors.push("sink.postgres", "set url or url_env");
            }
            if pg.batch_size == 0 {
                errors.push("sink.postgres.batch_size", "must be at least 1");
            }
        }
        if let Some(parquet) = &self.sink.parquet {
            if parquet.roll_rows == 0 {
                errors.push("sink.parquet.roll_rows", "must be at least 1");
            }
        }
    }
}

/// Properties that hold secrets: they must come from `secret_properties_env` or
/// `secret_properties_file`, never from the configuration file.
const SECRET_KAFKA_PROPERTIES: [&str; 5] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
];

/// The SASL mechanisms this build supports: librdkafka is built with OpenSSL (SCRAM needs it)
/// but without Cyrus SASL (GSSAPI) or libcurl (OIDC for OAUTHBEARER).
const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Checks librdkafka's security properties before any client is built, so that a
/// misconfigured TLS or SASL setup is reported with the other problems instead of as a
/// connection failure (or, for a missing mechanism, librdkafka's default GSSAPI) at start.
fn validate_kafka_security(kafka: &KafkaConfig, errors: &mut ConfigErrors) {
    for property in SECRET_KAFKA_PROPERTIES {
        if kafka.properties.contains_key(property) {
            errors.push(
                format!("kafka.properties.{property}"),
                "is a secret: read it with kafka.secret_properties_env or kafka.secret_properties_file",
            );
        }
    }
    let set = |property: &str| {
        kafka.properties.contains_key(property)
            || kafka.secret_properties_env.contains_key(property)
            || kafka.secret_properties_file.contains_key(property)
    };
    let protocol = kafka
        .properties
        .get("security.protocol")
        .map(|p| p.to_ascii_uppercase());
    let (uses_tls, uses_sasl) = match protocol.as_deref() {
        None | Some("PLAINTEXT") => (false, false),
        Some("SSL") => (true, false),
        Some("SASL_PLAINTEXT") => (false, true),
        Some("SASL_SSL") => (true, true),
        Some(other) => {
            errors.push(
                "kafka.properties.security.protocol",
                format!("{other:?} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
            );
            // The other checks depend on the protocol; one problem is enough here.
            return;
        }
    };
    let mut configured: Vec<&str> = kafka
        .properties
        .keys()
        .chain(kafka.secret_properties_env.keys())
        .map(String::as_str)
        .collect();
    configured.extend(kafka.secret_properties_file.keys().map(String::as_str));
    configured.sort_unstable();
    for property in configured {
        if property.starts_with("ssl.") && !uses_tls {
            errors.push(
                format!("kafka.{}", property_path(kafka, property)),
                "has no effect unless kafka.properties.security.protocol is SSL or SASL_SSL",
            );
        }
        if property.starts_with("sasl.") && !uses_sasl {
            errors.push(
                format!("kafka.{}", property_path(kafka, property)),
                "has no effect unless kafka.properties.security.protocol is SASL_PLAINTEXT or SASL_SSL",
            );
        }
    }
    if kafka.properties.contains_key("sasl.mechanisms") {
        errors.push(
            "kafka.properties.sasl.mechanisms",
            "use sasl.mechanism (its alias is not checked)",
        );
    }
    if uses_sasl {
        match kafka.properties.get("sasl.mechanism") {
            None => errors.push(
                "kafka.properties.sasl.mechanism",
                format!("required with SASL; one of {}", SASL_MECHANISMS.join(", ")),
            ),
            Some(mechanism) if !SASL_MECHANISMS.contains(&mechanism.as_str()) => errors.push(
                "kafka.properties.sasl.mechanism",
                format!(
                    "{mechanism:?} is not supported by this build; use one of {}",
                    SASL_MECHANISMS.join(", ")
                ),
            ),
            Some(_) => {}
        }
        if !set("sasl.username") {
            errors.push(
                "kafka",
                "SASL needs sasl.username: set it in kafka.properties",
            );
        }
        if !set("sasl.password") {
            errors.push(
                "kafka",
                "SASL needs sasl.password: read it with kafka.secret_properties_env or kafka.secret_properties_file",
            );
        }
    }
    if set("ssl.certificate.location") != set("ssl.key.location") {
        errors.push(
            "kafka.properties",
            "a client certificate needs both ssl.certificate.location and ssl.key.location",
        );
    }
}

/// Where a librdkafka property is set, for error paths (`properties.ssl.ca.location`).
fn property_path(kafka: &KafkaConfig, property: &str) -> String {
    if kafka.secret_properties_env.contains_key(property) {
        format!("secret_properties_env.{property}")
    } else if kafka.secret_properties_file.contains_key(property) {
        format!("secret_properties_file.{property}")
    } else {
        format!("properties.{property}")
    }
}

fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Deserializes one section, collecting every unknown key (with `serde_ignored`) and the
/// first type error (with its path) instead of stopping at the first problem of the file.
fn deserialize_section<T: serde::de::DeserializeOwned>(
    name: &str,
    raw: serde_json::Value,
    errors: &mut ConfigErrors,
) -> Option<T> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(&raw, &mut track);
    let result: Result<T, _> =
        serde_ignored::deserialize(deserializer, |path| unknown.push(path.to_string()));
    for key in &unknown {
        errors.push(format!("{name}.{key}"), "unknown key");
    }
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            let path = track.path().to_string();
            let message = e.to_string();
            if message.starts_with("unknown field") {
                // Already reported by the unknown-key pass when it saw it; otherwise report here.
                let key = format!("{name}.{path}");
                if !errors.problems.iter().any(|p| p.starts_with(&key)) {
                    errors.push(key, message);
                }
            } else if path == "." || path.is_empty() {
                errors.push(name, message);
            } else {
                errors.push(format!("{name}.{path}"), message);
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let value: serde_json::Value = config::Config::builder()
            .add_source(config::File::from_str(yaml, config::FileFormat::Yaml))
            .build()
            .unwrap()
            .try_deserialize()
            .unwrap();
        match Config::from_value(value) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.problems,
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems("{}"), Vec::<String>::new());
    }

    #[test]
    fn sentiment_lexicon_overrides_must_be_single_words_with_vader_valences() {
        let found = problems(
            r#"
enricher:
  watchlists:
    - name: skateco
      terms: ["skateco"]
      sentiment_lexicon: { sick: 2.5, "bad ass": 1.5, killer: 0, rad: 9 }
"#,
        );
        assert_eq!(
            found,
            [
                "enricher.watchlists[0].sentiment_lexicon.bad ass: must be one word: VADER scores words one at a time, so a phrase never matches",
                "enricher.watchlists[0].sentiment_lexicon.rad: valence 9 is outside VADER's -4..4",
            ]
        );
    }

    #[test]
    fn watchlist_queries_that_do_not_parse_are_reported_with_position_and_expectation() {
        let found = problems(
            r#"
enricher:
  watchlists:
    - name: ok
      query: '(lumora OR #lumora) AND refund* NOT author:lumora_help'
    - name: open
      query: '(lumora OR lamp'
    - name: near
      query: 'lumora NEAR broken'
    - name: both
      terms: ["lumora", "re*fund"]
      query: 'lumora AND'
"#,
        );
        assert_eq!(
            found,
            [
                "enricher.watchlists[1].query: at character 16: expected ')', found the end of the query in \"(lumora OR lamp\"",
                "enricher.watchlists[2].query: at character 8: expected a distance after NEAR, such as NEAR/3 or NEAR/3f, found \"NEAR\" in \"lumora NEAR broken\"",
                "enricher.watchlists[3].terms[1]: at character 3: expected '*' only at the end of a word (refund*), found \"re*fund\"",
                "enricher.watchlists[3].query: at character 11: expected a term, \"phrase\", #hashtag, @mention, field:value or '(', found the end of the query in \"lumora AND\"",
            ]
        );
    }

    #[test]
    fn intent_cues_urgency_weights_and_text_cap_are_checked() {
        let found = problems(
            r#"
enricher:
  intent_cues:
    en: { complaint: ["meh"], gossip: ["tea"] }
    english: { praise: [""] }
  spam_phrases: ["  "]
  urgency: { negativity: -1, intent: 0, reach: 0, velocity: 0 }
  max_text_bytes: 10
"#,
        );
        assert_eq!(
            found,
            [
                "enricher.intent_cues.en.gossip: unknown intent; expected one of crisis_risk, churn_threat, complaint, question, purchase_intent, opportunity, praise",
                "enricher.intent_cues.english: must be a two-letter ISO 639-1 language code",
                "enricher.intent_cues.english.praise[0]: must not be empty",
                "enricher.spam_phrases[0]: must not be empty",
                "enricher.urgency.negativity: must be 0 or more",
                "enricher.urgency: at least one weight must be above 0",
                "enricher.max_text_bytes: must be at least 1024",
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key_path() {
        let found = problems(
            r#"
kafka:
  bootstrap_servers: ""
  max_in_flight: 0
  colour: blue
topics:
  raw: "bad topic!"
  enriched: earshot.alerts
telemetry:
  listen: "not an address"
enricher:
  watchlists:
    - name: acme
      terms: []
    - name: acme
      terms: ["x"]
      extra: 1
router:
  receivers:
    - name: hook
      webhook: { url: "ftp://example.com" }
  routes:
    - name: r
      watchlist: nope
      score: reach
      threshold: 1
      receiver: missing
surprise: true
"#,
        );
        let expected = [
            "kafka.colour: unknown key",
            "kafka.bootstrap_servers: must name at least one broker",
            "kafka.max_in_flight: must be at least 1",
            "topics.raw: \"bad topic!\" is not a valid Kafka topic name",
            "topics: topic \"earshot.alerts\" is used for two purposes",
            "telemetry.listen: invalid socket address",
            "enricher.watchlists.1.extra: unknown key",
            "enricher.watchlists[0]: needs a query or at least one term",
            "enricher.watchlists[1].name: duplicate watchlist name \"acme\"",
            "router.receivers[0].webhook.url: scheme \"ftp\" is not http or https",
            "router.routes[0].watchlist: no watchlist named \"nope\"",
            "router.routes[0].receiver: no receiver named \"missing\"",
            "surprise: unknown section",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    /// Kafka's TLS and SASL settings. Each case is a `kafka` section and every problem it must
    /// give (by prefix), no more.
    #[test]
    fn kafka_security_settings_are_checked() {
        fn check(kafka: &str, expected: &[&str]) {
            let found = problems(&format!("kafka:\n{kafka}"));
            for want in expected {
                assert!(
                    found.iter().any(|p| p.starts_with(want)),
                    "missing {want:?} in {found:#?} for\n{kafka}"
                );
            }
            assert_eq!(found.len(), expected.len(), "{found:#?} for\n{kafka}");
        }
        // TLS and SCRAM as the production overlay sets them: the password from a file.
        check(
            r#"
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-512
    sasl.username: earshot
    ssl.ca.location: /etc/kafka-ca/ca.crt
  secret_properties_file:
    sasl.password: /etc/kafka-user/password
"#,
            &[],
        );
        // PLAIN, credentials from the environment; the protocol's case does not matter.
        check(
            r#"
  properties: { security.protocol: sasl_plaintext, sasl.mechanism: PLAIN }
  secret_properties_env: { sasl.username: KAFKA_USER, sasl.password: KAFKA_PASSWORD }
"#,
            &[],
        );
        // Mutual TLS with a client certificate whose key has a password.
        check(
            r#"
  properties:
    security.protocol: SSL
    ssl.certificate.location: /etc/kafka-client/tls.crt
    ssl.key.location: /etc/kafka-client/tls.key
  secret_properties_env: { ssl.key.password: KAFKA_KEY_PASSWORD }
"#,
            &[],
        );
        check(
            "  properties: { security.protocol: TLS }\n",
            &["kafka.properties.security.protocol: \"TLS\" is not one of PLAINTEXT"],
        );
        check(
            "  properties: { security.protocol: SASL_SSL }\n",
            &[
                "kafka.properties.sasl.mechanism: required with SASL",
                "kafka: SASL needs sasl.username",
                "kafka: SASL needs sasl.password",
            ],
        );
        check(
            r#"
  properties: { security.protocol: SASL_SSL, sasl.mechanism: GSSAPI, sasl.username: u }
  secret_properties_env: { sasl.password: P }
"#,
            &["kafka.properties.sasl.mechanism: \"GSSAPI\" is not supported by this build"],
        );
        check(
            r#"
  properties:
    security.protocol: SASL_SSL
    sasl.mechanism: SCRAM-SHA-256
    sasl.username: u
    sasl.password: in-the-file
"#,
            &["kafka.properties.sasl.password: is a secret"],
        );
        check(
            r#"
  properties: { sasl.username: u, ssl.ca.location: /ca.crt }
"#,
            &[
                "kafka.properties.sasl.username: has no effect unless kafka.properties.security.protocol is SASL",
                "kafka.properties.ssl.ca.location: has no effect unless kafka.properties.security.protocol is SSL",
            ],
        );
        check(
            r#"
  properties: { security.protocol: SSL, ssl.certificate.location: /tls.crt }
"#,
            &["kafka.properties: a client certificate needs both"],
        );
        check(
            r#"
  properties: { security.protocol: SASL_SSL, sasl.mechanism: PLAIN, sasl.username: u }
  secret_properties_env: { sasl.password: P }
  secret_properties_file: { sasl.password: /p, ssl.key.password: "" }
"#,
            &[
                "kafka.secret_properties_file.sasl.password: also set in",
                "kafka.secret_properties_file.ssl.key.password: must name a file",
            ],
        );
    }

    #[test]
    fn environment_variables_override_the_file() {
        // Only this test sets these variables.
        std::env::set_var("EARSHOT_KAFKA__BOOTSTRAP_SERVERS", "broker-7:9092");
        std::env::set_var("EARSHOT_UNRELATED_SECRET", "not config");
        let dir = std::env::temp_dir().join(format!("earshot-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("earshot.toml");
        std::fs::write(
            &file,
            "[kafka]\nbootstrap_servers = \"file:9092\"\ntopic_partitions = 12\n",
        )
        .unwrap();
        let config = Config::load(ConfigSources {
            defaults_yaml: None,
            file: Some(&file),
            environment: true,
        })
        .unwrap();
        std::env::remove_var("EARSHOT_KAFKA__BOOTSTRAP_SERVERS");
        std::env::remove_var("EARSHOT_UNRELATED_SECRET");
        assert_eq!(config.kafka.bootstrap_servers, "broker-7:9092");
        assert_eq!(config.kafka.topic_partitions, 12);
    }
}
