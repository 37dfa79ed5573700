//! Outages of the services a job depends on: retried with capped exponential backoff and
//! jitter, never skipped, one log line when a dependency goes down and one when it is back,
//! and an `up` gauge and a retry counter per dependency for the metrics.
//!
//! Only errors that waiting can cure are retried ([`transient`]): a refused password or a
//! missing bucket stops the job with one line, as before.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use crate::shutdown::Shutdown;
use crate::{Error, Result};

/// Capped exponential backoff with jitter: `initial * 2^n`, at most `max`, drawn from the
/// upper half so a fleet of restarted processes does not knock in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            failures: 0,
            initial,
            max,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The dependency answered: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and returns the wait before the next attempt.
    pub fn wait(&mut self) -> Duration {
        let cap = self.cap(self.failures);
        self.failures += 1;
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms.max(1)))
    }

    /// The longest wait after `failures` failures.
    fn cap(&self, failures: u32) -> Duration {
        self.initial
            .saturating_mul(1u32 << failures.min(16))
            .min(self.max)
    }
}

/// The health of one dependency, as the metrics show it.
#[derive(Debug)]
pub struct Health {
    /// 1 while the dependency answers, 0 while it is being retried.
    pub up: AtomicI64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            up: AtomicI64::new(1),
            retries: AtomicU64::new(0),
        }
    }
}

/// Whether waiting can cure `e`: the service is unreachable, restarting, overloaded or out
/// of space, as opposed to refusing us (credentials, permissions, a missing bucket or
/// table) or our own bug.
pub fn transient(e: &Error) -> bool {
    match e {
        Error::Lake { source, .. } => !matches!(
            source,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
                | object_store::Error::InvalidPath { .. }
                | object_store::Error::NotSupported { .. }
                | object_store::Error::NotImplemented { .. }
                | object_store::Error::UnknownConfigurationKey { .. }
        ),
        Error::Database { source, .. } => transient_sql(source),
        Error::RegistryUnreachable(_) => true,
        Error::Redis { source, .. } => {
            source.is_io_error()
                || source.is_connection_dropped()
                || source.is_connection_refusal()
                || source.is_timeout()
                || source.is_unrecoverable_error()
                || matches!(
                    source.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                        | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                        | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                        | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                        | redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                )
        }
        Error::File { source, .. } => !matches!(
            source.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
        ),
        _ => false,
    }
}

/// SQL errors of a server that is gone, restarting or failing over.
fn transient_sql(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), operator intervention (57P01-03:
            // shutdown, crash shutdown, cannot connect now), serialization and deadlock (40),
            // read-only during a failover (25006). MariaDB/MySQL: server shutdown (1053),
            // gone away / lost (2006, 2013), too many connections (1040), deadlock and lock
            // wait (1213, 1205), read-only (1290, 1836).
            code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("40")
                || code == "25006"
                || matches!(
                    code.as_ref(),
                    "1053" | "2006" | "2013" | "1040" | "1213" | "1205" | "1290" | "1836"
                )
        }
        _ => false,
    }
}

/// Runs `op` until it succeeds, a non-[`transient`] error stops it, or `shutdown` is raised
/// while the dependency is down (then the last error is returned: nothing was skipped, and
/// the checkpoint stays where it was). `what` names the dependency in the two log lines.
pub async fn retry<T, F, Fut>(what: &str, health: &Health, shutdown: &Shutdown, op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_with(
        what,
        health,
        shutdown,
        Backoff::new(Duration::from_millis(250), Duration::from_secs(10)),
        op,
    )
    .await
}

/// As [`retry`], with a backoff of the caller's.
pub async fn retry_with<T, F, Fut>(
    what: &str,
    health: &Health,
    shutdown: &Shutdown,
    mut backoff: Backoff,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let started = std::time::Instant::now();
    loop {
        match op().await {
            Ok(v) => {
                if backoff.failures() > 0 {
                    health.up.store(1, Ordering::Relaxed);
                    tracing::info!(
                        message = "Dependency is back; carrying on where it stopped.",
                        dependency = what,
                        retries = backoff.failures(),
                        down_s = started.elapsed().as_secs(),
                    );
                }
                return Ok(v);
            }
            Err(e) if !transient(&e) || shutdown.is_raised() => {
                if backoff.failures() > 0 {
                    tracing::warn!(
                        message =
                            "Giving up on a dependency that is down; the checkpoint did not move.",
                        dependency = what,
                        retries = backoff.failures()
                    );
                }
                return Err(e);
            }
            Err(e) => {
                if backoff.failures() == 0 {
                    health.up.store(0, Ordering::Relaxed);
                    tracing::warn!(message = "Dependency failed; retrying with backoff, the checkpoint stays.", dependency = what, error = %e);
                }
                health.retries.fetch_add(1, Ordering::Relaxed);
                shutdown.sleep(backoff.wait()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_cap_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.wait()).collect();
        let caps = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (w, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*w <= cap && *w >= cap / 2, "{w:?} vs {cap:?}");
        }
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.wait() <= Duration::from_millis(100));
    }

    #[test]
    fn refusals_stop_and_outages_wait() {
        let lake = |source| Error::Lake {
            url: "s3://b".into(),
            what: "write".into(),
            source,
        };
        let down = lake(object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        });
        let denied = lake(object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "403".into(),
        });
        assert!(transient(&down));
        assert!(!transient(&denied));
        assert!(!transient(&Error::Config("bad".into())));
        let db = |source| Error::Database {
            url: "postgres://h/db".into(),
            what: "write".into(),
            source: Box::new(source),
        };
        assert!(transient(&db(sqlx::Error::PoolTimedOut)));
        assert!(!transient(&db(sqlx::Error::RowNotFound)));
    }

    #[tokio::test]
    async fn an_outage_is_waited_out_and_counted() {
        let health = Health::default();
        let mut left = 3;
        let v = retry_with(
            "lake",
            &health,
            &Shutdown::default(),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(4)),
            || {
                left -= 1;
                let r = if left > 0 {
                    Err(Error::file("/x", std::io::Error::other("disk full")))
                } else {
                    Ok(7)
                };
                async move { r }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(health.retries.load(Ordering::Relaxed), 2);
        assert_eq!(health.up.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_shutdown_during_an_outage_returns_the_error() {
        let health = Health::default();
        let stop = Shutdown::default();
        stop.raise();
        let r: Result<()> = retry("redis", &health, &stop, || async {
            Err(Error::file("/x", std::io::Error::other("down")))
        })
        .await;
        assert!(r.is_err());
    }
}
