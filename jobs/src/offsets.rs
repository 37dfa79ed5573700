//! Where a consumed offset stands against the next one expected: the one gap rule of every
//! consumer of ours (the stream's partitions, `jobs sync`). Pure; a leaf.
//!
//! A gap happens when a fetch was in flight before the position was set, and with brokers
//! that answer a fetch starting inside a record batch with the *next* batch (Tansu 0.6.0):
//! stepping back further each time and skipping forward to the expected offset is exact on
//! any broker.

/// Where a consumed offset stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Already covered (checkpointed or committed): skip it.
    Covered,
    /// Offsets are missing before it: seek back to `to` (further each time) and skip forward.
    /// `ask_start`: the gap outlasted several steps back (or reached offset 0), so the missing
    /// offsets may be gone from the broker (retention ran while we were down, and a seek below
    /// the log start is reset to it): ask the broker for its log start
    /// ([`Cursor::skip_removed`]) before seeking again.
    Gap { to: i64, ask_start: bool },
    /// The next offset: take it.
    Next,
}

/// The largest step back after repeated gaps.
const MAX_STEP_BACK: i64 = 1 << 20;

/// From this step back on (the fourth gap in a row), a gap asks for the broker's log start.
const ASK_START_STEP: i64 = 64;

/// Where `offset` stands when `next` is expected (`None`: anything is next). `step_back` is
/// how far the previous gap seeked back; it grows fourfold while the gap stays open and is
/// reset by the next offset.
#[inline]
pub fn position(next: Option<i64>, step_back: &mut i64, offset: i64) -> Position {
    match next {
        Some(n) if offset < n => Position::Covered,
        Some(n) if offset > n => {
            *step_back = (*step_back * 4).clamp(1, MAX_STEP_BACK);
            let to = (n - *step_back).max(0);
            Position::Gap {
                to,
                ask_start: to == 0 || *step_back >= ASK_START_STEP,
            }
        }
        _ => {
            *step_back = 0;
            Position::Next
        }
    }
}

/// The expected next offset of one partition and its gap state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    next: Option<i64>,
    step_back: i64,
    /// A message has come since the cursor was set or last seeked: the fetch position is known
    /// to deliver. See [`Cursor::probe`].
    confirmed: bool,
    /// A probe from offset 0 brought nothing.
    exhausted: bool,
}

impl Cursor {
    /// A cursor expecting `next` (`None`: the first offset that comes).
    pub fn at(next: Option<i64>) -> Cursor {
        Cursor {
            next,
            step_back: 0,
            confirmed: false,
            exhausted: false,
        }
    }

    /// Where `offset` stands; a `Next` offset moves the cursor past it.
    pub fn take(&mut self, offset: i64) -> Position {
        let p = position(self.next, &mut self.step_back, offset);
        match p {
            Position::Next => {
                self.next = Some(offset + 1);
                self.confirmed = true;
            }
            // Only the fetcher reaching the cursor confirms it: an earlier batch's messages
            // say nothing of whether the one holding the cursor will come.
            Position::Covered => self.confirmed |= self.next == Some(offset + 1),
            // A seek back follows: confirmed again once something comes after it.
            Position::Gap { .. } => {
                self.confirmed = false;
                self.exhausted = false;
            }
        }
        p
    }

    /// The offset expected next.
    pub fn next(&self) -> Option<i64> {
        self.next
    }

    /// The broker's log start is `log_start`: offsets below it are gone for good. If the
    /// cursor expected one of them, it moves to the log start and says how many offsets were
    /// lost (to be reported, never silently skipped); otherwise `None` and nothing changes.
    pub fn skip_removed(&mut self, log_start: i64) -> Option<i64> {
        let n = self.next?;
        if log_start <= n {
            return None;
        }
        *self = Cursor::at(Some(log_start));
        Some(log_start - n)
    }

    /// Nothing is left to probe: a message came since the cursor was set, or there is nothing
    /// (more) before it to step back to.
    pub fn settled(&self) -> bool {
        self.confirmed || self.exhausted || self.next.is_none_or(|n| n == 0)
    }

    /// Where to seek when nothing has come for a while since the cursor was set (from a
    /// commit) or last seeked; `None` once anything came. Tansu 0.6.0 answers a fetch that
    /// starts inside the *last* record batch with nothing, and its high watermark is the last
    /// batch's base offset + 1, so neither a later message nor the watermark shows that more
    /// is there: step back, further each time, until the batch comes (its offsets below the
    /// cursor are skipped as covered).
    pub fn probe(&mut self) -> Option<i64> {
        if self.settled() {
            return None;
        }
        let n = self.next?;
        if self.step_back >= n {
            // The last probe stepped back to offset 0 and nothing came since: the broker has
            // nothing before the cursor either (an emptied partition).
            self.exhausted = true;
            return None;
        }
        // Past the largest step, the last probe goes to offset 0, so an emptied partition
        // far along settles too.
        self.step_back = match self.step_back {
            s if s >= MAX_STEP_BACK => n,
            s => (s * 4).clamp(1, MAX_STEP_BACK),
        };
        Some((n - self.step_back).max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_cursor_probes_further_back_until_something_comes() {
        let mut c = Cursor::at(Some(150));
        assert_eq!(c.probe(), Some(149));
        assert_eq!(c.probe(), Some(146));
        assert_eq!(c.probe(), Some(134));
        // The batch from 100 on comes: covered up to 149 (which confirms), then 150 is next.
        assert_eq!(c.take(100), Position::Covered);
        assert!(!c.settled(), "an earlier offset does not confirm");
        assert_eq!(c.take(149), Position::Covered);
        assert_eq!(c.probe(), None);
        assert_eq!(c.take(150), Position::Next);
        assert_eq!(c.probe(), None);
        // A gap makes it unconfirmed until the seek back delivers.
        assert_eq!(
            c.take(160),
            Position::Gap {
                to: 150,
                ask_start: false
            }
        );
        assert_eq!(c.probe(), Some(147));
        assert_eq!(c.take(151), Position::Next);
        assert_eq!(c.probe(), None);
        assert!(c.settled());
        assert_eq!(Cursor::at(None).probe(), None);
        assert_eq!(Cursor::at(Some(0)).probe(), None);
        assert!(Cursor::at(Some(0)).settled() && !Cursor::at(Some(5)).settled());
        // An emptied partition: the probe reaches offset 0 once, then gives up.
        let mut e = Cursor::at(Some(5));
        assert_eq!(
            (e.probe(), e.probe(), e.probe()),
            (Some(4), Some(1), Some(0))
        );
        assert_eq!(e.probe(), None);
        assert!(e.settled());
    }

    #[test]
    fn covered_next_and_a_gap_that_steps_back_further_each_time() {
        let mut c = Cursor::at(Some(100));
        assert_eq!(c.take(99), Position::Covered);
        // A broker that skipped the rest of a record batch: 100..=119 missing.
        assert_eq!(c.take(120), gap(99));
        assert_eq!(c.take(121), gap(96));
        assert_eq!(c.take(122), gap(84));
        // The seek back delivers what came before: covered, then the expected offset.
        assert_eq!(c.take(84), Position::Covered);
        assert_eq!(c.take(100), Position::Next);
        assert_eq!(c.next(), Some(101));
        assert_eq!(c.take(101), Position::Next);
        // The step was reset by the next offset.
        assert_eq!(c.take(105), gap(101));
        assert_eq!(Cursor::at(Some(3)).take(10), gap(2));
        let mut far = Cursor::at(Some(2));
        far.take(10);
        assert_eq!(
            far.take(10),
            Position::Gap {
                to: 0,
                ask_start: true
            }
        );
    }

    #[test]
    fn a_probe_far_along_an_emptied_partition_ends_at_offset_0_and_settles() {
        // A checkpoint past the largest step, on a partition retention emptied: nothing ever
        // comes, and the probes must end (they ran forever at the largest step before).
        let mut c = Cursor::at(Some(5_000_000));
        let probes: Vec<i64> = std::iter::from_fn(|| c.probe()).take(100).collect();
        assert_eq!(probes.len(), 12, "{probes:?}");
        assert_eq!(probes[10], 5_000_000 - MAX_STEP_BACK);
        assert_eq!(probes[11], 0);
        assert!(c.settled());
    }

    fn gap(to: i64) -> Position {
        Position::Gap {
            to,
            ask_start: false,
        }
    }

    #[test]
    fn a_gap_that_outlasts_the_steps_back_asks_for_the_log_start_and_skips_what_retention_removed()
    {
        // Checkpointed at 5,000,000; retention removed everything below 6,000,000 while the
        // consumer was down, and a seek below the log start is reset to it.
        let mut c = Cursor::at(Some(5_000_000));
        let asks: Vec<bool> = (0..5)
            .map(|_| match c.take(6_000_000) {
                Position::Gap { ask_start, .. } => ask_start,
                p => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(asks, [false, false, false, true, true]);
        // A log start at or below the cursor changes nothing: a plain gap, seek again.
        assert_eq!(c.skip_removed(5_000_000), None);
        assert_eq!(c.next(), Some(5_000_000));
        assert_eq!(c.skip_removed(6_000_000), Some(1_000_000));
        assert_eq!(c.take(6_000_000), Position::Next);
        assert_eq!(c.take(6_000_001), Position::Next);
        assert_eq!(Cursor::at(None).skip_removed(9), None);
        // A small cursor asks at once, its first step back reaching offset 0.
        assert_eq!(
            Cursor::at(Some(1)).take(40),
            Position::Gap {
                to: 0,
                ask_start: true
            }
        );
    }

    #[test]
    fn without_an_expected_offset_the_first_one_is_next() {
        let mut c = Cursor::at(None);
        assert_eq!(c.take(7), Position::Next);
        assert_eq!(c.take(7), Position::Covered);
        assert_eq!(c.take(8), Position::Next);
        let mut big = 0;
        for _ in 0..20 {
            position(Some(1 << 40), &mut big, 1 << 41);
        }
        assert_eq!(big, MAX_STEP_BACK);
    }
}
