//! The properties the fuzz targets (`fuzz/fuzz_targets/`, `scripts/fuzz`) check on arbitrary
//! bytes. A panic here is a finding. The unit tests (`formats/tests/fuzz_corpus.rs`) replay
//! every committed corpus input and every crash ever found through the same functions, so a
//! finding, once fixed, stays a regression test without a nightly toolchain.

use std::path::Path;
use std::sync::OnceLock;

use chrono::{TimeZone, Utc};

use crate::avro::{Reader, Registry, SchemaKind, Writer};
use crate::config::Config;
use crate::records::{ProductSale, SaleRow};
use crate::sale::decode_sale;
use crate::units::{MAX_CENTS, format_cents, format_micros, parse_cents, parse_micros};
use crate::validate::{self, TEXT_WIDTHS};

/// The consumer clock the targets decode against: 2030-01-01T00:00:00Z.
pub const LATEST: i64 = 1_893_456_000_000_000;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| Registry::local().expect("the committed registry loads"))
}

/// One `product_sales` message as the stream reads it: either a dead-letter reason, or a sale
/// that meets every rule and encodes back to a message that decodes to the same sale.
pub fn sale(data: &[u8]) {
    let reg = registry();
    match decode_sale(reg, data, LATEST) {
        Err(reason) => assert!(!reason.is_empty(), "an empty dead-letter reason"),
        Ok(s) => {
            holds_the_rules(&s.as_row());
            assert!((0..=LATEST).contains(&s.transaction_date_micros));
            let id = reg.id(SchemaKind::ProductSale).expect("a sale schema id");
            let mut w = Writer::default();
            w.start_framed(id);
            s.encode(&mut w);
            assert_eq!(
                decode_sale(reg, &w.buf, LATEST).as_ref(),
                Ok(&s),
                "round trip"
            );
        }
    }
}

/// The Avro body of a sale without the framing, then the row rules alone: what the rules
/// accept holds them, and what decodes re-encodes to the bytes it was read from.
pub fn row(data: &[u8]) {
    let mut r = Reader::new(data);
    let Ok(s) = ProductSale::decode(&mut r) else {
        return;
    };
    let mut w = Writer::default();
    s.encode(&mut w);
    // Avro's zig-zag varints have one shortest form; a longer one (zero padding) decodes to
    // the same number, so compare the decodings, not the bytes.
    assert_eq!(
        ProductSale::decode(&mut Reader::new(&w.buf)).ok().as_ref(),
        Some(&s),
        "re-encoding"
    );
    if validate::sale(&s.as_row()).is_ok() {
        holds_the_rules(&s.as_row());
    }
    // The units the sale is shown in round-trip.
    let c = s.price_per_unit_cents;
    if (-MAX_CENTS..=MAX_CENTS).contains(&c) {
        assert_eq!(parse_cents(&format_cents(c)), Ok(c), "cents {c}");
    }
    let t = s.transaction_date_micros;
    if (0..=LATEST).contains(&t) {
        assert_eq!(parse_micros(&format_micros(t)), Some(t), "micros {t}");
    }
}

fn holds_the_rules(s: &SaleRow<'_>) {
    assert!(s.quantity_sold >= 0);
    assert!((0..=MAX_CENTS).contains(&s.price_per_unit_cents));
    assert!(
        i64::from(s.quantity_sold)
            .checked_mul(s.price_per_unit_cents)
            .is_some()
    );
    for t in [s.product_name, s.product_category, s.brand] {
        assert!(!t.trim().is_empty());
    }
    let texts = [
        Some(s.product_name),
        Some(s.product_category),
        Some(s.brand),
        s.country,
        s.card_type,
    ];
    for ((field, max), t) in TEXT_WIDTHS.into_iter().zip(texts) {
        if let Some(t) = t {
            assert!(t.chars().count() <= max, "{field}");
        }
    }
}

/// A `jobs.toml`: either a one-line error, or a configuration whose printed form
/// (`jobs config`) shows no password of any URL in it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let cfg = match Config::from_toml(text) {
        Err(e) => {
            let e = e.to_string();
            assert!(
                !e.contains('\n'),
                "a configuration error of several lines: {e}"
            );
            return;
        }
        Ok(cfg) => cfg,
    };
    let shown = cfg.redacted();
    for (raw, printed) in urls(&cfg).into_iter().zip(urls(&shown)) {
        let (Some(Ok(raw)), Some(printed)) = (raw.map(url::Url::parse), printed) else {
            continue;
        };
        if let Some(pw) = raw.password().filter(|p| *p != "***") {
            // The printed URL itself (a scan of the whole printed file would also find the
            // text `:<pw>@` where another field happens to hold it).
            let hidden = match url::Url::parse(printed) {
                Ok(p) => p.password().is_none_or(|p| p == "***"),
                Err(_) => !printed.contains(&format!(":{pw}@")),
            };
            assert!(
                hidden,
                "the password of {} is shown",
                crate::config::redact(raw.as_str())
            );
        }
    }
}

/// Every URL a configuration holds, in a fixed order (`None` where unset).
fn urls(c: &Config) -> Vec<Option<&str>> {
    vec![
        Some(c.database_url.as_str()),
        c.stream.redis_url.as_deref(),
        c.stream.sql_url.as_deref(),
        c.stream.reference_url.as_deref(),
        c.schema_registry.url.as_deref(),
        c.cdc.url.as_deref(),
        c.sync.redis_url.as_deref(),
        c.sync.postgres_url.as_deref(),
        c.sync.mongodb_url.as_deref(),
    ]
}

/// A schedule file: either an error naming the file, or entries whose fire times, retries
/// and command lines compute without panicking.
pub fn schedule(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    match crate::schedule::parse_file(path, text, &|_, _| Ok(())) {
        Err(e) => assert!(e.to_string().contains("fuzz.toml"), "{e}"),
        Ok(entries) => {
            let at = Utc
                .timestamp_opt(1_765_000_000, 0)
                .single()
                .expect("a time");
            for e in entries {
                let fires = e.next_fires(at, 3);
                assert!(fires.windows(2).all(|w| w[0] < w[1]), "{}", e.cron);
                let _ = e.previous_fire(at);
                for r in [0, 1, 2, 17, u32::MAX] {
                    let _ = e.backoff(r);
                }
                assert!(e.command_line().starts_with("jobs "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The properties are not vacuous: the committed valid sale decodes (so the round trip
    /// runs), and a password kept in a printed URL is caught.
    #[test]
    fn the_properties_see_what_they_check() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let valid = std::fs::read(root.join("sale/valid_full")).unwrap();
        assert!(decode_sale(registry(), &valid, LATEST).is_ok());
        let cfg = Config::from_toml("database_url = \"mysql://root:s3cret@db:3306/shop\"").unwrap();
        assert_eq!(
            urls(&cfg.redacted())[0],
            Some("mysql://root:***@db:3306/shop")
        );
        assert!(!toml::to_string(&cfg.redacted()).unwrap().contains("s3cret"));
    }
}
