//! Schedule files (`schedules/*.toml`): parsing and validation, all before anything runs.
//!
//! A file holds `[[job]]` entries. Cron expressions have 6 fields, seconds first
//! (`sec min hour day-of-month month day-of-week`), or 7 with a year last; they are read by
//! `croner` exactly as tokio-cron-scheduler reads them, so what `--check` accepts is what runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

use crate::{Error, Result};

/// The `jobs` subcommands an entry may run. `schedule` itself is not one of them.
pub const SUBCOMMANDS: &[&str] = &[
    "init",
    "generate",
    "ingest",
    "stream",
    "forecast",
    "recommend",
    "export-json",
    "config",
];

/// Validates an entry's subcommand and arguments the way the `jobs` command line would parse
/// them; returns the parser's message on error. `main` passes clap's parser.
pub type ArgCheck = dyn Fn(&str, &[String]) -> std::result::Result<(), String> + Send + Sync;

/// One `[[job]]` of a schedule file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    /// Unique name across all files: letters, digits, `-`, `_`, `.`.
    name: String,
    /// Cron expression: 6 fields (seconds first) or 7 (year last).
    cron: String,
    /// IANA time zone of the cron expression (`Europe/Berlin`); default UTC.
    #[serde(default)]
    timezone: Option<String>,
    /// The `jobs` subcommand: `forecast`, `ingest`, ...
    command: String,
    /// Its arguments, as on the command line.
    #[serde(default)]
    args: Vec<String>,
    /// Attempts after a failure or a timeout (default 0).
    #[serde(default)]
    retries: u32,
    /// Wait before the first retry; doubled for each further retry (default 30s).
    #[serde(default, with = "humantime_serde")]
    retry_backoff: Option<Duration>,
    /// Stop an attempt that runs longer than this (SIGTERM, then SIGKILL).
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    /// After downtime, run a missed fire once at start (default false).
    #[serde(default)]
    catch_up: bool,
    /// `false` keeps the entry in the file without scheduling it.
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

/// Default wait before the first retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(30);

/// A validated schedule entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The cron expression as written.
    pub cron: String,
    /// Time zone of the expression.
    pub timezone: Tz,
    /// `jobs` subcommand.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Attempts after a failure or timeout.
    pub retries: u32,
    /// Wait before the first retry (doubled after each).
    pub retry_backoff: Duration,
    /// Limit per attempt.
    pub timeout: Option<Duration>,
    /// Run one missed fire at start.
    pub catch_up: bool,
    /// Scheduled at all.
    pub enabled: bool,
    schedule: Cron,
}

impl Entry {
    /// The next `n` fire times strictly after `after`.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.schedule
            .iter_after(after.with_timezone(&self.timezone))
            .take(n)
            .collect()
    }

    /// The last fire time at or before `at`, if the expression has one. Fires are on whole
    /// seconds (croner keeps the fraction of an inclusive match, so it is dropped first).
    pub fn previous_fire(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let at = at.with_nanosecond(0).unwrap_or(at);
        self.schedule
            .find_previous_occurrence(&at.with_timezone(&self.timezone), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The wait before retry number `retry` (1-based): the backoff doubled per retry.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.retry_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
    }

    /// The command line, for logs and the run history: `jobs forecast --horizon 7`.
    pub fn command_line(&self) -> String {
        let mut s = format!("jobs {}", self.command);
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(char::is_whitespace) {
                s.push_str(&format!("{a:?}"));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// Parses a cron expression the way tokio-cron-scheduler does (seconds required, year
/// optional, day-of-month AND day-of-week), with an error that says what to write instead.
pub fn parse_cron(expr: &str) -> std::result::Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields == 5 && !expr.contains('@') {
        return Err(format!(
            "{expr:?} has 5 fields; jobs needs 6 with the seconds first (sec min hour \
             day-of-month month day-of-week), e.g. \"0 {expr}\""
        ));
    }
    let cron = CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
    // An expression that never fires (31 February) is an error too.
    cron.find_next_occurrence(&Utc::now(), false)
        .map_err(|e| format!("{expr:?} never fires: {e}"))?;
    Ok(cron)
}

/// An error in one file, naming the entry and field when there is one.
fn at(file: &Path, entry: Option<&str>, field: Option<&str>, msg: impl std::fmt::Display) -> Error {
    let mut s = file.display().to_string();
    if let Some(e) = entry {
        s.push_str(&format!(": entry {e:?}"));
    }
    if let Some(f) = field {
        s.push_str(&format!(": field `{f}`"));
    }
    Error::Schedule(format!("{s}: {msg}"))
}

/// Reads and validates one schedule file.
pub fn load_file(path: &Path, check_args: &ArgCheck) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(path, e))?;
    parse_file(path, &text, check_args)
}

/// Validates the text of one schedule file (`path` only names it in errors).
pub fn parse_file(path: &Path, text: &str, check_args: &ArgCheck) -> Result<Vec<Entry>> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| at(path, None, None, one_line(&e.to_string())))?;
    let mut entries = Vec::new();
    for (key, value) in &doc {
        if key != "job" {
            return Err(at(
                path,
                None,
                Some(key),
                "unknown top-level key; a schedule file holds only [[job]] entries",
            ));
        }
        let Some(items) = value.as_array() else {
            return Err(at(path, None, Some("job"), "must be [[job]] tables"));
        };
        for (i, item) in items.iter().enumerate() {
            let label = item
                .get("name")
                .and_then(|n| n.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| format!("#{}", i + 1));
            entries.push(entry(path, &label, item.clone(), check_args)?);
        }
    }
    Ok(entries)
}

fn entry(path: &Path, label: &str, item: toml::Value, check_args: &ArgCheck) -> Result<Entry> {
    let raw: RawEntry = item.try_into().map_err(|e: toml::de::Error| {
        let msg = one_line(e.message());
        // serde names the field in its message: "unknown field `retires`, expected ..." or
        // "missing field `cron`".
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field `"))
            .map(str::to_string);
        at(path, Some(label), field.as_deref(), msg)
    })?;
    let name = raw.name.trim().to_string();
    // The name is a folder of the history (logs/<name>/): no path tricks.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(at(
            path,
            Some(label),
            Some("name"),
            "start with a letter or digit; use letters, digits, '-', '_' and '.' only",
        ));
    }
    let schedule = parse_cron(&raw.cron).map_err(|e| at(path, Some(&name), Some("cron"), e))?;
    let timezone = match raw.timezone.as_deref() {
        None => Tz::UTC,
        Some(tz) => tz.parse::<Tz>().map_err(|_| {
            at(
                path,
                Some(&name),
                Some("timezone"),
                format!("{tz:?} is not an IANA time zone (e.g. \"UTC\", \"Europe/Berlin\")"),
            )
        })?,
    };
    if !SUBCOMMANDS.contains(&raw.command.as_str()) {
        let hint = if raw.command == "schedule" {
            "a schedule cannot start another scheduler".to_string()
        } else {
            format!("one of: {}", SUBCOMMANDS.join(", "))
        };
        return Err(at(
            path,
            Some(&name),
            Some("command"),
            format!("unknown subcommand {:?} ({hint})", raw.command),
        ));
    }
    check_args(&raw.command, &raw.args).map_err(|e| at(path, Some(&name), Some("args"), e))?;
    if raw.timeout == Some(Duration::ZERO) {
        return Err(at(
            path,
            Some(&name),
            Some("timeout"),
            "must be more than 0s",
        ));
    }
    Ok(Entry {
        name,
        file: path.to_path_buf(),
        cron: raw.cron,
        timezone,
        command: raw.command,
        args: raw.args,
        retries: raw.retries,
        retry_backoff: raw.retry_backoff.unwrap_or(DEFAULT_BACKOFF),
        timeout: raw.timeout,
        catch_up: raw.catch_up,
        enabled: raw.enabled,
        schedule,
    })
}

/// Reads every `*.toml` of `dir` (sorted by name); names are unique across files.
pub fn load_dir(dir: &Path, check_args: &ArgCheck) -> Result<Vec<Entry>> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| Error::Schedule(format!("schedule folder {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut entries = Vec::new();
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in &files {
        for e in load_file(file, check_args)? {
            if let Some(first) = seen.insert(e.name.clone(), file.clone()) {
                return Err(at(
                    file,
                    Some(&e.name),
                    Some("name"),
                    format!("already used in {}", first.display()),
                ));
            }
            entries.push(e);
        }
    }
    Ok(entries)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Formats a fire time in its zone, and in UTC when the zone is another.
pub fn show_time(t: &DateTime<Tz>) -> String {
    let local = t.format("%Y-%m-%d %H:%M:%S %Z").to_string();
    if t.timezone() == Tz::UTC {
        local
    } else {
        format!(
            "{local} ({} UTC)",
            t.with_timezone(&Utc).format("%Y-%m-%d %H:%M:%S")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn any_args(_: &str, args: &[String]) -> std::result::Result<(), String> {
        match args.iter().find(|a| a.starts_with("--bad")) {
            Some(a) => Err(format!("unexpected argument '{a}' found")),
            None => Ok(()),
        }
    }

    fn parse(text: &str) -> Result<Vec<Entry>> {
        parse_file(Path::new("schedules/x.toml"), text, &any_args)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_entry_parses_with_defaults_filled() {
        let e = parse(
            r#"
[[job]]
name = "forecast"
cron = "0 0 2 * * *"
command = "forecast"
args = ["--horizon", "14"]
retries = 2
retry_backoff = "1m"
timeout = "1h"
catch_up = true

[[job]]
name = "ingest"
cron = "0 */5 * * * *"
timezone = "Europe/Berlin"
command = "ingest"
args = ["--once"]
"#,
        )
        .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].retries, 2);
        assert_eq!(e[0].timeout, Some(Duration::from_secs(3600)));
        assert!(e[0].catch_up && e[0].enabled);
        assert_eq!(e[0].command_line(), "jobs forecast --horizon 14");
        assert_eq!(e[0].backoff(1), Duration::from_secs(60));
        assert_eq!(e[0].backoff(3), Duration::from_secs(240));
        assert_eq!(e[1].retry_backoff, DEFAULT_BACKOFF);
        assert!(!e[1].catch_up);
        assert_eq!(e[1].timezone, chrono_tz::Europe::Berlin);
    }

    #[test]
    fn fire_times_follow_the_expression_and_its_zone() {
        let e = parse(
            "[[job]]\nname = \"n\"\ncron = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n\
             command = \"forecast\"\n",
        )
        .unwrap()
        .remove(0);
        // 2026-03-28 12:00 UTC: the next 02:30 in Berlin is on the 29th, the night the
        // clocks go forward: 02:30 does not exist, and croner fires at the change itself
        // (03:00 CEST = 01:00 UTC), once; the day after is 02:30 CEST = 00:30 UTC.
        let now = Utc.with_ymd_and_hms(2026, 3, 28, 12, 0, 0).unwrap();
        let next = e.next_fires(now, 2);
        assert_eq!(
            next[0].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()
        );
        assert_eq!(
            next[1].with_timezone(&Utc),
            Utc.with_ymd_and_hms(2026, 3, 30, 0, 30, 0).unwrap()
        );
        let prev = e.previous_fire(now).unwrap();
        assert_eq!(prev, Utc.with_ymd_and_hms(2026, 3, 28, 1, 30, 0).unwrap());
        // Inclusive: a fire exactly now is the previous fire.
        let at_fire = Utc.with_ymd_and_hms(2026, 3, 28, 1, 30, 0).unwrap();
        assert_eq!(e.previous_fire(at_fire), Some(at_fire));
        // A tick a fraction of a second after the fire belongs to that fire.
        let late = at_fire + chrono::Duration::milliseconds(132);
        assert_eq!(e.previous_fire(late), Some(at_fire));
    }

    #[test]
    fn errors_name_the_file_entry_and_field() {
        let base = "[[job]]\nname = \"nightly\"\ncommand = \"forecast\"\n";
        let e = err(&format!("{base}cron = \"0 2 * * *\"\n"));
        assert!(
            e.contains("schedules/x.toml: entry \"nightly\": field `cron`"),
            "{e}"
        );
        assert!(e.contains("\"0 0 2 * * *\""), "the fix is suggested: {e}");

        let e = err(&format!("{base}cron = \"0 0 25 * * *\"\n"));
        assert!(e.contains("field `cron`"), "{e}");

        let e = err(&format!("{base}cron = \"0 0 2 * * *\"\nretires = 3\n"));
        assert!(e.contains("entry \"nightly\": field `retires`"), "{e}");

        let e = err("[[job]]\nname = \"n\"\ncron = \"0 0 2 * * *\"\ncommand = \"forcast\"\n");
        assert!(e.contains("entry \"n\": field `command`"), "{e}");
        assert!(e.contains("forcast"), "{e}");

        // A name is a folder of the history: no "..".
        let e = err("[[job]]\nname = \"..\"\ncron = \"0 0 2 * * *\"\ncommand = \"forecast\"\n");
        assert!(e.contains("field `name`"), "{e}");

        let e = err("[[job]]\nname = \"n\"\ncron = \"0 0 2 * * *\"\ncommand = \"schedule\"\n");
        assert!(e.contains("field `command`"), "{e}");

        let e = err(&format!(
            "{base}cron = \"0 0 2 * * *\"\nargs = [\"--bad\"]\n"
        ));
        assert!(
            e.contains("field `args`: unexpected argument '--bad'"),
            "{e}"
        );

        let e = err(&format!(
            "{base}cron = \"0 0 2 * * *\"\ntimezone = \"Mars/Base\"\n"
        ));
        assert!(e.contains("field `timezone`"), "{e}");

        let e = err("[[job]]\nname = \"n\"\ncommand = \"forecast\"\n");
        assert!(e.contains("entry \"n\": field `cron`"), "missing: {e}");

        let e = err("[[job]]\ncron = \"0 0 2 * * *\"\ncommand = \"forecast\"\n");
        assert!(e.contains("entry \"#1\": field `name`"), "{e}");

        let e = err("[jobs]\nname = \"n\"\n");
        assert!(e.contains("field `jobs`"), "{e}");

        let e = err("[[job]\nname = ");
        assert!(e.starts_with("schedule: schedules/x.toml: "), "{e}");
    }

    #[test]
    fn names_are_unique_across_files() {
        let dir = std::env::temp_dir().join(format!("jobs-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let job = "[[job]]\nname = \"same\"\ncron = \"0 0 2 * * *\"\ncommand = \"ingest\"\n";
        std::fs::write(dir.join("a.toml"), job).unwrap();
        std::fs::write(dir.join("b.toml"), job).unwrap();
        std::fs::write(dir.join("notes.md"), "not a schedule").unwrap();
        let e = load_dir(&dir, &any_args).unwrap_err().to_string();
        assert!(
            e.contains("b.toml: entry \"same\": field `name`: already used in"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
