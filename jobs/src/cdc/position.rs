//! Binlog positions: where to resume reading, and the total order of the messages we write.
//!
//! Every message `jobs cdc` writes carries its [`Ordinal`] in the `jobs.cdc.pos` header: the
//! binlog file's sequence number, the rows event's position, the row's index in the event
//! and the message's kind, as one fixed-width string, so that comparing two strings compares
//! two positions (recovery, Redis and PostgreSQL compare them as text). Snapshot reads carry
//! the snapshot's binlog position, before every change read after it.

use serde::{Deserialize, Serialize};

/// A point in the server's binary log: a file and a byte offset in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPos {
    pub file: String,
    pub pos: u64,
}

impl BinlogPos {
    /// The sequence number of the file (`mariadb-bin.000042` -> 42).
    pub fn seq(&self) -> u64 {
        file_seq(&self.file)
    }
}

impl std::fmt::Display for BinlogPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The sequence number after the last `.` of a binlog file name; 0 when there is none.
pub fn file_seq(file: &str) -> u64 {
    file.rsplit('.')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What a message is, in the order they are written for one row change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A change (`c`, `u`, `d`, `r`), a schema change or a dead letter.
    Change = 0,
    /// The tombstone (key, no value) after a delete.
    Tombstone = 1,
    /// The create that follows the delete and tombstone of a primary-key change.
    KeyChange = 2,
}

/// The total order of the messages `jobs cdc` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ordinal {
    pub file_seq: u64,
    pub pos: u64,
    pub row: u64,
    pub kind: Kind,
}

impl Ordinal {
    /// Fixed-width text whose byte order is the ordinals' order.
    pub fn key(&self) -> String {
        format!(
            "{:010}.{:015}.{:09}.{}",
            self.file_seq, self.pos, self.row, self.kind as u8
        )
    }

    /// Parses [`Ordinal::key`].
    pub fn parse(s: &str) -> Option<Ordinal> {
        let mut it = s.split('.');
        let file_seq = it.next()?.parse().ok()?;
        let pos = it.next()?.parse().ok()?;
        let row = it.next()?.parse().ok()?;
        let kind = match it.next()? {
            "0" => Kind::Change,
            "1" => Kind::Tombstone,
            "2" => Kind::KeyChange,
            _ => return None,
        };
        it.next().is_none().then_some(Ordinal {
            file_seq,
            pos,
            row,
            kind,
        })
    }

    /// The message of the same row change with another kind.
    pub fn with(self, kind: Kind) -> Ordinal {
        Ordinal { kind, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_as_positions_and_parse_back() {
        let a = Ordinal {
            file_seq: 9,
            pos: 99_999,
            row: 3,
            kind: Kind::Tombstone,
        };
        let b = Ordinal {
            file_seq: 10,
            pos: 4,
            row: 0,
            kind: Kind::Change,
        };
        assert!(a < b && a.key() < b.key());
        let c = a.with(Kind::KeyChange);
        assert!(a < c && a.key() < c.key());
        for o in [a, b, c] {
            assert_eq!(Ordinal::parse(&o.key()), Some(o));
        }
        assert_eq!(Ordinal::parse("1.2.3"), None);
        assert_eq!(Ordinal::parse("1.2.3.7"), None);
        assert_eq!(file_seq("mariadb-bin.000042"), 42);
        assert_eq!(file_seq("binlog"), 0);
    }
}
