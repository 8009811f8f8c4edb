//! The router's state in the compacted topic `topics.router_state` (see
//! `earshot_core::table`): each alert to a team ([`Tracked`], key `alert/<id>`, in the
//! partition of its mention's input partition, deleted once resolved) and each silence set
//! by API (key `silence/<id>`, partition 0, deleted when removed), as JSON.
//!
//! Every replica reads the whole topic ([`follow`]), so an acknowledgement received by any
//! replica reaches the one that escalates the alert, and a partition that moves takes its
//! escalations along; each replica escalates only the alerts of the input partitions it is
//! assigned.

use std::sync::Arc;

use bytes::Bytes;
use earshot_core::bus::Ack;
use earshot_core::table::{TableUpdate, TableWriter};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::escalation::{Escalations, Tracked};
use crate::silences::{ApiSilence, Silences};

const ALERT: &str = "alert/";
const SILENCE: &str = "silence/";

/// Writes the router's state.
#[derive(Clone)]
pub struct RouterState {
    writer: Arc<dyn TableWriter>,
}

impl RouterState {
    pub fn new(writer: Arc<dyn TableWriter>) -> Self {
        RouterState { writer }
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

/// Applies every update of the state topic to `escalations` and `silences`, until the
/// stream ends. An entry that does not parse is logged and skipped: state never stops the
/// router.
pub async fn follow(
    mut updates: mpsc::Receiver<TableUpdate>,
    escalations: Arc<Escalations>,
    silences: Arc<Silences>,
) {
    while let Some(update) = updates.recv().await {
        apply(update, &escalations, &silences);
    }
}

fn apply(update: TableUpdate, escalations: &Escalations, silences: &Silences) {
    if let Some(id) = update.key.strip_prefix(ALERT) {
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
