//! The binlog as a replica sees it: a `COM_BINLOG_DUMP` stream from mysql_async, its events
//! decoded by mysql_common, turned into the capture core's [`Input`]s.
//!
//! MariaDB differs from MySQL in three ways that matter here. Its GTID event (type 162) is
//! its own and mysql_common does not decode it: we read its 13 bytes (sequence number,
//! domain, flags) and name it `domain-server-sequence`; the server only sends it to a replica
//! that announces `@mariadb_slave_capability=4`, which we do. It writes v1 rows events
//! (types 23-25), which mysql_common decodes like v2. Annotate-rows events are only sent on
//! request, and we do not ask. Compressed events (`log_bin_compress=ON`) are refused at
//! start (`super::schema`).

use std::time::Duration;

use mysql_async::binlog::EventType;
use mysql_async::binlog::events::{Event, EventData, RowsEventData};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts, Value};

use super::capture::{Input, RowsKind};
use super::position::BinlogPos;
use crate::{Error, Result};

const MARIADB_GTID_EVENT: u8 = 162;
/// MariaDB's `FL_STANDALONE`: the event group has no BEGIN/COMMIT (a DDL statement).
const FL_STANDALONE: u8 = 1;

/// Opens the binlog at `from` as replica `server_id`.
pub async fn open(
    opts: &Opts,
    shown: &str,
    server_id: u32,
    from: &BinlogPos,
    heartbeat: Duration,
) -> Result<BinlogStream> {
    let err = |what: &str| {
        let what = what.to_string();
        let shown = shown.to_string();
        move |source| Error::Binlog {
            url: shown,
            what,
            source: Box::new(source),
        }
    };
    let mut conn = Conn::new(opts.clone()).await.map_err(err("connect"))?;
    // MariaDB: send GTID events (capability 4 = MARIA_SLAVE_CAPABILITY_GTID); MySQL ignores
    // the variable. A heartbeat when the binlog is quiet, in nanoseconds.
    conn.query_drop(format!(
        "SET @mariadb_slave_capability = 4, @master_heartbeat_period = {}",
        heartbeat.as_nanos()
    ))
    .await
    .map_err(err("set up the replica session"))?;
    let request = BinlogStreamRequest::new(server_id)
        .with_filename(from.file.as_bytes())
        .with_pos(from.pos);
    conn.get_binlog_stream(request)
        .await
        .map_err(err(&format!("read the binlog from {from}")))
}

/// What the capture core needs of one event; `None` for events it does not need at all.
pub fn input(stream: &BinlogStream, event: &Event) -> std::result::Result<Option<Input>, String> {
    let h = event.header();
    let end = u64::from(h.log_pos());
    let pos = end.saturating_sub(u64::from(h.event_size()));
    let ts = h.timestamp();
    if h.event_type_raw() == MARIADB_GTID_EVENT {
        let d = event.data();
        if d.len() < 13 {
            return Err(format!("a MariaDB GTID event of {} bytes", d.len()));
        }
        let seq = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
        let domain = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default());
        return Ok(Some(Input::Gtid {
            gtid: format!("{domain}-{}-{seq}", h.server_id()),
            standalone: d[12] & FL_STANDALONE != 0,
        }));
    }
    if h.event_type() == Ok(EventType::HEARTBEAT_EVENT) {
        return Ok(None);
    }
    let data = match event.read_data() {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Some(Input::Other { end })),
        Err(e) => return Err(format!("undecodable event at {pos}: {e}")),
    };
    Ok(Some(match data {
        EventData::RotateEvent(r) => Input::Rotate {
            file: rotate_name(r.name_raw()),
            pos: r.position(),
        },
        EventData::GtidEvent(g) => Input::Gtid {
            gtid: format!("{}:{}", uuid::Uuid::from_bytes(g.sid()), g.gno()),
            standalone: false,
        },
        EventData::XidEvent(_) => Input::Commit { end },
        EventData::QueryEvent(q) => {
            let sql = q.query();
            match sql.trim().to_ascii_uppercase().as_str() {
                "BEGIN" => Input::Begin,
                "COMMIT" => Input::Commit { end },
                _ => Input::Query {
                    db: q.schema().into_owned(),
                    sql: sql.into_owned(),
                    pos,
                    end,
                    ts,
                },
            }
        }
        EventData::RowsEvent(r) => rows(stream, &r, pos, end, ts)?,
        _ => Input::Other { end },
    }))
}

/// The file a rotate event names. The rotate a server sends at connect comes before the
/// format description, so its CRC32 is still on the name: 4 bytes after a name that ends in
/// `.<digits>`, as every binlog file's does.
fn rotate_name(name: &[u8]) -> String {
    let is_file = |s: &[u8]| match s.iter().rposition(|b| *b == b'.') {
        Some(dot) => dot > 0 && dot + 1 < s.len() && s[dot + 1..].iter().all(u8::is_ascii_digit),
        None => false,
    };
    let name = match !is_file(name) && name.len() > 4 && is_file(&name[..name.len() - 4]) {
        true => &name[..name.len() - 4],
        false => name,
    };
    String::from_utf8_lossy(name).into_owned()
}

type Image = Option<Vec<Value>>;

fn rows(
    stream: &BinlogStream,
    r: &RowsEventData<'_>,
    pos: u64,
    end: u64,
    ts: u32,
) -> std::result::Result<Input, String> {
    let kind = match r {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => RowsKind::Write,
        RowsEventData::UpdateRowsEventV1(_)
        | RowsEventData::UpdateRowsEvent(_)
        | RowsEventData::PartialUpdateRowsEvent(_) => RowsKind::Update,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => RowsKind::Delete,
    };
    let Some(tme) = stream.get_tme(r.table_id()) else {
        return Err(format!("a rows event at {pos} without its table map"));
    };
    let mut names: Option<Vec<String>> = None;
    let mut out: Vec<(Image, Image)> = Vec::new();
    for row in r.rows(tme) {
        let (before, after) = row.map_err(|e| format!("undecodable row at {pos}: {e}"))?;
        let mut image = |row: Option<mysql_async::binlog::row::BinlogRow>| -> std::result::Result<Image, String> {
            let Some(row) = row else { return Ok(None) };
            if names.is_none() {
                let n: Vec<String> = row
                    .columns_ref()
                    .iter()
                    .map(|c| c.name_str().into_owned())
                    .collect();
                // Without `binlog_row_metadata=FULL` the names are `@1`, `@2`, ...
                names = Some(n).filter(|n| n.iter().all(|c| !c.starts_with('@')));
            }
            row.unwrap()
                .into_iter()
                .map(|v| Value::try_from(v).map_err(|e| format!("row at {pos}: {e}")))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map(Some)
        };
        out.push((image(before)?, image(after)?));
    }
    Ok(Input::Rows {
        db: tme.database_name().into_owned(),
        table: tme.table_name().into_owned(),
        kind,
        rows: out,
        names,
        pos,
        end,
        ts,
    })
}

/// Whether a rows event (by its table map) belongs to `db`.`tables`: the others are not
/// decoded at all.
pub fn wanted(stream: &BinlogStream, event: &Event, db: &str, tables: &[String]) -> bool {
    let Ok(t) = event.header().event_type() else {
        return true;
    };
    use EventType::*;
    if !matches!(
        t,
        WRITE_ROWS_EVENT_V1
            | UPDATE_ROWS_EVENT_V1
            | DELETE_ROWS_EVENT_V1
            | WRITE_ROWS_EVENT
            | UPDATE_ROWS_EVENT
            | DELETE_ROWS_EVENT
            | PARTIAL_UPDATE_ROWS_EVENT
    ) {
        return true;
    }
    // The table id follows the common header (6 bytes in binlog v4).
    let d = event.data();
    if d.len() < 6 {
        return true;
    }
    let mut id = [0u8; 8];
    id[..6].copy_from_slice(&d[..6]);
    match stream.get_tme(u64::from_le_bytes(id)) {
        Some(tme) => tme.database_name() == db && tables.iter().any(|n| *n == tme.table_name()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rotate_name_loses_the_checksum_it_came_with() {
        let name = super::rotate_name;
        assert_eq!(name(b"mariadb-bin.000003beZp"), "mariadb-bin.000003");
        assert_eq!(name(b"mariadb-bin.000003"), "mariadb-bin.000003");
        assert_eq!(name(b"binlog.000012\xff\x01\x9c7"), "binlog.000012");
    }
}
