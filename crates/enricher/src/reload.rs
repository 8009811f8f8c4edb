//! Watchlists reloaded without a restart: on SIGHUP, or when the configuration file changes
//! (its modification time or length, checked every `POLL`), the file is loaded and validated
//! like at start; a valid one replaces the [`Enricher`], an invalid one is logged with every
//! problem and the running watchlists stay.
//!
//! The stage takes the new enricher between two records, so no record is lost or enriched
//! twice: records before the swap were enriched with the old watchlists, later ones with the
//! new. The spam look-back state starts empty with the new enricher.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use earshot_core::config::ConfigSources;
use earshot_core::Config;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Enricher;

/// How often the configuration file is checked for changes.
pub const POLL: Duration = Duration::from_secs(2);

/// Spawns the reloader of `path`; the receiver sees each new [`Enricher`].
pub fn spawn(
    path: PathBuf,
    initial: Arc<Enricher>,
    poll: Duration,
    shutdown: CancellationToken,
) -> watch::Receiver<Arc<Enricher>> {
    let (sender, receiver) = watch::channel(initial);
    // Taken now, not when the task first runs, so that a change in between is seen.
    let seen = stamp(&path);
    // tokio::task::Builder (task names) is unstable; the span names the task instead.
    tokio::spawn(tracing::Instrument::instrument(
        watch_file(path, seen, sender, poll, shutdown),
        tracing::info_span!("enricher-reload"),
    ));
    receiver
}

async fn watch_file(
    path: PathBuf,
    mut seen: Option<(SystemTime, u64)>,
    sender: watch::Sender<Arc<Enricher>>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticks = tokio::time::interval(poll);
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(hangup) => hangup.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<bool>();
        let reason = tokio::select! {
            _ = shutdown.cancelled() => return,
            true = signalled => "SIGHUP",
            _ = ticks.tick() => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                "file changed"
            }
        };
        match load(&path) {
            Ok(config) => {
                let count = config.enricher.watchlists.len();
                sender.send_replace(Arc::new(Enricher::new(&config.enricher)));
                tracing::info!(reason, watchlists = count, path = %path.display(), "watchlists reloaded");
            }
            Err(problems) => {
                tracing::error!(reason, path = %path.display(), %problems, "configuration not reloaded: the running watchlists stay");
            }
        }
    }
}

fn load(path: &Path) -> Result<Config, earshot_core::config::ConfigErrors> {
    Config::load(ConfigSources {
        defaults_yaml: None,
        file: Some(path),
        environment: true,
    })
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

#[cfg(test)]
mod tests {
    use earshot_core::model::{mention_id, Author, Engagement, Mention, Source};

    use super::*;

    fn mention(text: &str) -> Mention {
        Mention {
            id: mention_id("test", text),
            native_id: text.into(),
            source: Source {
                kind: "test".into(),
                instance: "unit".into(),
            },
            url: None,
            author: Author {
                handle: "@sam".into(),
                name: None,
                followers: Some(10),
                verified: false,
                id: None,
            },
            text: text.into(),
            lang_hint: None,
            created_at: 1,
            collected_at: 1,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        }
    }

    fn watchlists(enricher: &Enricher) -> Vec<String> {
        enricher
            .enrich(mention("lumora and parcelly"))
            .into_iter()
            .map(|e| e.watchlist)
            .filter(|w| !w.is_empty())
            .collect()
    }

    #[tokio::test]
    async fn a_changed_file_replaces_the_watchlists_and_an_invalid_one_keeps_them() {
        let dir = std::env::temp_dir().join(format!(
            "earshot-reload-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("earshot.yaml");
        let write = |query: &str| {
            std::fs::write(
                &path,
                format!("enricher:\n  watchlists:\n    - name: w\n      query: '{query}'\n"),
            )
            .unwrap()
        };
        write("lumora");
        let initial = Arc::new(Enricher::new(&load(&path).unwrap().enricher));
        let shutdown = CancellationToken::new();
        let mut receiver = spawn(
            path.clone(),
            initial,
            Duration::from_millis(20),
            shutdown.clone(),
        );
        assert_eq!(watchlists(&receiver.borrow()), ["w"]);

        // A longer file: the length changes even within the file system's time resolution.
        write("parcelly AND NOT lumora");
        tokio::time::timeout(Duration::from_secs(10), receiver.changed())
            .await
            .expect("reloaded")
            .unwrap();
        assert_eq!(
            watchlists(&receiver.borrow_and_update()),
            Vec::<String>::new()
        );

        write("(lumora");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !receiver.has_changed().unwrap(),
            "an invalid file is not loaded"
        );
        assert_eq!(watchlists(&receiver.borrow()), Vec::<String>::new());
        shutdown.cancel();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
