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

mod oncall;
mod secrets;
pub use oncall::{
    parse_time_of_day, EscalationLevelConfig, EscalationPolicyConfig, EscalationTargetConfig,
    MemberConfig, OverrideConfig, RouterApiConfig, ScheduleConfig, TeamConfig,
};
pub use secrets::{read_secret, read_token, Role, MIN_TOKEN_CHARS};

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
    /// Cap on librdkafka's prefetch queue, in KiB, over all the partitions of a consumer
    /// group member. It counts the records as fetched, compressed (lz4): decompressed they
    /// take several times as much, so this is what bounds a consumer's memory under a backlog
    /// (measured on the sink: 16 MiB held about 60 MiB more than 2 MiB, at the same speed).
    /// Fetching resumes 10 ms after the queue drains below it.
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
            consumer_queue_max_kbytes: 2_048,
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
    /// The collector's source checkpoints, keyed by source instance (`<kind>/<name>`);
    /// created compacted. Its partitions also decide which replica runs which source.
    pub checkpoints: String,
    /// `SourceHealth` events (a source went quiet, keeps failing, recovered), keyed by source
    /// instance.
    pub source_health: String,
    /// The router's state (alerts to teams and their escalation, silences set by API), keyed
    /// by `alert/<id>` or `silence/<id>`; created compacted. Give it as many partitions as
    /// the enriched topic: an alert's state is in the partition of its mention's.
    pub router_state: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            raw: "earshot.mentions.raw".into(),
            enriched: "earshot.mentions.enriched".into(),
            alerts: "earshot.alerts".into(),
            deadletter: "earshot.deadletter".into(),
            checkpoints: "earshot.collector.checkpoints".into(),
            source_health: "earshot.source.health".into(),
            router_state: "earshot.router.state".into(),
        }
    }
}

impl TopicsConfig {
    /// Every topic, in the order of [`TopicsConfig::KEYS`].
    pub fn all(&self) -> [&str; 7] {
        [
            &self.raw,
            &self.enriched,
            &self.alerts,
            &self.deadletter,
            &self.checkpoints,
            &self.source_health,
            &self.router_state,
        ]
    }

    /// The config keys of [`TopicsConfig::all`].
    pub const KEYS: [&'static str; 7] = [
        "raw",
        "enriched",
        "alerts",
        "deadletter",
        "checkpoints",
        "source_health",
        "router_state",
    ];
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
    /// Sources the collector pulls or streams from, by kind; each kind lists named instances.
    pub sources: SourcesConfig,
    /// How the collector treats the servers it reads from.
    pub politeness: PolitenessConfig,
    /// When a source counts as quiet or failing.
    pub health: SourceHealthConfig,
}

/// The configured source instances, by kind. An instance's key is `<kind>/<name>`: its
/// checkpoint, its metrics and its health events are keyed by it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SourcesConfig {
    /// RSS and Atom feeds (blogs, news, Google Alerts feeds).
    pub rss: Vec<RssSourceConfig>,
    /// Mastodon streaming timelines (server-sent events), backfilled over REST on reconnect.
    pub mastodon: Vec<MastodonSourceConfig>,
    /// Bluesky posts from a Jetstream server (WebSocket), resumed from a `time_us` cursor.
    pub bluesky: Vec<BlueskySourceConfig>,
    /// Hacker News stories and comments (the Firebase API), resumed from the last item id.
    pub hackernews: Vec<HackerNewsSourceConfig>,
    /// Reddit listings (a subreddit's new posts or comments, or a search), paged with `after`.
    pub reddit: Vec<RedditSourceConfig>,
    /// Discourse forums' latest posts (`/posts.json`), resumed from the last post id.
    pub discourse: Vec<DiscourseSourceConfig>,
    /// The X (Twitter) filtered stream: rules synced at start, then one long-lived stream.
    pub x: Vec<XSourceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XSourceConfig {
    /// Unique name among the X sources; the instance in every mention it yields.
    pub name: String,
    /// The API base URL.
    #[serde(default = "default_x_url")]
    pub url: String,
    /// Environment variable holding the app's bearer token.
    #[serde(default = "default_x_token_env")]
    pub bearer_token_env: String,
    /// The filtered stream's rules; the stream's rule set is made exactly this at start
    /// (missing rules added, others deleted). An X app has one rule set: run one X source per
    /// app.
    pub rules: Vec<XRuleConfig>,
    /// Ask for up to this many minutes of missed posts on reconnect (`backfill_minutes`, 1 to
    /// 5; only some API tiers allow it); 0 for none.
    #[serde(default)]
    pub backfill_minutes: u32,
    /// The interval in which this stream normally has a post; the source counts as quiet
    /// after several of these without one.
    #[serde(default = "default_stream_interval_ms")]
    pub usual_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XRuleConfig {
    /// The rule, in X's filtered-stream rule syntax (`acme (kettle OR toaster) -is:retweet`).
    pub value: String,
    /// A label X returns with every post the rule matched.
    #[serde(default)]
    pub tag: Option<String>,
}

fn default_x_url() -> String {
    "https://api.x.com".into()
}
fn default_x_token_env() -> String {
    "X_BEARER_TOKEN".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HackerNewsSourceConfig {
    /// Unique name among the Hacker News sources; the instance in every mention it yields.
    pub name: String,
    /// The API base URL.
    #[serde(default = "default_hackernews_url")]
    pub url: String,
    /// Time between two polls of `/maxitem.json` once caught up.
    #[serde(default = "default_hackernews_interval_ms")]
    pub interval_ms: u64,
    /// Items fetched per poll at most (the rest follow in the next poll, without waiting).
    #[serde(default = "default_hackernews_batch")]
    pub max_items_per_poll: u64,
    /// Item requests in flight at once.
    #[serde(default = "default_hackernews_concurrency")]
    pub concurrency: usize,
}

fn default_hackernews_url() -> String {
    "https://hacker-news.firebaseio.com/v0".into()
}
fn default_hackernews_interval_ms() -> u64 {
    10_000
}
fn default_hackernews_batch() -> u64 {
    500
}
fn default_hackernews_concurrency() -> usize {
    8
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedditSourceConfig {
    /// Unique name among the Reddit sources; the instance in every mention it yields.
    pub name: String,
    /// `new` (a subreddit's new posts), `comments` (its new comments) or `search`.
    pub listing: RedditListing,
    /// The subreddit, without `r/`; required for `new` and `comments`, optional for `search`
    /// (searches within it when set).
    #[serde(default)]
    pub subreddit: Option<String>,
    /// The search query; required for `search`.
    #[serde(default)]
    pub query: Option<String>,
    /// The API base URL; OAuth uses `https://oauth.reddit.com`.
    #[serde(default = "default_reddit_url")]
    pub url: String,
    /// OAuth client credentials (application-only); without them the public JSON is read.
    #[serde(default)]
    pub oauth: Option<RedditOAuthConfig>,
    /// Time between two polls.
    #[serde(default = "default_reddit_interval_ms")]
    pub interval_ms: u64,
    /// Up to this much random delay is added to each interval.
    #[serde(default = "default_feed_jitter_ms")]
    pub jitter_ms: u64,
    /// Pages (of 100) read back with `after` per poll when many items are new.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedditListing {
    /// `/r/{subreddit}/new.json`
    New,
    /// `/r/{subreddit}/comments.json`
    Comments,
    /// `/search.json?q=…&sort=new` (or `/r/{subreddit}/search.json?restrict_sr=1`)
    Search,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedditOAuthConfig {
    /// Environment variable holding the OAuth client id.
    pub client_id_env: String,
    /// Environment variable holding the OAuth client secret.
    pub client_secret_env: String,
    /// The token endpoint.
    #[serde(default = "default_reddit_token_url")]
    pub token_url: String,
}

fn default_reddit_url() -> String {
    "https://www.reddit.com".into()
}
fn default_reddit_token_url() -> String {
    "https://www.reddit.com/api/v1/access_token".into()
}
fn default_reddit_interval_ms() -> u64 {
    60_000
}
fn default_max_pages() -> u32 {
    5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscourseSourceConfig {
    /// Unique name among the Discourse sources; the instance in every mention it yields.
    pub name: String,
    /// Base URL of the forum, e.g. `https://meta.discourse.org`.
    pub url: String,
    /// Environment variables holding an API key and its user (`Api-Key`, `Api-Username`),
    /// for private forums.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_username_env: Option<String>,
    /// Time between two polls.
    #[serde(default = "default_reddit_interval_ms")]
    pub interval_ms: u64,
    /// Up to this much random delay is added to each interval.
    #[serde(default = "default_feed_jitter_ms")]
    pub jitter_ms: u64,
    /// Pages read back with `before` per poll when many posts are new.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlueskySourceConfig {
    /// Unique name among the Bluesky sources; the instance in every mention it yields.
    pub name: String,
    /// The Jetstream subscribe endpoint, e.g.
    /// `wss://jetstream2.us-east.bsky.network/subscribe`.
    pub url: String,
    /// Only these accounts (DIDs); empty for every account.
    #[serde(default)]
    pub wanted_dids: Vec<String>,
    /// How far before the stored cursor a reconnection resumes, so that nothing near the
    /// cut is missed (the overlap is removed by the stable id downstream).
    #[serde(default = "default_cursor_rewind_ms")]
    pub cursor_rewind_ms: u64,
    /// At most one checkpoint per this interval (the firehose carries many events a second).
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// The interval in which this stream normally has a post; the source counts as quiet
    /// after several of these without one.
    #[serde(default = "default_stream_interval_ms")]
    pub usual_interval_ms: u64,
}

fn default_cursor_rewind_ms() -> u64 {
    5_000
}
fn default_checkpoint_interval_ms() -> u64 {
    1_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MastodonSourceConfig {
    /// Unique name among the Mastodon sources; the instance in every mention it yields.
    pub name: String,
    /// Base URL of the Mastodon server, e.g. `https://mastodon.social`.
    pub server: String,
    /// `public` (the federated timeline), `local` (this server's posts) or `hashtag`.
    #[serde(default = "default_mastodon_timeline")]
    pub timeline: MastodonTimeline,
    /// The hashtag to follow, without `#`; required for the `hashtag` timeline.
    #[serde(default)]
    pub hashtag: Option<String>,
    /// Environment variable holding an access token (many servers require one for streaming).
    #[serde(default)]
    pub access_token_env: Option<String>,
    /// Statuses per REST page when backfilling a gap (Mastodon allows at most 40).
    #[serde(default = "default_mastodon_page")]
    pub backfill_page_size: u32,
    /// The interval in which this timeline normally has a post; the source counts as quiet
    /// after several of these without one.
    #[serde(default = "default_stream_interval_ms")]
    pub usual_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MastodonTimeline {
    /// `/api/v1/streaming/public`, backfilled from `/api/v1/timelines/public`.
    Public,
    /// `/api/v1/streaming/public/local`, backfilled from `/api/v1/timelines/public?local=true`.
    Local,
    /// `/api/v1/streaming/hashtag?tag=…`, backfilled from `/api/v1/timelines/tag/…`.
    Hashtag,
}

fn default_mastodon_timeline() -> MastodonTimeline {
    MastodonTimeline::Public
}
fn default_mastodon_page() -> u32 {
    40
}
fn default_stream_interval_ms() -> u64 {
    600_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssSourceConfig {
    /// Unique name among the RSS sources; the instance in every mention it yields.
    pub name: String,
    /// The feed URL (http or https).
    pub url: String,
    /// Time between two polls of the feed.
    #[serde(default = "default_feed_interval_ms")]
    pub interval_ms: u64,
    /// Up to this much random delay is added to each interval, so that feeds of one host are
    /// not all polled at the same moment.
    #[serde(default = "default_feed_jitter_ms")]
    pub jitter_ms: u64,
    /// How many item ids the checkpoint remembers for deduplication; keep it above the
    /// number of items the feed shows.
    #[serde(default = "default_feed_seen_ids")]
    pub max_seen_ids: usize,
}

fn default_feed_interval_ms() -> u64 {
    300_000
}
fn default_feed_jitter_ms() -> u64 {
    30_000
}
fn default_feed_seen_ids() -> usize {
    2_000
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PolitenessConfig {
    /// Sent as `User-Agent` on every request; names Earshot and how to reach its operator.
    pub user_agent: String,
    /// Timeout of establishing a connection.
    pub connect_timeout_ms: u64,
    /// Timeout of one read from a connection (a stream that sends nothing for this long,
    /// heartbeats included, is reconnected).
    pub read_timeout_ms: u64,
    /// Minimum time between two requests to the same host, across all sources.
    pub per_host_interval_ms: u64,
    /// First delay after a failure; doubles per consecutive failure, with full jitter.
    pub initial_backoff_ms: u64,
    /// Upper bound of the failure delay, and of an honoured `Retry-After`.
    pub max_backoff_ms: u64,
    /// Attempts of one request (network errors, 429, 5xx) before the poll counts as failed.
    pub max_attempts: u32,
}

impl Default for PolitenessConfig {
    fn default() -> Self {
        PolitenessConfig {
            user_agent: concat!(
                "Earshot/",
                env!("CARGO_PKG_VERSION"),
                " (social listening; +https://github.com/earshot-dev/earshot)"
            )
            .into(),
            connect_timeout_ms: 10_000,
            read_timeout_ms: 60_000,
            per_host_interval_ms: 50,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 300_000,
            max_attempts: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SourceHealthConfig {
    /// A source that yields nothing for this many of its intervals is reported quiet.
    pub quiet_after_intervals: u32,
    /// A source whose polls or connections fail this many times in a row is reported failing.
    pub failing_after_errors: u32,
    /// How often each source's health is evaluated.
    pub check_interval_ms: u64,
}

impl Default for SourceHealthConfig {
    fn default() -> Self {
        SourceHealthConfig {
            quiet_after_intervals: 6,
            failing_after_errors: 5,
            check_interval_ms: 10_000,
        }
    }
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

impl HttpIngestConfig {
    /// Where the bearer token is read from, as [`read_token`] takes it: `token_file` over
    /// `token_env` (which has a default), so the environment only when no file is set.
    pub fn token_source(&self) -> (Option<&str>, Option<&std::path::Path>) {
        let env = self
            .token_env
            .as_deref()
            .filter(|_| self.token_file.is_none());
        (env, self.token_file.as_deref())
    }
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
    /// Lure words of giveaway and phishing bots ("claim", "free", "compensation", "prize",
    /// ...): two different ones in a post with a link make it likely spam (`link_lure`).
    /// When given, replaces the built-in list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub spam_lures: Vec<String>,
    /// How a mention's language is found.
    pub language: LanguageConfig,
    /// Weights of the urgency score (see RELIABILITY.md, "Urgency").
    pub urgency: UrgencyWeights,
    /// Text longer than this is cut (at a character boundary) and flagged `text_truncated`.
    pub max_text_bytes: usize,
    /// The service takes up to this many records at once (each still acknowledged and
    /// committed on its own).
    pub batch_size: usize,
    /// After a batch's first record, wait at most this long for the others.
    pub batch_wait_ms: u64,
    /// Threads that enrich and encode a batch's records together, each a contiguous share
    /// of it; the outputs are still published in input order (the spam look-back sees a
    /// batch's mentions in the order the threads reach it). 1 (the default) enriches on
    /// the stage's own task; set it to the cores the service may use.
    pub workers: usize,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        EnricherConfig {
            watchlists: Vec::new(),
            intent_cues: BTreeMap::new(),
            spam_phrases: Vec::new(),
            spam_lures: Vec::new(),
            language: LanguageConfig::default(),
            urgency: UrgencyWeights::default(),
            max_text_bytes: 64 * 1024,
            batch_size: 64,
            batch_wait_ms: 5,
            workers: 1,
        }
    }
}

/// Language detection: which detector, and which sources' language hints are taken as is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LanguageConfig {
    /// `whichlang` (the default: 16 major languages, about a microsecond per post) or
    /// `whatlang` (69 languages, tens of microseconds per post).
    pub detector: LanguageDetector,
    /// Source kinds (`bluesky`, `mastodon`, ...) whose `lang_hint` is taken as the language,
    /// with confidence 1, without running the detector; other sources' hints are a fallback.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted_hint_sources: Vec<String>,
}

/// The language detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LanguageDetector {
    #[default]
    Whichlang,
    Whatlang,
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
    /// The routing tree's top level. A mention goes down the tree like an Alertmanager alert:
    /// among siblings the first route that matches takes it (later siblings are tried only
    /// when that route sets `continue`), then its child routes are tried the same way; the
    /// deepest routes that match raise the alerts.
    pub routes: Vec<RouteConfig>,
    /// Receivers the routes name.
    pub receivers: Vec<ReceiverConfig>,
    /// Named times (business hours, weekends, holidays) that activate or mute routes.
    pub time_intervals: Vec<TimeIntervalConfig>,
    /// Silences: alerts of mentions matching a silence's matchers are not raised while it is
    /// in force.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<SilenceConfig>,
    /// Policy guardrail: mentions touching sensitive topics also go to a review receiver,
    /// and every alert they raise is marked "no public reply before review".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewConfig>,
    /// Teams: members, channels, on-call schedule, escalation policy. Routes name them with
    /// `team:`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamConfig>,
    /// Escalation policies teams refer to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub escalation_policies: Vec<EscalationPolicyConfig>,
    /// The acknowledge / resolve and silences API on the router's HTTP server
    /// (`telemetry.listen`); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<RouterApiConfig>,
    /// Retry policy of deliveries.
    pub delivery: DeliveryConfig,
    /// Spike detection per watchlist (off when unset). Spikes raise alerts of kind `spike`,
    /// routed through the tree as mentions with intent `spike`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spikes: Option<SpikesConfig>,
    /// Spam never pages anyone: a mention whose `spam_score` is at least this reaches no
    /// route (no alert, no review) and stays in analytics flagged as spam. Above 0, at most 1.
    pub spam_threshold: SpamThreshold,
}

/// `router.spam_threshold`: 0.5 unless set, the score from which the sink's views count a
/// mention as spam (`spam_share`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpamThreshold(pub f64);

impl Default for SpamThreshold {
    fn default() -> Self {
        SpamThreshold(0.5)
    }
}

/// Spike detection: per watchlist, the mentions per window (volume) and the share of them
/// that is negative, each against a baseline learned from earlier windows (an exponentially
/// weighted mean and variance). Windows follow the mentions' collection time, not the
/// router's clock, so a replay finds the same spikes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SpikesConfig {
    /// Watchlists watched; empty watches every watchlist.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watchlists: Vec<String>,
    /// Length of a window, in seconds of collection time.
    pub window_secs: u64,
    /// Weight of each new window in the baseline, above 0 and at most 1 (0.1 remembers
    /// roughly the last 10 windows).
    pub baseline_alpha: f64,
    /// Windows learned before a spike can be raised.
    pub warmup_windows: u32,
    /// How many standard deviations from the baseline make a spike.
    pub z_threshold: f64,
    /// Minimum sample: a volume peak or a negative-share peak needs at least this many
    /// mentions in the window, and a volume dip a baseline of at least this many.
    pub min_mentions: u64,
    /// Also raise volume dips (a watchlist going quiet), not only peaks.
    pub dips: bool,
    /// A mention is negative when its sentiment compound is at most this.
    pub negative_compound: f64,
    /// After a spike, no other of the same metric and direction for the watchlist for this
    /// long (collection time).
    pub cooldown_secs: u64,
    /// Posts older than this when collected (a source catching up) are not counted.
    pub max_post_age_secs: u64,
}

impl Default for SpikesConfig {
    fn default() -> Self {
        SpikesConfig {
            watchlists: Vec::new(),
            window_secs: 300,
            baseline_alpha: 0.1,
            warmup_windows: 12,
            z_threshold: 3.0,
            min_mentions: 10,
            dips: true,
            negative_compound: -0.05,
            cooldown_secs: 1_800,
            max_post_age_secs: 3_600,
        }
    }
}

/// One node of the routing tree. `watchlist`, `score` and `threshold` are shorthands kept from
/// the flat routes: `watchlist: acme` is the matcher `watchlist = acme`, and `score: reach`
/// with `threshold: 1000` is `reach >= 1000`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RouteConfig {
    /// Unique route name across the whole tree, recorded in each alert.
    pub name: String,
    /// The watchlist a mention must be keyed by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchlist: Option<String>,
    /// The score tested against `threshold` (set both or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreName>,
    /// The route matches when `score` is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Conditions that must all hold, `field op value`: text fields (watchlist, intent,
    /// language, source, author) take `=`, `!=`, `=~` and `!~` (anchored regular
    /// expressions); numeric fields (sentiment.compound, sentiment.neg, urgency, spam_score,
    /// reach, relevance) take `=`, `!=`, `>`, `>=`, `<` and `<=`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
    /// The receiver of the alerts this route raises; inherited from the parent when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// The team (in `router.teams`) the alerts of this route go to, instead of a receiver:
    /// its channels, its on-call member, its escalation policy. Inherited like `receiver`;
    /// set one of the two on a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// After this route matched, go on trying its later siblings.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Child routes, tried when this one matches; when none matches, this route raises the
    /// alert itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
    /// The route matches only inside one of these `time_intervals` (all the time when empty).
    /// Outside, it does not match and the mention goes on to its siblings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
    /// The route does not match inside any of these `time_intervals`; the mention goes on to
    /// its siblings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    /// Group this route's alerts into one notification per group, like Alertmanager: alerts
    /// with the same values of these labels (watchlist, intent, language, source, author)
    /// share a group; an empty list makes one group of the route. Inherited from the parent
    /// route when unset; no grouping (one notification per alert) when no route sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    /// How long a new group waits for more alerts before its first notification (default 30);
    /// inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait_secs: Option<u64>,
    /// Least time between two notifications of one group, which carry the alerts that joined
    /// since the last (default 300); inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval_secs: Option<u64>,
    /// An alert already notified in its group (the same mention read again) is not notified
    /// again before this long (default 14400); inherited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval_secs: Option<u64>,
}

/// The labels `group_by` takes.
pub const GROUP_LABELS: [&str; 5] = ["watchlist", "intent", "language", "source", "author"];

/// A silence: while in force, mentions matching every matcher raise no alert (except the
/// review alert of a sensitive topic, which a silence does not stop).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SilenceConfig {
    /// Conditions, as in routes (`field op value`); all must hold.
    pub matchers: Vec<String>,
    /// Start, RFC 3339 (`2026-11-27T08:00:00Z`); in force from the start when unset.
    #[serde(default)]
    pub starts_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Expiry, RFC 3339; required, so that no silence is forgotten forever.
    pub ends_at: chrono::DateTime<chrono::Utc>,
    /// Why, and who set it.
    #[serde(default)]
    pub comment: String,
}

/// Sensitive topics and the receiver that reviews them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReviewConfig {
    /// The review team's receiver. A mention touching a topic raises an alert to it on the
    /// route named `review`, whatever the routing tree does with it.
    pub receiver: String,
    /// The topics (legal, safety, health, politics, ...).
    pub topics: Vec<SensitiveTopicConfig>,
}

/// A sensitive topic: terms matched in the post's text, case-insensitively, on word
/// boundaries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SensitiveTopicConfig {
    /// Unique name, recorded in the alert's `review_topics`.
    pub name: String,
    /// Words or phrases; any one marks the mention.
    pub terms: Vec<String>,
}

/// The route name of review alerts; reserved in the routing tree when `router.review` is set.
pub const REVIEW_ROUTE: &str = "review";

/// A named set of times, read in one time zone. An instant is inside when its weekday, time
/// of day and date each match (an empty list matches anything).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TimeIntervalConfig {
    /// Unique name routes refer to.
    pub name: String,
    /// IANA time zone of the weekdays, times and dates, e.g. `Europe/Paris`; UTC by default.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// Days of the week, one (`saturday`) or an inclusive range (`monday:friday`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<String>,
    /// Times of day, `09:00-17:00` (start included, end excluded; `24:00` ends the day).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<String>,
    /// Dates, `2026-12-25` (holidays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dates: Vec<String>,
}

fn utc() -> String {
    "UTC".to_owned()
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

/// A receiver: exactly one channel.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReceiverConfig {
    /// Unique receiver name.
    pub name: String,
    /// A generic JSON webhook, optionally signed with HMAC-SHA256.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// A Slack incoming webhook (a Block Kit message).
    #[serde(default)]
    pub slack: Option<SlackConfig>,
    /// A Microsoft Teams incoming webhook (an Adaptive Card).
    #[serde(default)]
    pub teams: Option<TeamsConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty: Option<PagerDutyConfig>,
    /// Email over SMTP, STARTTLS required.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// Print each alert on standard output (the embedded mode's demo receiver).
    #[serde(default)]
    pub console: bool,
    /// This receiver's retry policy, when it differs from `router.delivery` (each key
    /// falls back to `router.delivery`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Raise no alert: routes to this receiver catch mentions so that nothing else does
    /// (Alertmanager's receiver without integrations).
    #[serde(default)]
    pub discard: bool,
    /// A rate limit: notifications that come sooner than `min_interval_ms` after the last
    /// message are folded into one digest message, sent when the time is up, instead of
    /// failing or queueing. Slack receivers have one by default (their `min_interval_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitConfig>,
}

/// A receiver's rate limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitConfig {
    /// Least time between two messages to this receiver.
    pub min_interval_ms: u64,
    /// Alerts shown in full in a digest; the others are listed in one line each.
    pub max_listed: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            min_interval_ms: 1_000,
            max_listed: 5,
        }
    }
}

impl ReceiverConfig {
    /// The receiver's rate limit: its own, or for Slack its `min_interval_ms`.
    pub fn effective_rate_limit(&self) -> Option<RateLimitConfig> {
        self.rate_limit.clone().or_else(|| {
            self.slack.as_ref().map(|slack| RateLimitConfig {
                min_interval_ms: slack.min_interval_ms,
                ..RateLimitConfig::default()
            })
        })
    }
}

/// A receiver's own retry policy; unset keys take `router.delivery`'s.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RetryConfig {
    /// Attempts per delivery before it is dead-lettered.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// First retry delay; doubles up to `max_backoff_ms`.
    #[serde(default)]
    pub initial_backoff_ms: Option<u64>,
    /// Longest retry delay.
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    /// Environment variable holding the HMAC-SHA256 signing key; requests then carry
    /// `X-Earshot-Timestamp` and `X-Earshot-Signature` (see the README for verification).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// File holding the signing key (trailing newline ignored); or `secret_env`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlackConfig {
    /// The incoming webhook URL. It carries a token: prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the incoming webhook URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Allow targets on loopback or private addresses (for local tests).
    #[serde(default)]
    pub allow_private: bool,
    /// Least time between two messages to this channel; Slack allows about one per second.
    #[serde(default = "one_second")]
    pub min_interval_ms: u64,
}

fn one_second() -> u64 {
    1_000
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TeamsConfig {
    /// The incoming webhook (Workflows) URL. It carries a signature: prefer `url_env`.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the webhook URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// Allow targets on loopback or private addresses (for local tests).
    #[serde(default)]
    pub allow_private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PagerDutyConfig {
    /// The Events API v2 endpoint.
    #[serde(default = "pagerduty_events_url")]
    pub url: String,
    /// Environment variable holding the integration's routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// File holding the routing key (trailing newline ignored); or `routing_key_env`.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// Event severity: `critical`, `error`, `warning` or `info`.
    #[serde(default = "warning")]
    pub severity: String,
    /// Allow targets on loopback or private addresses (for local tests).
    #[serde(default)]
    pub allow_private: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmailConfig {
    /// The SMTP relay's host name (its TLS certificate must name it).
    pub host: String,
    /// The submission port; STARTTLS is required, a relay that does not offer it is refused.
    #[serde(default = "submission_port")]
    pub port: u16,
    /// The sender, `Earshot <alerts@example.com>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// SMTP user name (AUTH after STARTTLS); none sends without authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the SMTP password (trailing newline ignored); or `password_env`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A PEM file of extra certificate authorities to trust (a private relay's); the public
    /// web roots are always trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Allow a relay on a loopback or private address.
    #[serde(default)]
    pub allow_private: bool,
}

fn submission_port() -> u16 {
    587
}

fn pagerduty_events_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_owned()
}

fn warning() -> String {
    "warning".to_owned()
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
    /// Consecutive failed attempts to one receiver that open its circuit: its deliveries
    /// then fail at once (and are dead-lettered) instead of retrying, so that a dead channel
    /// does not hold up the others. 0 disables the breaker.
    pub breaker_failures: u32,
    /// How long an open circuit stays open; then one attempt probes the receiver.
    pub breaker_open_ms: u64,
}

impl DeliveryConfig {
    /// The policy of one receiver: its `retry` keys over these.
    pub fn for_receiver(&self, receiver: &ReceiverConfig) -> DeliveryConfig {
        let mut policy = self.clone();
        if let Some(retry) = &receiver.retry {
            policy.max_attempts = retry.max_attempts.unwrap_or(policy.max_attempts);
            policy.initial_backoff_ms = retry
                .initial_backoff_ms
                .unwrap_or(policy.initial_backoff_ms);
            policy.max_backoff_ms = retry.max_backoff_ms.unwrap_or(policy.max_backoff_ms);
        }
        policy
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            max_attempts: 6,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
            request_timeout_ms: 10_000,
            concurrency: 64,
            breaker_failures: 10,
            breaker_open_ms: 30_000,
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
    /// Connections written at once: each batch is split over them by mention / alert id.
    pub connections: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: None,
            url_env: Some("DATABASE_URL".into()),
            batch_size: 2000,
            batch_linger_ms: 200,
            connections: 2,
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
    /// Roll a file once it holds about this many bytes (encoded and compressed, plus the row
    /// group still being built).
    pub roll_bytes: u64,
    /// Roll a file after it has been open this long.
    pub roll_secs: u64,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            dir: "earshot-data".into(),
            roll_rows: 100_000,
            roll_bytes: 128 * 1024 * 1024,
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
        Self::load_adjusted(sources, None, |_| {})
    }

    /// As [`Config::load`], with `adjust` (a command line's overrides) applied to the parsed
    /// configuration before it is validated; with `role`, the secrets that process reads at
    /// start are checked too ([`Config::secret_problems`]), their problems listed with the
    /// others.
    pub fn load_adjusted(
        sources: ConfigSources<'_>,
        role: Option<Role>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigErrors> {
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
        Self::from_value_for(value, role, adjust)
    }

    /// Builds a config from a merged JSON-like tree, reporting every problem.
    pub fn from_value(value: serde_json::Value) -> Result<Config, ConfigErrors> {
        Self::from_value_for(value, None, |_| {})
    }

    fn from_value_for(
        value: serde_json::Value,
        role: Option<Role>,
        adjust: impl FnOnce(&mut Config),
    ) -> Result<Config, ConfigErrors> {
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
            errors.push(key_name(unknown), "unknown section (expected kafka, topics, telemetry, collector, enricher, router or sink)");
        }
        adjust(&mut config);
        config.validate(&mut errors);
        if let Some(role) = role {
            // On the sections that parsed (the others keep their defaults).
            errors
                .problems
                .extend(config.secret_problems(role).problems);
        }
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
        for (name, topic) in TopicsConfig::KEYS.iter().zip(topics) {
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
        self.validate_sources(errors);
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
        for (k, lure) in enricher.spam_lures.iter().enumerate() {
            if lure.trim().is_empty() {
                errors.push(format!("enricher.spam_lures[{k}]"), "must not be empty");
            }
        }
        for (k, source) in enricher.language.trusted_hint_sources.iter().enumerate() {
            if source.trim().is_empty() {
                errors.push(
                    format!("enricher.language.trusted_hint_sources[{k}]"),
                    "must not be empty",
                );
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
        if !(1..=10_000).contains(&enricher.batch_size) {
            errors.push("enricher.batch_size", "must be from 1 to 10000");
        }
        if !(1..=64).contains(&enricher.workers) {
            errors.push("enricher.workers", "must be from 1 to 64");
        }
        if enricher.batch_wait_ms > 1_000 {
            errors.push("enricher.batch_wait_ms", "must be at most 1000");
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
            validate_receiver(receiver, &path, errors);
        }
        validate_routing(&self.router, &watchlists, &receivers, errors);
        if let Some(spikes) = &self.router.spikes {
            validate_spikes(spikes, &watchlists, errors);
        }
        validate_rate_limits(&self.router, errors);
        let spam = self.router.spam_threshold.0;
        if !(spam > 0.0 && spam <= 1.0) {
            errors.push(
                "router.spam_threshold",
                format!("must be above 0 and at most 1, not {spam}"),
            );
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
        for (i, receiver) in self.router.receivers.iter().enumerate() {
            let Some(retry) = &receiver.retry else {
                continue;
            };
            let path = format!("router.receivers[{i}].retry");
            let policy = delivery.for_receiver(receiver);
            if retry.max_attempts == Some(0) {
                errors.push(format!("{path}.max_attempts"), "must be at least 1");
            }
            if policy.initial_backoff_ms > policy.max_backoff_ms {
                errors.push(
                    format!("{path}.initial_backoff_ms"),
                    "must not exceed max_backoff_ms (router.delivery's when unset here)",
                );
            }
        }
        if let Some(pg) = &self.sink.postgres {
            if pg.url.is_none() && pg.url_env.is_none() {
                errors.push("sink.postgres", "set url or url_env");
            }
            if pg.batch_size == 0 {
                errors.push("sink.postgres.batch_size", "must be at least 1");
            }
            if !(1..=16).contains(&pg.connections) {
                errors.push("sink.postgres.connections", "must be between 1 and 16");
            }
        }
        if let Some(parquet) = &self.sink.parquet {
            if parquet.roll_rows == 0 {
                errors.push("sink.parquet.roll_rows", "must be at least 1");
            }
            if parquet.roll_bytes < 1024 {
                errors.push("sink.parquet.roll_bytes", "must be at least 1024");
            }
        }
    }
}

/// One receiver: exactly one channel, and each channel's target and secrets named once.
fn validate_receiver(receiver: &ReceiverConfig, path: &str, errors: &mut ConfigErrors) {
    let channels = usize::from(receiver.webhook.is_some())
        + usize::from(receiver.email.is_some())
        + usize::from(receiver.slack.is_some())
        + usize::from(receiver.teams.is_some())
        + usize::from(receiver.pagerduty.is_some())
        + usize::from(receiver.console)
        + usize::from(receiver.discard);
    const KINDS: &str = "webhook, slack, teams, pagerduty, email, console or discard";
    match channels {
        0 => errors.push(path, format!("set a channel: {KINDS}")),
        1 => {}
        _ => errors.push(path, format!("set only one channel: {KINDS}")),
    }
    let target =
        |key: &str, url: &Option<String>, url_env: &Option<String>, errors: &mut ConfigErrors| {
            match (url, url_env) {
                (None, None) => errors.push(format!("{path}.{key}"), "set url or url_env"),
                (Some(_), Some(_)) => {
                    errors.push(format!("{path}.{key}"), "set only one of url and url_env")
                }
                (Some(url), None) => check_http_url(&format!("{path}.{key}.url"), url, errors),
                (None, Some(_)) => {}
            }
        };
    if let Some(webhook) = &receiver.webhook {
        target("webhook", &webhook.url, &webhook.url_env, errors);
        if webhook.secret_env.is_some() && webhook.secret_file.is_some() {
            errors.push(
                format!("{path}.webhook"),
                "set only one of secret_env and secret_file",
            );
        }
    }
    if let Some(slack) = &receiver.slack {
        target("slack", &slack.url, &slack.url_env, errors);
    }
    if let Some(teams) = &receiver.teams {
        target("teams", &teams.url, &teams.url_env, errors);
    }
    if let Some(email) = &receiver.email {
        if email.host.trim().is_empty() {
            errors.push(format!("{path}.email.host"), "must name the SMTP relay");
        }
        if let Err(e) = email.from.parse::<lettre::message::Mailbox>() {
            errors.push(
                format!("{path}.email.from"),
                format!("{:?} is not an address: {e}", email.from),
            );
        }
        if email.to.is_empty() {
            errors.push(
                format!("{path}.email.to"),
                "must list at least one recipient",
            );
        }
        for (j, to) in email.to.iter().enumerate() {
            if let Err(e) = to.parse::<lettre::message::Mailbox>() {
                errors.push(
                    format!("{path}.email.to[{j}]"),
                    format!("{to:?} is not an address: {e}"),
                );
            }
        }
        let password = email.password_env.is_some() || email.password_file.is_some();
        if email.password_env.is_some() && email.password_file.is_some() {
            errors.push(
                format!("{path}.email"),
                "set only one of password_env and password_file",
            );
        }
        if email.username.is_some() != password {
            errors.push(
                format!("{path}.email"),
                "set username with password_env or password_file, or none of them",
            );
        }
    }
    if let Some(pagerduty) = &receiver.pagerduty {
        check_http_url(&format!("{path}.pagerduty.url"), &pagerduty.url, errors);
        match (&pagerduty.routing_key_env, &pagerduty.routing_key_file) {
            (None, None) => errors.push(
                format!("{path}.pagerduty"),
                "set routing_key_env or routing_key_file",
            ),
            (Some(_), Some(_)) => errors.push(
                format!("{path}.pagerduty"),
                "set only one of routing_key_env and routing_key_file",
            ),
            _ => {}
        }
        if !["critical", "error", "warning", "info"].contains(&pagerduty.severity.as_str()) {
            errors.push(
                format!("{path}.pagerduty.severity"),
                format!(
                    "{:?} is not one of critical, error, warning or info",
                    pagerduty.severity
                ),
            );
        }
    }
}

fn check_http_url(path: &str, url: &str, errors: &mut ConfigErrors) {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
        Ok(parsed) => errors.push(
            path,
            format!("scheme {:?} is not http or https", parsed.scheme()),
        ),
        Err(e) => errors.push(path, format!("{url:?} is not a URL: {e}")),
    }
}

/// Checks the time intervals and the routing tree: names, references, matchers, and that
/// every route that can raise an alert has a receiver.
fn validate_routing(
    router: &RouterConfig,
    watchlists: &[&str],
    receivers: &[&str],
    errors: &mut ConfigErrors,
) {
    use crate::routing;
    let mut intervals: Vec<&str> = Vec::new();
    for (i, interval) in router.time_intervals.iter().enumerate() {
        let path = format!("router.time_intervals[{i}]");
        if interval.name.trim().is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        } else if intervals.contains(&interval.name.as_str()) {
            errors.push(
                format!("{path}.name"),
                format!("duplicate time interval name {:?}", interval.name),
            );
        }
        intervals.push(&interval.name);
        if let Err(e) = routing::parse_time_zone(&interval.time_zone) {
            errors.push(format!("{path}.time_zone"), e);
        }
        for (j, days) in interval.weekdays.iter().enumerate() {
            if let Err(e) = routing::parse_weekdays(days) {
                errors.push(format!("{path}.weekdays[{j}]"), e);
            }
        }
        for (j, times) in interval.times.iter().enumerate() {
            if let Err(e) = times.parse::<routing::TimeRange>() {
                errors.push(format!("{path}.times[{j}]"), e);
            }
        }
        for (j, date) in interval.dates.iter().enumerate() {
            if let Err(e) = routing::parse_date(date) {
                errors.push(format!("{path}.dates[{j}]"), e);
            }
        }
    }
    let teams: Vec<&str> = router.teams.iter().map(|t| t.name.as_str()).collect();
    struct Walk<'a> {
        watchlists: &'a [&'a str],
        receivers: &'a [&'a str],
        intervals: &'a [&'a str],
        teams: &'a [&'a str],
        names: Vec<&'a str>,
    }
    fn walk<'a>(
        state: &mut Walk<'a>,
        routes: &'a [RouteConfig],
        parent: &str,
        inherited_receiver: Option<&'a str>,
        errors: &mut ConfigErrors,
    ) {
        for (i, route) in routes.iter().enumerate() {
            let path = format!("{parent}[{i}]");
            if route.name.trim().is_empty() {
                errors.push(format!("{path}.name"), "must not be empty");
            } else if state.names.contains(&route.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate route name {:?}", route.name),
                );
            }
            state.names.push(&route.name);
            if let Some(watchlist) = &route.watchlist {
                if !state.watchlists.contains(&watchlist.as_str()) {
                    errors.push(
                        format!("{path}.watchlist"),
                        format!("no watchlist named {watchlist:?} in enricher.watchlists"),
                    );
                }
            }
            match (route.score, route.threshold) {
                (Some(_), Some(threshold)) if !threshold.is_finite() => {
                    errors.push(format!("{path}.threshold"), "must be a finite number")
                }
                (Some(_), None) => errors.push(
                    format!("{path}.threshold"),
                    "required with score: the route matches when the score reaches it",
                ),
                (None, Some(_)) => errors.push(
                    format!("{path}.score"),
                    "required with threshold: name the score it applies to",
                ),
                _ => {}
            }
            for (j, matcher) in route.matchers.iter().enumerate() {
                if let Err(e) = matcher.parse::<crate::routing::Matcher>() {
                    errors.push(format!("{path}.matchers[{j}]"), e);
                }
            }
            for (j, label) in route.group_by.iter().flatten().enumerate() {
                if !GROUP_LABELS.contains(&label.as_str()) {
                    errors.push(
                        format!("{path}.group_by[{j}]"),
                        format!("{label:?} is not one of {}", GROUP_LABELS.join(", ")),
                    );
                }
            }
            for (key, names) in [
                ("active_time_intervals", &route.active_time_intervals),
                ("mute_time_intervals", &route.mute_time_intervals),
            ] {
                for (j, name) in names.iter().enumerate() {
                    if !state.intervals.contains(&name.as_str()) {
                        errors.push(
                            format!("{path}.{key}[{j}]"),
                            format!("no time interval named {name:?} in router.time_intervals"),
                        );
                    }
                }
            }
            if let Some(receiver) = &route.receiver {
                if !state.receivers.contains(&receiver.as_str()) {
                    errors.push(
                        format!("{path}.receiver"),
                        format!("no receiver named {receiver:?} in router.receivers"),
                    );
                }
            }
            if let Some(team) = &route.team {
                if !state.teams.contains(&team.as_str()) {
                    errors.push(
                        format!("{path}.team"),
                        format!("no team named {team:?} in router.teams"),
                    );
                }
                if route.receiver.is_some() {
                    errors.push(format!("{path}.team"), "set receiver or team, not both");
                }
            }
            // A team takes the place of a receiver (and is inherited the same way).
            let receiver = route
                .receiver
                .as_deref()
                .or(route.team.as_deref())
                .or(inherited_receiver);
            // A route raises an alert itself when none of its children matches, which can
            // happen whenever it has any: it needs a receiver then too.
            if receiver.is_none() {
                errors.push(
                    format!("{path}.receiver"),
                    "required: neither this route nor any route above it names a receiver or a team",
                );
            }
            walk(
                state,
                &route.routes,
                &format!("{path}.routes"),
                receiver,
                errors,
            );
        }
    }
    let mut state = Walk {
        watchlists,
        receivers,
        intervals: &intervals,
        teams: &teams,
        names: Vec::new(),
    };
    walk(&mut state, &router.routes, "router.routes", None, errors);
    oncall::validate_oncall(
        &router.teams,
        &router.escalation_policies,
        receivers,
        errors,
    );
    if let Some(api) = &router.api {
        oncall::validate_api(api, errors);
    }
    for (i, silence) in router.silences.iter().enumerate() {
        let path = format!("router.silences[{i}]");
        if silence.matchers.is_empty() {
            errors.push(
                format!("{path}.matchers"),
                "must list at least one matcher (a silence of everything is a typo)",
            );
        }
        for (j, matcher) in silence.matchers.iter().enumerate() {
            if let Err(e) = matcher.parse::<crate::routing::Matcher>() {
                errors.push(format!("{path}.matchers[{j}]"), e);
            }
        }
        if silence
            .starts_at
            .is_some_and(|start| start >= silence.ends_at)
        {
            errors.push(format!("{path}.ends_at"), "must be after starts_at");
        }
    }
    if let Some(review) = &router.review {
        if !receivers.contains(&review.receiver.as_str()) {
            errors.push(
                "router.review.receiver",
                format!(
                    "no receiver named {:?} in router.receivers",
                    review.receiver
                ),
            );
        }
        if state.names.contains(&REVIEW_ROUTE) {
            errors.push(
                "router.routes",
                format!("the route name {REVIEW_ROUTE:?} is reserved for review alerts when router.review is set"),
            );
        }
        if review.topics.is_empty() {
            errors.push("router.review.topics", "must list at least one topic");
        }
        let mut topics = Vec::new();
        for (i, topic) in review.topics.iter().enumerate() {
            let path = format!("router.review.topics[{i}]");
            if topic.name.trim().is_empty() {
                errors.push(format!("{path}.name"), "must not be empty");
            } else if topics.contains(&topic.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate topic name {:?}", topic.name),
                );
            }
            topics.push(&topic.name);
            if topic.terms.is_empty() {
                errors.push(format!("{path}.terms"), "must list at least one term");
            }
            for (j, term) in topic.terms.iter().enumerate() {
                if term.trim().is_empty() {
                    errors.push(format!("{path}.terms[{j}]"), "must not be empty");
                }
            }
        }
    }
}

/// Digests list at most 20 alerts in full: Slack takes 50 blocks a message.
const MAX_LISTED: usize = 20;

fn validate_rate_limits(router: &RouterConfig, errors: &mut ConfigErrors) {
    for (i, receiver) in router.receivers.iter().enumerate() {
        if let Some(limit) = &receiver.rate_limit {
            if !(1..=MAX_LISTED).contains(&limit.max_listed) {
                errors.push(
                    format!("router.receivers[{i}].rate_limit.max_listed"),
                    format!("must be from 1 to {MAX_LISTED}"),
                );
            }
        }
    }
}

fn validate_spikes(spikes: &SpikesConfig, watchlists: &[&str], errors: &mut ConfigErrors) {
    for (i, watchlist) in spikes.watchlists.iter().enumerate() {
        if !watchlists.contains(&watchlist.as_str()) {
            errors.push(
                format!("router.spikes.watchlists[{i}]"),
                format!("no watchlist named {watchlist:?} in enricher.watchlists"),
            );
        }
    }
    if spikes.window_secs == 0 {
        errors.push("router.spikes.window_secs", "must be at least 1");
    }
    if !(spikes.baseline_alpha > 0.0 && spikes.baseline_alpha <= 1.0) {
        errors.push(
            "router.spikes.baseline_alpha",
            "must be above 0 and at most 1",
        );
    }
    if !(spikes.z_threshold.is_finite() && spikes.z_threshold > 0.0) {
        errors.push("router.spikes.z_threshold", "must be a number above 0");
    }
    if spikes.min_mentions == 0 {
        errors.push("router.spikes.min_mentions", "must be at least 1");
    }
    if !(-1.0..=1.0).contains(&spikes.negative_compound) {
        errors.push(
            "router.spikes.negative_compound",
            "must be within VADER's compound range, -1..1",
        );
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

impl Config {
    fn validate_sources(&self, errors: &mut ConfigErrors) {
        let collector = &self.collector;
        let mut names = Vec::new();
        for (i, rss) in collector.sources.rss.iter().enumerate() {
            let path = format!("collector.sources.rss[{i}]");
            check_source_name(&path, &rss.name, &mut names, errors);
            check_http_url(&format!("{path}.url"), &rss.url, errors);
            if rss.interval_ms == 0 {
                errors.push(format!("{path}.interval_ms"), "must be at least 1");
            }
            if rss.max_seen_ids == 0 {
                errors.push(format!("{path}.max_seen_ids"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, mastodon) in collector.sources.mastodon.iter().enumerate() {
            let path = format!("collector.sources.mastodon[{i}]");
            check_source_name(&path, &mastodon.name, &mut names, errors);
            check_http_url(&format!("{path}.server"), &mastodon.server, errors);
            match (&mastodon.timeline, &mastodon.hashtag) {
                (MastodonTimeline::Hashtag, None) => {
                    errors.push(format!("{path}.hashtag"), "required for timeline: hashtag")
                }
                (MastodonTimeline::Hashtag, Some(tag))
                    if tag.trim().is_empty() || tag.starts_with('#') =>
                {
                    errors.push(
                        format!("{path}.hashtag"),
                        "must be a tag without the leading '#'",
                    )
                }
                (MastodonTimeline::Public | MastodonTimeline::Local, Some(_)) => errors.push(
                    format!("{path}.hashtag"),
                    "only applies to timeline: hashtag",
                ),
                _ => {}
            }
            if !(1..=40).contains(&mastodon.backfill_page_size) {
                errors.push(
                    format!("{path}.backfill_page_size"),
                    "must be between 1 and 40",
                );
            }
            if mastodon.usual_interval_ms == 0 {
                errors.push(format!("{path}.usual_interval_ms"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, bluesky) in collector.sources.bluesky.iter().enumerate() {
            let path = format!("collector.sources.bluesky[{i}]");
            check_source_name(&path, &bluesky.name, &mut names, errors);
            match reqwest::Url::parse(&bluesky.url) {
                Ok(parsed) if matches!(parsed.scheme(), "ws" | "wss") => {}
                Ok(parsed) => errors.push(
                    format!("{path}.url"),
                    format!("scheme {:?} is not ws or wss", parsed.scheme()),
                ),
                Err(e) => errors.push(
                    format!("{path}.url"),
                    format!("{:?} is not a URL: {e}", bluesky.url),
                ),
            }
            for (j, did) in bluesky.wanted_dids.iter().enumerate() {
                if !did.starts_with("did:") {
                    errors.push(
                        format!("{path}.wanted_dids[{j}]"),
                        format!("{did:?} is not a DID (did:plc:… or did:web:…)"),
                    );
                }
            }
            if bluesky.usual_interval_ms == 0 {
                errors.push(format!("{path}.usual_interval_ms"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, hn) in collector.sources.hackernews.iter().enumerate() {
            let path = format!("collector.sources.hackernews[{i}]");
            check_source_name(&path, &hn.name, &mut names, errors);
            check_http_url(&format!("{path}.url"), &hn.url, errors);
            if hn.interval_ms == 0 {
                errors.push(format!("{path}.interval_ms"), "must be at least 1");
            }
            if hn.max_items_per_poll == 0 {
                errors.push(format!("{path}.max_items_per_poll"), "must be at least 1");
            }
            if hn.concurrency == 0 {
                errors.push(format!("{path}.concurrency"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, reddit) in collector.sources.reddit.iter().enumerate() {
            let path = format!("collector.sources.reddit[{i}]");
            check_source_name(&path, &reddit.name, &mut names, errors);
            check_http_url(&format!("{path}.url"), &reddit.url, errors);
            let empty = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
            match reddit.listing {
                RedditListing::New | RedditListing::Comments if empty(&reddit.subreddit) => errors
                    .push(
                        format!("{path}.subreddit"),
                        "required for the new and comments listings",
                    ),
                RedditListing::Search if empty(&reddit.query) => {
                    errors.push(format!("{path}.query"), "required for the search listing")
                }
                _ => {}
            }
            if let Some(oauth) = &reddit.oauth {
                check_http_url(&format!("{path}.oauth.token_url"), &oauth.token_url, errors);
            }
            if reddit.interval_ms == 0 {
                errors.push(format!("{path}.interval_ms"), "must be at least 1");
            }
            if reddit.max_pages == 0 {
                errors.push(format!("{path}.max_pages"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, discourse) in collector.sources.discourse.iter().enumerate() {
            let path = format!("collector.sources.discourse[{i}]");
            check_source_name(&path, &discourse.name, &mut names, errors);
            check_http_url(&format!("{path}.url"), &discourse.url, errors);
            if discourse.api_key_env.is_some() != discourse.api_username_env.is_some() {
                errors.push(
                    format!("{path}.api_key_env"),
                    "set both api_key_env and api_username_env, or neither",
                );
            }
            if discourse.interval_ms == 0 {
                errors.push(format!("{path}.interval_ms"), "must be at least 1");
            }
            if discourse.max_pages == 0 {
                errors.push(format!("{path}.max_pages"), "must be at least 1");
            }
        }
        let mut names = Vec::new();
        for (i, x) in collector.sources.x.iter().enumerate() {
            let path = format!("collector.sources.x[{i}]");
            check_source_name(&path, &x.name, &mut names, errors);
            check_http_url(&format!("{path}.url"), &x.url, errors);
            if x.bearer_token_env.trim().is_empty() {
                errors.push(
                    format!("{path}.bearer_token_env"),
                    "must name an environment variable",
                );
            }
            if x.rules.is_empty() {
                errors.push(format!("{path}.rules"), "must list at least one rule");
            }
            for (j, rule) in x.rules.iter().enumerate() {
                if rule.value.trim().is_empty() {
                    errors.push(format!("{path}.rules[{j}].value"), "must not be empty");
                }
            }
            if x.backfill_minutes > 5 {
                errors.push(
                    format!("{path}.backfill_minutes"),
                    "must be between 0 and 5",
                );
            }
            if x.usual_interval_ms == 0 {
                errors.push(format!("{path}.usual_interval_ms"), "must be at least 1");
            }
        }
        let politeness = &collector.politeness;
        if politeness.user_agent.trim().is_empty() {
            errors.push("collector.politeness.user_agent", "must not be empty");
        }
        if politeness.max_attempts == 0 {
            errors.push("collector.politeness.max_attempts", "must be at least 1");
        }
        if politeness.initial_backoff_ms > politeness.max_backoff_ms {
            errors.push(
                "collector.politeness.initial_backoff_ms",
                "must not exceed max_backoff_ms",
            );
        }
        for (key, value) in [
            ("connect_timeout_ms", politeness.connect_timeout_ms),
            ("read_timeout_ms", politeness.read_timeout_ms),
        ] {
            if value == 0 {
                errors.push(format!("collector.politeness.{key}"), "must be at least 1");
            }
        }
        let health = &collector.health;
        if health.quiet_after_intervals == 0 {
            errors.push(
                "collector.health.quiet_after_intervals",
                "must be at least 1",
            );
        }
        if health.failing_after_errors == 0 {
            errors.push(
                "collector.health.failing_after_errors",
                "must be at least 1",
            );
        }
        if health.check_interval_ms == 0 {
            errors.push("collector.health.check_interval_ms", "must be at least 1");
        }
    }
}

fn check_source_name<'a>(
    path: &str,
    name: &'a str,
    names: &mut Vec<&'a str>,
    errors: &mut ConfigErrors,
) {
    if name.trim().is_empty() {
        errors.push(format!("{path}.name"), "must not be empty");
    } else if name.contains('/') {
        errors.push(format!("{path}.name"), "must not contain '/'");
    }
    if names.contains(&name) {
        errors.push(
            format!("{path}.name"),
            format!("duplicate source name {name:?} for this kind"),
        );
    }
    names.push(name);
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

/// A key as a problem names it: quoted when it is empty or not a plain name, so that the
/// key path of `"": 1` or `"a b": 1` is still there to see.
fn key_name(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
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
    fn an_unknown_section_with_an_odd_name_is_named_quoted() {
        // `! :` is an empty key too, written as a tagged empty node.
        let found = problems("! : 1\n\"a b\": 2\n");
        assert!(
            found.iter().any(|p| p.starts_with("\"\": unknown section")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("\"a b\": unknown section")),
            "{found:?}"
        );
        assert!(found.iter().all(|p| !p.starts_with(": ")), "{found:?}");
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(problems("{}"), Vec::<String>::new());
    }

    #[test]
    fn group_labels_and_rate_limits_are_checked() {
        let found = problems(
            r#"
router:
  spam_threshold: 1.5
  receivers:
    - { name: hook, console: true, rate_limit: { min_interval_ms: 500, max_listed: 0 } }
  routes:
    - name: all
      receiver: hook
      group_by: [watchlist, mood]
"#,
        );
        assert_eq!(
            found,
            [
                "router.routes[0].group_by[1]: \"mood\" is not one of watchlist, intent, language, source, author",
                "router.receivers[0].rate_limit.max_listed: must be from 1 to 20",
                "router.spam_threshold: must be above 0 and at most 1, not 1.5",
            ]
        );
    }

    #[test]
    fn spike_settings_are_checked_together() {
        assert_eq!(problems("router: { spikes: {} }"), Vec::<String>::new());
        let found = problems(
            r#"
enricher:
  watchlists: [{ name: acme, terms: [acme] }]
router:
  spikes:
    watchlists: [acme, globex]
    window_secs: 0
    baseline_alpha: 1.5
    z_threshold: 0
    min_mentions: 0
    negative_compound: -2
"#,
        );
        assert_eq!(
            found,
            [
                "router.spikes.watchlists[1]: no watchlist named \"globex\" in enricher.watchlists",
                "router.spikes.window_secs: must be at least 1",
                "router.spikes.baseline_alpha: must be above 0 and at most 1",
                "router.spikes.z_threshold: must be a number above 0",
                "router.spikes.min_mentions: must be at least 1",
                "router.spikes.negative_compound: must be within VADER's compound range, -1..1",
            ]
        );
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
  spam_lures: [""]
  language: { trusted_hint_sources: [" "] }
  urgency: { negativity: -1, intent: 0, reach: 0, velocity: 0 }
  max_text_bytes: 10
  batch_size: 0
  batch_wait_ms: 5000
"#,
        );
        assert_eq!(
            found,
            [
                "enricher.intent_cues.en.gossip: unknown intent; expected one of crisis_risk, churn_threat, complaint, question, purchase_intent, opportunity, praise",
                "enricher.intent_cues.english: must be a two-letter ISO 639-1 language code",
                "enricher.intent_cues.english.praise[0]: must not be empty",
                "enricher.spam_phrases[0]: must not be empty",
                "enricher.spam_lures[0]: must not be empty",
                "enricher.language.trusted_hint_sources[0]: must not be empty",
                "enricher.urgency.negativity: must be 0 or more",
                "enricher.urgency: at least one weight must be above 0",
                "enricher.max_text_bytes: must be at least 1024",
                "enricher.batch_size: must be from 1 to 10000",
                "enricher.batch_wait_ms: must be at most 1000",
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

    #[test]
    fn routing_tree_problems_are_reported_with_their_paths() {
        let found = problems(
            r#"
enricher:
  watchlists:
    - { name: acme, terms: ["acme"] }
router:
  receivers:
    - { name: care, console: true }
  time_intervals:
    - name: office
      time_zone: Europe/Atlantis
      weekdays: ["monday:friday", "funday"]
      times: ["17:00-09:00"]
      dates: ["25/12/2026"]
    - name: office
  routes:
    - name: acme
      watchlist: acme
      receiver: care
      active_time_intervals: [office, lunch]
      routes:
        - name: angry
          matchers: ["sentiment.compound < -0.5", "mood = bad", "reach =~ 1.*"]
        - name: acme
          score: reach
    - name: orphan
      threshold: 3
      mute_time_intervals: [weekends]
      routes:
        - name: orphan-child
          receiver: nobody
"#,
        );
        let expected = [
            "router.time_intervals[0].time_zone: \"Europe/Atlantis\" is not an IANA time zone",
            "router.time_intervals[0].weekdays[1]: \"funday\" is not a day of the week",
            "router.time_intervals[0].times[0]: \"17:00-09:00\" ends before it starts",
            "router.time_intervals[0].dates[0]: \"25/12/2026\" is not a date",
            "router.time_intervals[1].name: duplicate time interval name \"office\"",
            "router.routes[0].active_time_intervals[1]: no time interval named \"lunch\"",
            "router.routes[0].routes[0].matchers[1]: \"mood\" is not a field",
            "router.routes[0].routes[0].matchers[2]: reach is a number",
            "router.routes[0].routes[1].name: duplicate route name \"acme\"",
            "router.routes[0].routes[1].threshold: required with score",
            "router.routes[1].score: required with threshold",
            "router.routes[1].mute_time_intervals[0]: no time interval named \"weekends\"",
            "router.routes[1].receiver: required: neither this route nor any route above it",
            "router.routes[1].routes[0].receiver: no receiver named \"nobody\"",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn receivers_silences_and_review_are_checked_with_their_paths() {
        let found = problems(
            r#"
router:
  receivers:
    - name: ok-slack
      slack: { url_env: SLACK_URL }
    - name: ok-pagerduty
      pagerduty: { routing_key_file: /run/secrets/pd }
    - name: ok-signed
      webhook: { url: "https://hooks.example.com/earshot", secret_env: HOOK_KEY }
    - name: two
      slack: { url_env: SLACK_URL }
      console: true
    - name: none
    - name: teams-without-url
      teams: {}
    - name: pd
      pagerduty: { url: "ftp://pd", severity: loud }
    - name: signed-twice
      webhook: { url_env: U, secret_env: K, secret_file: /k }
    - name: patient
      console: true
      retry: { max_attempts: 0, initial_backoff_ms: 60000 }
    - name: mail
      email: { host: smtp.example.com, from: "not an address", to: [], username: earshot }
    - name: ok-mail
      email: { host: smtp.example.com, from: "Earshot <alerts@example.com>", to: ["care@example.com"], username: u, password_file: /p }
  routes:
    - { name: review, receiver: patient }
  silences:
    - { matchers: [], ends_at: "2026-12-01T00:00:00Z" }
    - { matchers: ["mood = calm"], starts_at: "2026-12-02T00:00:00Z", ends_at: "2026-12-01T00:00:00Z" }
  review:
    receiver: lawyers
    topics:
      - { name: legal, terms: ["lawsuit", ""] }
      - { name: legal, terms: [] }
"#,
        );
        let expected = [
            "router.receivers[3]: set only one channel",
            "router.receivers[4]: set a channel: webhook, slack, teams, pagerduty, email, console or discard",
            "router.receivers[5].teams: set url or url_env",
            "router.receivers[6].pagerduty.url: scheme \"ftp\" is not http or https",
            "router.receivers[6].pagerduty: set routing_key_env or routing_key_file",
            "router.receivers[6].pagerduty.severity: \"loud\" is not one of",
            "router.receivers[7].webhook: set only one of secret_env and secret_file",
            "router.receivers[8].retry.max_attempts: must be at least 1",
            "router.receivers[8].retry.initial_backoff_ms: must not exceed max_backoff_ms",
            "router.receivers[9].email.from: \"not an address\" is not an address",
            "router.receivers[9].email.to: must list at least one recipient",
            "router.receivers[9].email: set username with password_env or password_file",
            "router.silences[0].matchers: must list at least one matcher",
            "router.silences[1].matchers[0]: \"mood\" is not a field",
            "router.silences[1].ends_at: must be after starts_at",
            "router.review.receiver: no receiver named \"lawyers\"",
            "router.routes: the route name \"review\" is reserved",
            "router.review.topics[0].terms[1]: must not be empty",
            "router.review.topics[1].name: duplicate topic name \"legal\"",
            "router.review.topics[1].terms: must list at least one term",
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
    fn every_source_problem_is_reported_with_its_key_path() {
        let found = problems(
            r#"
collector:
  sources:
    rss:
      - { name: blog, url: "ftp://blog.example/feed" }
      - { name: blog, url: "https://blog.example/feed", interval_ms: 0 }
    mastodon:
      - { name: "a/b", server: "https://mastodon.social", timeline: hashtag }
      - { name: local, server: "https://mastodon.social", timeline: local, hashtag: acme, backfill_page_size: 41 }
    bluesky:
      - { name: firehose, url: "https://jetstream.example/subscribe", wanted_dids: ["kim"] }
    hackernews:
      - { name: hn, concurrency: 0 }
    reddit:
      - { name: coffee, listing: new }
      - { name: search, listing: search }
    discourse:
      - { name: forum, url: "https://forum.example", api_key_env: KEY }
    x:
      - { name: brand, rules: [], backfill_minutes: 9 }
  politeness:
    initial_backoff_ms: 10
    max_backoff_ms: 1
  health:
    quiet_after_intervals: 0
"#,
        );
        let expected = [
            "collector.sources.rss[0].url: scheme \"ftp\" is not http or https",
            "collector.sources.rss[1].name: duplicate source name \"blog\"",
            "collector.sources.rss[1].interval_ms: must be at least 1",
            "collector.sources.mastodon[0].name: must not contain '/'",
            "collector.sources.mastodon[0].hashtag: required for timeline: hashtag",
            "collector.sources.mastodon[1].hashtag: only applies to timeline: hashtag",
            "collector.sources.mastodon[1].backfill_page_size: must be between 1 and 40",
            "collector.sources.bluesky[0].url: scheme \"https\" is not ws or wss",
            "collector.sources.bluesky[0].wanted_dids[0]: \"kim\" is not a DID",
            "collector.sources.hackernews[0].concurrency: must be at least 1",
            "collector.sources.reddit[0].subreddit: required for the new and comments listings",
            "collector.sources.reddit[1].query: required for the search listing",
            "collector.sources.discourse[0].api_key_env: set both",
            "collector.sources.x[0].rules: must list at least one rule",
            "collector.sources.x[0].backfill_minutes: must be between 0 and 5",
            "collector.politeness.initial_backoff_ms: must not exceed max_backoff_ms",
            "collector.health.quiet_after_intervals: must be at least 1",
        ];
        for want in expected {
            assert!(
                found.iter().any(|p| p.starts_with(want)),
                "missing {want:?} in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
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
