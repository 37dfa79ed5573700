//! Cooperative shutdown: SIGTERM and Ctrl-C set one flag that every long-running loop checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A cloneable flag, raised once by a signal (or by a test) and never lowered.
#[derive(Clone, Default, Debug)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag that is raised by SIGTERM or SIGINT (Ctrl-C). Needs a tokio runtime.
    pub fn on_signals() -> Self {
        let flag = Shutdown::default();
        let raised = flag.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(message = "Shutdown requested; finishing the current batch.");
            raised.raise();
        });
        flag
    }

    /// Raises the flag.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the flag is raised.
    pub fn is_raised(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps for `dur`, waking early (within 50 ms) when the flag is raised.
    pub async fn sleep(&self, dur: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + dur;
        while !self.is_raised() && tokio::time::Instant::now() < deadline {
            let left = deadline - tokio::time::Instant::now();
            tokio::time::sleep(left.min(std::time::Duration::from_millis(50))).await;
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
