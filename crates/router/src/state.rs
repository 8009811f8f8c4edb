//! The router's state in the compacted topic `topics.router_state` (see
//! `earshot_core::table`), as JSON:
//!
//! - `alert/<id>`: each alert to a team ([`Tracked`]), in the partition of its mention's
//!   input partition, deleted once resolved;
//! - `silence/<id>`: each silence set by API, partition 0, deleted when removed;
//! - `group/<partition>/<group id>`: a group's timing and memory for the alerts of one input
//!   partition ([`SavedGroup`]: when its pending notification is due, when it last went out,
//!   which alerts it notified within `repeat_interval`), deleted once idle past its windows;
//! - `digest/<receiver>`: a rate-limited receiver's next free slot ([`SavedSlot`]),
//!   partition 0 (the limit is the receiver's, whatever partition its alerts come from);
//! - `spike/<watchlist>`: a watchlist's spike baseline, open window and cooldowns
//!   ([`SavedSpikes`]), in the partition of its mentions (all copies of a watchlist are in
//!   one).
//!
//! Every replica reads the whole topic ([`follow`]), so an acknowledgement received by any
//! replica reaches the one that escalates the alert, and a partition that moves takes its
//! escalations, groups and baselines along; each replica escalates only the alerts of the
//! input partitions it is assigned, and uses a group's or a watchlist's entry only when the
//! records of its partition come to it. A partition newly assigned is read to its end first
//! (`crate::handover`), so what its previous owner wrote last is applied before either.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use earshot_core::bus::Ack;
use earshot_core::table::{TableUpdate, TableUpdates, TableWriter};
use uuid::Uuid;

use crate::digest::Outbox;
use crate::escalation::{Escalations, Tracked};
use crate::grouping::Grouper;
use crate::silences::{ApiSilence, Silences};
use crate::spikes::SpikeInbox;

pub use crate::digest::SavedSlot;
pub use crate::grouping::SavedGroup;
pub use crate::spikes::SavedSpikes;

const ALERT: &str = "alert/";
const SILENCE: &str = "silence/";
const GROUP: &str = "group/";
const DIGEST: &str = "digest/";
const SPIKE: &str = "spike/";

/// Where the parts of the router built before the state was read will write it, once it
/// is: groups, digests and spike detection write nothing before then.
pub type StateCell = Arc<OnceLock<RouterState>>;

/// Writes the router's state.
#[derive(Clone)]
pub struct RouterState {
    writer: Arc<dyn TableWriter>,
    /// This process's id in the entries it writes, so that it tells its own writes read back
    /// from another replica's.
    pub writer_id: Uuid,
}

impl RouterState {
    pub fn new(writer: Arc<dyn TableWriter>) -> Self {
        RouterState {
            writer,
            writer_id: Uuid::new_v4(),
        }
    }

    /// Whether the state outlives the process: only then is work pending at shutdown left
    /// for the next router (the embedded mode sends it at once instead).
    pub fn durable(&self) -> bool {
        self.writer.durable()
    }

    /// Saves a group's entry for the alerts of input `partition`; `None` deletes it.
    pub async fn save_group(
        &self,
        partition: i32,
        group_id: Uuid,
        group: Option<&SavedGroup>,
    ) -> Ack {
        let value = group.map(|g| Bytes::from(serde_json::to_vec(g).expect("groups serialize")));
        self.writer
            .put(partition, &format!("{GROUP}{partition}/{group_id}"), value)
            .await
    }

    /// Saves a rate-limited receiver's next slot.
    pub async fn save_slot(&self, receiver: &str, slot: &SavedSlot) -> Ack {
        let value = Bytes::from(serde_json::to_vec(slot).expect("slots serialize"));
        self.writer
            .put(0, &format!("{DIGEST}{receiver}"), Some(value))
            .await
    }

    /// Saves a watchlist's spike detection state, in the input `partition` of its mentions.
    pub async fn save_spikes(&self, partition: i32, watchlist: &str, saved: &SavedSpikes) -> Ack {
        let value = Bytes::from(serde_json::to_vec(saved).expect("spike states serialize"));
        self.writer
            .put(partition, &format!("{SPIKE}{watchlist}"), Some(value))
            .await
    }

    /// Saves an alert's entry; a resolved one is deleted.
    pub async fn save_alert(&self, tracked: &Tracked) -> Ack {
        let key = format!("{ALERT}{}", tracked.alert.id);
        let value = tracked
            .alert
            .resolved_at
            .is_none()
            .then(|| Bytes::from(serde_json::to_vec(tracked).expect("entries serialize")));
        self.writer.put(tracked.partition, &key, value).await
    }

    /// Saves a silence; `None` deletes it.
    pub async fn save_silence(&self, id: Uuid, silence: Option<&ApiSilence>) -> Ack {
        let value =
            silence.map(|s| Bytes::from(serde_json::to_vec(s).expect("silences serialize")));
        self.writer.put(0, &format!("{SILENCE}{id}"), value).await
    }
}

/// What the state topic's entries are applied to.
pub struct Restore {
    pub escalations: Arc<Escalations>,
    pub silences: Arc<Silences>,
    pub grouper: Arc<Grouper>,
    pub outbox: Arc<Outbox>,
    /// Spike states written by another process, for the detector to take up.
    pub spikes: SpikeInbox,
    /// This process's writer id: its own spike states read back are not taken up again.
    pub writer_id: Uuid,
}

/// Applies every update of the state topic to `restore`, until the stream ends. An entry
/// that does not parse is logged and skipped: state never stops the router. Each update is
/// applied before the next is asked for, which is what a partition's read to its end
/// (`TableReader::read_to_end`) waits for.
pub async fn follow(mut updates: TableUpdates, restore: Restore) {
    while let Some(update) = updates.recv().await {
        apply(update, &restore);
    }
}

/// Parses an entry's JSON, logging what does not parse.
fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Option<T> {
    serde_json::from_slice(value)
        .map_err(|error| tracing::warn!(key, %error, "state: unreadable entry; skipped"))
        .ok()
}

fn apply(update: TableUpdate, restore: &Restore) {
    let (escalations, silences) = (&restore.escalations, &restore.silences);
    if let Some(rest) = update.key.strip_prefix(GROUP) {
        let parsed = rest
            .split_once('/')
            .and_then(|(p, id)| Some((p.parse::<i32>().ok()?, Uuid::parse_str(id).ok()?)));
        let Some((partition, group_id)) = parsed else {
            tracing::warn!(key = %update.key, "state: not a group key; skipped");
            return;
        };
        let saved = match &update.value {
            None => None,
            Some(value) => match parse::<SavedGroup>(&update.key, value) {
                Some(saved) => Some(saved),
                None => return,
            },
        };
        restore.grouper.restore(partition, group_id, saved);
    } else if let Some(receiver) = update.key.strip_prefix(DIGEST) {
        if let Some(slot) = update
            .value
            .as_deref()
            .and_then(|v| parse::<SavedSlot>(&update.key, v))
        {
            restore.outbox.restore(receiver, slot);
        }
    } else if let Some(watchlist) = update.key.strip_prefix(SPIKE) {
        if let Some(saved) = update
            .value
            .as_deref()
            .and_then(|v| parse::<SavedSpikes>(&update.key, v))
        {
            if saved.writer != restore.writer_id {
                restore.spikes.put(watchlist.to_owned(), saved.state);
            }
        }
    } else if let Some(id) = update.key.strip_prefix(ALERT) {
        let Ok(id) = Uuid::parse_str(id) else {
            tracing::warn!(key = %update.key, "state: not an alert id; skipped");
            return;
        };
        match update.value {
            None => escalations.remove(id),
            Some(value) => match serde_json::from_slice::<Tracked>(&value) {
                Ok(entry) => escalations.insert(entry),
                Err(error) => {
                    tracing::warn!(key = %update.key, %error, "state: unreadable alert entry; skipped")
                }
            },
        }
    } else if let Some(id) = update.key.strip_prefix(SILENCE) {
        let Ok(id) = Uuid::parse_str(id) else {
            tracing::warn!(key = %update.key, "state: not a silence id; skipped");
            return;
        };
        match update.value {
            None => {
                silences.remove(id);
            }
            Some(value) => match serde_json::from_slice::<ApiSilence>(&value) {
                Ok(silence) => silences.restore(silence),
                Err(error) => {
                    tracing::warn!(key = %update.key, %error, "state: unreadable silence; skipped")
                }
            },
        }
    } else {
        tracing::warn!(key = %update.key, "state: unknown key; skipped");
    }
}
