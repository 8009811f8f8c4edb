//! Shutdown: one `CancellationToken` per process, cancelled by SIGTERM or SIGINT; every loop
//! watches it, drains and commits within its own timeout.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT; a second signal exits at once.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received: draining, flushing and committing");
        token.cancel();
        wait_for_signal().await;
        tracing::warn!("second shutdown signal: exiting without draining");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
