//! What every Earshot service shares: the event model, the Avro codec, the bus (Kafka and
//! in-memory) and the at-least-once stage loop, config loading, telemetry and shutdown.
//! Only this crate talks to rdkafka.

pub mod bus;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod kafka;
pub mod memory;
pub mod model;
pub mod registry;
pub mod routing;
pub mod runner;
pub mod service;
pub mod shutdown;
pub mod table;
pub mod telemetry;

pub use bus::{InRecord, OutRecord, Publisher, Subscription};
pub use config::Config;
pub use model::{Alert, EnrichedMention, Mention};
pub use runner::{Batch, Completion, Stage, StageError};
pub use service::Services;
