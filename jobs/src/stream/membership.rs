//! A restarted stream takes its partitions back at once: each process holds a member slot of
//! its host (a lock in the lake, released by the kernel when the process dies) and records
//! its group member id in the slot's file. The process that next takes the slot knows the
//! previous holder is gone, and ends that member's membership (LeaveGroup) before it joins,
//! so the group does not wait out a crashed member's session.
//!
//! Kafka's static membership (`group.instance.id`) would do the same with the broker's help;
//! Tansu 0.6.0 answers a static member's heartbeats with REBALANCE_IN_PROGRESS forever
//! (measured), so it is not used. On an object-store lake there are no locks, and with a TLS
//! or SASL listener (`security.protocol`) the plain-text request cannot be sent: nothing is
//! recorded then, and a restart waits for the session timeout as before.

use std::time::Duration;

use crate::Result;
use crate::config::Config;
use crate::io::lake::Lake;
use crate::io::lock::Held;

/// Slots tried: processes of one group on one host.
const SLOTS: usize = 64;

/// This process's member slot, while it runs.
pub(super) struct Membership {
    slot: Option<(Held, String)>,
    recorded: Option<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SlotFile {
    member_id: String,
}

/// This host's name (`localhost` if it has none).
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(h) if rc == 0 && !h.is_empty() => h.to_string(),
        _ => "localhost".into(),
    }
}

fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Membership {
    /// Takes the first free slot of this host and ends the membership its previous holder
    /// left behind, if any. Failures are logged, never fatal: the worst case is the wait
    /// for the session timeout.
    pub(super) async fn claim(cfg: &Config, lake: &Lake) -> Result<Membership> {
        let mut m = Membership {
            slot: None,
            recorded: None,
        };
        if lake.local_root().is_none() {
            return Ok(m);
        }
        // The eviction speaks the protocol in plain text: not to a TLS or SASL listener.
        let plain = cfg
            .kafka
            .properties
            .get("security.protocol")
            .is_none_or(|p| p.eq_ignore_ascii_case("plaintext"));
        if !plain {
            return Ok(m);
        }
        let group = safe(&cfg.stream.group_id);
        let host = safe(&hostname());
        for n in 0..SLOTS {
            let Some(held) = lake.lock(&format!("member-{group}-{n}"))?.try_exclusive()? else {
                continue;
            };
            let file = format!("_state/members/{group}/{host}-{n}.json");
            let previous = lake
                .get(&file)
                .await?
                .and_then(|b| serde_json::from_slice::<SlotFile>(&b).ok());
            if let Some(p) = previous {
                let (brokers, g, id) = (
                    cfg.kafka.brokers.clone(),
                    cfg.stream.group_id.clone(),
                    p.member_id.clone(),
                );
                let t0 = std::time::Instant::now();
                let got = tokio::task::spawn_blocking(move || {
                    crate::io::group::leave(&brokers, &g, &id, Duration::from_secs(5))
                })
                .await
                .map_err(|e| crate::Error::Internal(e.to_string()))
                .and_then(|r| r);
                match got {
                    Ok(0) => {
                        tracing::info!(message = "Ended the group membership a crashed predecessor left.", member = %p.member_id, slot = n, millis = t0.elapsed().as_millis() as u64)
                    }
                    Ok(crate::io::group::UNKNOWN_MEMBER_ID) => {
                        tracing::debug!(message = "The predecessor's membership had already ended.", member = %p.member_id)
                    }
                    Ok(code) => {
                        tracing::warn!(message = "The broker did not end the predecessor's membership; its partitions come back after the session timeout.", member = %p.member_id, error_code = code)
                    }
                    Err(e) => {
                        tracing::warn!(message = "Cannot end the predecessor's membership; its partitions come back after the session timeout.", member = %p.member_id, error = %e)
                    }
                }
            }
            m.slot = Some((held, file));
            return Ok(m);
        }
        tracing::warn!(
            message = "Every member slot of this host is taken; a crash of this process will hold its partitions for the session timeout.",
            slots = SLOTS
        );
        Ok(m)
    }

    /// Records the member id the group gave this process (once per change).
    pub(super) async fn record(&mut self, lake: &Lake, member_id: Option<String>) -> Result<()> {
        let (Some((_, file)), Some(id)) = (&self.slot, member_id) else {
            return Ok(());
        };
        if self.recorded.as_deref() == Some(id.as_str()) {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&SlotFile {
            member_id: id.clone(),
        })
        .map_err(|e| crate::Error::Internal(e.to_string()))?;
        lake.put(file, bytes).await?;
        self.recorded = Some(id);
        Ok(())
    }
}
