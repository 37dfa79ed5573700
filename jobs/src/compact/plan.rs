//! What a compaction pass merges: the listing of a table grouped by date folder, and per
//! folder the committed small files to merge. Pure: no IO.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A day in microseconds.
const DAY: i64 = 86_400_000_000;

/// The stream's date-partitioned tables, the ones compaction looks at.
pub const TABLES: [&str; 7] = [
    "sales_windows",
    "sales_raw",
    "late_sales",
    "segment_sales",
    "sales_by_country",
    "sales_by_card_type",
    "top_products",
];

/// A folder still open (inside the horizon) is compacted anyway once it holds this many
/// committed small files: a live day flushed every minute by three partitions reaches it in
/// about twenty minutes, and its readers (the dashboard, DuckDB by hand) should not have to
/// open thousands of files until it closes.
pub const HOT_FOLDER_FILES: usize = 64;

/// Which dates a pass may compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Every date (a drained `--until-idle` run, or `jobs compact --before` far ahead).
    All,
    /// Dates whose day number (days since 1970-01-01) is below this one.
    Before(i64),
}

impl Horizon {
    /// Dates before `d`.
    pub fn before_date(d: NaiveDate) -> Horizon {
        Horizon::Before(day_number(d))
    }

    /// The dates every source partition has closed: a date is closed when the slowest
    /// watermark is past its end by the longest window, so every window starting on it has
    /// been emitted and its raw events are behind the watermark. No watermark: nothing.
    pub fn closed(watermarks: &[i64], longest_window_micros: i64) -> Horizon {
        match watermarks.iter().min() {
            Some(&wm) if wm > i64::MIN / 2 => {
                Horizon::Before((wm - longest_window_micros).div_euclid(DAY))
            }
            _ => Horizon::Before(i64::MIN),
        }
    }

    fn covers(self, day: i64) -> bool {
        match self {
            Horizon::All => true,
            Horizon::Before(b) => day < b,
        }
    }
}

fn day_number(d: NaiveDate) -> i64 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
    (d - epoch).num_days()
}

/// One `date=` folder of a table with every file under it (deeper folders too: the `hour=`
/// folders of lakes written before the date-only layout belong to their date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Relative to the lake root, e.g. `sales_windows/window=1h/date=2026-11-01`.
    pub dir: String,
    pub day: i64,
    /// `(path relative to the lake root, bytes)`, sorted by path.
    pub files: Vec<(String, u64)>,
}

/// Groups a table's listing (sorted by path) by its date folders; files outside any
/// `date=YYYY-MM-DD` folder are not compacted.
pub fn folders(listing: &[(String, u64)]) -> Vec<Folder> {
    let mut out: Vec<Folder> = Vec::new();
    for (path, size) in listing {
        let mut dir_len = 0;
        let mut day = None;
        for part in path.split('/') {
            dir_len += part.len() + 1;
            if let Some(d) = part.strip_prefix("date=") {
                day = NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .ok()
                    .map(day_number);
                break;
            }
        }
        let (Some(day), true) = (day, dir_len <= path.len()) else {
            continue;
        };
        let dir = &path[..dir_len - 1];
        match out.last_mut() {
            Some(f) if f.dir == dir => f.files.push((path.clone(), *size)),
            _ => out.push(Folder {
                dir: dir.to_string(),
                day,
                files: vec![(path.clone(), *size)],
            }),
        }
    }
    out
}

/// The merge of one folder: its inputs are replaced by the merged files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merge {
    pub dir: String,
    /// Paths relative to the lake root, in the order their rows are merged.
    pub inputs: Vec<String>,
    pub bytes: u64,
}

/// Whether a file is a finished Parquet file of a table: not a store's hidden staging file
/// (`.name`, `name#1`) nor anything else in the folder.
fn is_table_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".parquet")
        && !name.starts_with('.')
        && !name.starts_with('_')
        && !name.contains('#')
}

/// What to merge in `f`: its table files smaller than `target`, except those an unfinished
/// flush names (`pending`: they may yet be deleted and written again); `None` when the folder
/// is beyond the horizon with fewer than [`HOT_FOLDER_FILES`] of them, or already holds at
/// most one such file at its top level.
pub fn plan(f: &Folder, pending: &HashSet<String>, target: u64, horizon: Horizon) -> Option<Merge> {
    if !horizon.covers(f.day) && f.files.len() < HOT_FOLDER_FILES {
        return None;
    }
    let inputs: Vec<&(String, u64)> = f
        .files
        .iter()
        .filter(|(p, size)| is_table_file(p) && !pending.contains(p) && *size < target)
        .collect();
    let nested = inputs
        .iter()
        .any(|(p, _)| p[f.dir.len() + 1..].contains('/'));
    if (inputs.len() < 2 && !nested) || (!horizon.covers(f.day) && inputs.len() < HOT_FOLDER_FILES)
    {
        return None;
    }
    Some(Merge {
        dir: f.dir.clone(),
        bytes: inputs.iter().map(|i| i.1).sum(),
        inputs: inputs.into_iter().map(|i| i.0.clone()).collect(),
    })
}

/// The files named by the flush intents (`{"files": [...]}`) found under `_state/`.
pub fn pending(intents: &[(String, Vec<u8>)]) -> Result<HashSet<String>, String> {
    #[derive(Deserialize)]
    struct Intent {
        files: Vec<String>,
    }
    let mut out = HashSet::new();
    for (path, bytes) in intents {
        let i: Intent =
            serde_json::from_slice(bytes).map_err(|e| format!("intent {path} unreadable: {e}"))?;
        out.extend(i.files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> i64 {
        day_number(NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap())
    }

    fn listing(paths: &[&str]) -> Vec<(String, u64)> {
        paths.iter().map(|p| (p.to_string(), 100)).collect()
    }

    #[test]
    fn folders_group_by_date_including_old_hour_folders() {
        let l = listing(&[
            "sales_windows/window=1h/date=2026-11-01/hour=0/part-a.parquet",
            "sales_windows/window=1h/date=2026-11-01/hour=1/part-b.parquet",
            "sales_windows/window=1h/date=2026-11-01/part-c.parquet",
            "sales_windows/window=1h/date=2026-11-02/part-d.parquet",
            "sales_windows/window=1h/notes.txt",
            "sales_windows/window=1h/date=bad/part-e.parquet",
        ]);
        let f = folders(&l);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].dir, "sales_windows/window=1h/date=2026-11-01");
        assert_eq!(f[0].day, day("2026-11-01"));
        assert_eq!(f[0].files.len(), 3);
        assert_eq!(f[1].files.len(), 1);
    }

    #[test]
    fn plan_merges_committed_small_files_only() {
        let mut l = listing(&[
            "t/date=2026-11-01/part-p000-s00000001-o00000000000000000000.parquet",
            "t/date=2026-11-01/part-p001-s00000001-o00000000000000000000.parquet",
            "t/date=2026-11-01/part-p001-s00000002-o00000000000000000100.parquet",
            "t/date=2026-11-01/.part-x.parquet",
            "t/date=2026-11-01/part-y.parquet#3",
        ]);
        l.push(("t/date=2026-11-01/compacted-big.parquet".into(), 1 << 30));
        let f = &folders(&l)[0];
        let pending: HashSet<String> = [l[2].0.clone()].into();
        let m = plan(f, &pending, 1 << 20, Horizon::All).unwrap();
        assert_eq!(m.inputs, vec![l[0].0.clone(), l[1].0.clone()]);
        assert_eq!(m.bytes, 200);
        // One committed file left: nothing to do.
        let pending: HashSet<String> = [l[1].0.clone(), l[2].0.clone()].into();
        assert_eq!(plan(f, &pending, 1 << 20, Horizon::All), None);
        // Outside the horizon.
        assert_eq!(
            plan(
                f,
                &HashSet::new(),
                1 << 20,
                Horizon::Before(day("2026-11-01"))
            ),
            None
        );
        assert!(
            plan(
                f,
                &HashSet::new(),
                1 << 20,
                Horizon::Before(day("2026-11-02"))
            )
            .is_some()
        );
    }

    #[test]
    fn an_open_folder_is_compacted_once_it_holds_many_files() {
        let names: Vec<String> = (0..HOT_FOLDER_FILES)
            .map(|i| format!("t/date=2026-11-01/part-p000-s{i:08}-o0.parquet"))
            .collect();
        let l: Vec<(String, u64)> = names.iter().map(|n| (n.clone(), 10)).collect();
        let open = Horizon::Before(day("2026-11-01"));
        let m = plan(&folders(&l)[0], &HashSet::new(), 1 << 20, open).unwrap();
        assert_eq!(m.inputs.len(), HOT_FOLDER_FILES);
        // One of them still being written: below the mark, it waits.
        let pending: HashSet<String> = [names[0].clone()].into();
        assert_eq!(plan(&folders(&l)[0], &pending, 1 << 20, open), None);
        let few = &l[..HOT_FOLDER_FILES - 1];
        assert_eq!(plan(&folders(few)[0], &HashSet::new(), 1 << 20, open), None);
    }

    #[test]
    fn one_file_in_an_old_hour_folder_still_moves_up() {
        let l = listing(&["t/date=2026-11-01/hour=3/part-a.parquet"]);
        let m = plan(&folders(&l)[0], &HashSet::new(), 1 << 20, Horizon::All).unwrap();
        assert_eq!(m.inputs.len(), 1);
    }

    #[test]
    fn horizon_is_the_slowest_watermark_less_the_longest_window() {
        let h = |s: &str| day(s) * DAY;
        // Watermarks 2026-11-03 06:00 and 2026-11-04; a day window: 11-02 ends 11-03 00:00,
        // its last day window ends 11-04 00:00 > 11-03 06:00 - so only 11-01 is closed.
        let wm = [h("2026-11-03") + 6 * 3_600_000_000, h("2026-11-04")];
        assert_eq!(
            Horizon::closed(&wm, DAY),
            Horizon::Before(day("2026-11-02"))
        );
        assert_eq!(Horizon::closed(&[], DAY), Horizon::Before(i64::MIN));
        assert_eq!(Horizon::closed(&[i64::MIN], DAY), Horizon::Before(i64::MIN));
    }

    #[test]
    fn pending_reads_intents_and_rejects_garbage() {
        let ok = ("a".to_string(), br#"{"seq":3,"files":["x","y"]}"#.to_vec());
        assert_eq!(pending(std::slice::from_ref(&ok)).unwrap().len(), 2);
        assert!(pending(&[ok, ("b".into(), b"{".to_vec())]).is_err());
    }
}
