//! Unit tests of the partition core and its flush plan: the decisions that only the
//! integration tests reached before (late vs window, gaps, idle partitions, replay dedup,
//! the plan's contents, restore + replay = one pass).

use std::time::{Duration, Instant};

use super::*;
use crate::config::Config;
use crate::stream::plan::FlushPlan;

const HOUR: i64 = 3_600_000_000;
/// 2026-11-21 00:00:00 UTC.
const DAY0: i64 = 1_763_683_200_000_000;

fn settings(cfg: &Config) -> Settings {
    let ids = SchemaIds {
        window: 11,
        totals: 12,
        top: 13,
        alert: 14,
        segment: 15,
    };
    Settings::new(cfg, crate::stream::specs(cfg), ids, 1)
}

fn sale(id: i64, product: i64, qty: i32, ts: i64) -> ProductSale {
    ProductSale {
        transaction_id: id,
        product_id: product,
        product_name: format!("Product {product}"),
        product_category: "Laptop".into(),
        brand: "Dell".into(),
        quantity_sold: qty,
        price_per_unit_cents: 1_000,
        transaction_date_micros: ts,
        customer_id: None,
        country: Some("India".into()),
        card_type: Some("Visa".into()),
    }
}

/// The framed Avro a producer would have written.
fn payload(registry: &Registry, s: &ProductSale) -> Vec<u8> {
    let mut w = Writer::default();
    w.start_framed(registry.id(SchemaKind::ProductSale).unwrap());
    s.encode(&mut w);
    w.buf
}

/// Feeds `sales` from `first_offset` on, as the shell does: decode, position, record.
fn feed(
    part: &mut Partition,
    s: &Settings,
    registry: &Registry,
    first_offset: i64,
    sales: &[ProductSale],
) -> Vec<Recorded> {
    let now = Instant::now();
    let mut out = vec![];
    for (i, sale) in sales.iter().enumerate() {
        let offset = first_offset + i as i64;
        assert_eq!(part.position(offset), Position::Next, "offset {offset}");
        let bytes = payload(registry, sale);
        let ev = Event {
            topic: "product_sales",
            offset,
            key: b"k",
            payload: &bytes,
        };
        let decoded = decode_sale(registry, &bytes, i64::MAX);
        out.push(part.record(s, ev, decoded, None, now));
    }
    out
}

fn keys(plan: &FlushPlan) -> Vec<&str> {
    plan.messages
        .iter()
        .map(|m| m.idempotency_key.as_str())
        .collect()
}

#[test]
fn a_sale_behind_the_watermark_is_late_and_goes_to_no_window() {
    let cfg = Config::default();
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let mut part = Partition::restore(0, None, vec![], &s, Instant::now());
    // Lateness is 10 minutes: an event 2 h older than the newest is late.
    let rec = feed(
        &mut part,
        &s,
        &reg,
        0,
        &[sale(1, 7, 2, DAY0 + 3 * HOUR), sale(2, 7, 1, DAY0 + HOUR)],
    );
    assert_eq!(rec, [Recorded::Aggregated, Recorded::Late]);
    assert_eq!(
        (
            part.counters.consumed,
            part.counters.aggregated,
            part.counters.late
        ),
        (2, 1, 1)
    );
    assert_eq!(part.late.len(), 1);
    assert_eq!(part.raw.len(), 2, "late sales are kept raw too");
    let late = &part.out[0];
    assert_eq!(&*late.topic, cfg.topics.late_sales);
    assert_eq!(late.idempotency_key, "late|0|1");
    assert_eq!(late.headers[0].0, "jobs.watermark");
}

#[test]
fn an_invalid_message_is_dead_lettered_with_its_reason() {
    let cfg = Config::default();
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let mut part = Partition::restore(3, None, vec![], &s, Instant::now());
    let mut bad = sale(1, 7, 2, DAY0);
    bad.quantity_sold = -3;
    assert_eq!(
        feed(&mut part, &s, &reg, 40, &[bad]),
        [Recorded::DeadLettered]
    );
    let dlq = &part.out[0];
    assert_eq!(&*dlq.topic, cfg.topics.dlq);
    assert_eq!(dlq.idempotency_key, "dlq|3|40");
    assert!(
        dlq.headers
            .contains(&("jobs.reason", "quantity_sold is negative: -3".to_string())),
        "{:?}",
        dlq.headers
    );
    assert_eq!(
        decode_sale(&reg, b"\x00\x00\x00\x00\x63rest", i64::MAX),
        Err("unknown schema id 99".into())
    );
}

#[test]
fn a_dead_letter_too_large_for_the_broker_keeps_its_head_and_says_so() {
    let cfg = Config::default();
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let mut part = Partition::restore(0, None, vec![], &s, Instant::now());
    let huge = vec![7u8; 1_000_000];
    let ev = Event {
        topic: "product_sales",
        offset: 5,
        key: b"k",
        payload: &huge,
    };
    let decoded = decode_sale(&reg, &huge, i64::MAX);
    assert!(decoded.is_err());
    assert_eq!(part.position(5), Position::Next);
    let rec = part.record(&s, ev, decoded, None, Instant::now());
    assert_eq!(rec, Recorded::DeadLettered);
    let dlq = &part.out[0];
    assert_eq!(dlq.value.len(), DLQ_MAX_VALUE);
    assert!(dlq.headers.contains(&(
        "jobs.truncated",
        "key 1 bytes, value 1000000 bytes".to_string()
    )));
}

#[test]
fn offsets_before_the_checkpoint_are_skipped_and_a_gap_steps_back_further_each_time() {
    let cfg = Config::default();
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let mut part = Partition::restore(0, None, vec![], &s, Instant::now());
    feed(&mut part, &s, &reg, 100, &[sale(1, 7, 1, DAY0)]);
    assert_eq!(part.position(100), Position::Covered);
    assert_eq!(
        part.position(150),
        Position::Gap {
            to: 100,
            ask_start: false
        }
    );
    assert_eq!(
        part.position(150),
        Position::Gap {
            to: 97,
            ask_start: false
        }
    );
    assert_eq!(
        part.position(150),
        Position::Gap {
            to: 85,
            ask_start: false
        }
    );
    assert_eq!(part.position(101), Position::Next);
    assert_eq!(
        part.position(150),
        Position::Gap {
            to: 101,
            ask_start: false
        },
        "reset by progress (101 was taken)"
    );
}

#[test]
fn an_idle_partition_at_its_end_follows_the_slowest_active_one() {
    let cfg = Config::default();
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let t0 = Instant::now();
    let mut quiet = Partition::restore(0, None, vec![], &s, t0);
    feed(&mut quiet, &s, &reg, 0, &[sale(1, 7, 1, DAY0)]);
    quiet.at_end = true;
    let later = t0 + s.idle_timeout + Duration::from_secs(1);
    // Not idle yet: nothing moves.
    quiet.follow(&s, Some(DAY0 + 5 * HOUR), t0);
    assert!(quiet.closed.is_empty());
    assert_eq!(
        quiet.active_watermark(&s, later),
        None,
        "idle is not active"
    );
    quiet.follow(&s, Some(DAY0 + 5 * HOUR), later);
    let closed: Vec<_> = quiet.closed.iter().map(|c| (c.spec, c.start)).collect();
    assert!(
        closed.contains(&(0, DAY0)),
        "its 1h window closed: {closed:?}"
    );
    assert!(quiet.due(&s, later + s.roll_interval));
}

#[test]
fn the_flush_plan_names_its_files_orders_its_messages_and_covers_its_offsets() {
    let mut cfg = Config::default();
    cfg.stream.features = vec![Feature::Totals];
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let t0 = Instant::now();
    let mut part = Partition::restore(2, None, vec![], &s, t0);
    let mut bad = sale(3, 7, 1, DAY0);
    bad.brand = String::new();
    feed(
        &mut part,
        &s,
        &reg,
        10,
        &[
            sale(1, 7, 2, DAY0 + 60_000_000),
            sale(2, 8, 1, DAY0 + 2 * HOUR),
            bad,
        ],
    );
    let plan = part.plan_flush(&s, t0).unwrap();
    assert_eq!((plan.partition, plan.seq), (2, 1));
    assert_eq!(plan.checkpoint.next_offset, Some(13));
    assert_eq!(plan.checkpoint.counters.consumed, 3);
    assert_eq!(
        plan.intent.files,
        plan.files.iter().map(|f| f.0.clone()).collect::<Vec<_>>()
    );
    let name = "part-p002-s00000001-o00000000000000000010.parquet";
    assert!(
        plan.files.iter().all(|f| f.0.ends_with(name)),
        "{:?}",
        plan.intent.files
    );
    assert!(plan.files.iter().any(|f| f.0.starts_with("sales_raw/")));
    assert!(
        plan.files
            .iter()
            .any(|f| f.0.starts_with("sales_windows/window=1h/"))
    );
    // The 1h window of the first sale closed (the second moved the watermark past it); the
    // dead letter follows the windows; the totals of both products come last.
    let k = keys(&plan);
    let dlq = k.iter().position(|k| *k == "dlq|2|12").unwrap();
    assert!(k[..dlq].iter().all(|k| k.starts_with("window|")), "{k:?}");
    assert_eq!(&k[dlq + 1..], ["totals|7|1", "totals|8|1"]);
    assert_eq!(plan.stats.totals, 2);
    assert!(plan.totals_file.is_some());
    // Until confirmed, the partition's sequence stays; after, the next flush starts here.
    assert_eq!(part.seq(), 0);
    part.flushed(plan.seq, t0);
    assert_eq!(part.seq(), 1);
    assert!(!part.due(&s, t0 + s.roll_interval), "nothing new since");
    let again = part.plan_flush(&s, t0).unwrap();
    assert!(
        again.files.is_empty() && again.messages.is_empty(),
        "{:?}",
        keys(&again)
    );
}

#[test]
fn kafka_windows_keep_a_window_in_the_lake_only_and_closed_rows_count_against_roll_bytes() {
    let mut cfg = Config::default();
    cfg.stream.kafka_windows = Some(vec![crate::stream::spec::WindowSpec::parse("1h").unwrap()]);
    cfg.stream.roll_bytes = 40 * CLOSED_ROW_BYTES;
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let t0 = Instant::now();
    let mut part = Partition::restore(0, None, vec![], &s, t0);
    // Ten products an hour apart: each sale closes the windows of the products before it
    // (lateness 10 min), a 1h window and twelve 1h/5m windows each; the 1d windows stay open.
    let sales: Vec<_> = (0..10).map(|i| sale(i, i, 1, DAY0 + i * HOUR)).collect();
    feed(&mut part, &s, &reg, 0, &sales);
    assert!(
        part.full(&s),
        "over 100 closed rows, each counted as CLOSED_ROW_BYTES"
    );
    part.close_all();
    let plan = part.plan_flush(&s, t0).unwrap();
    let k = keys(&plan);
    assert_eq!(k.iter().filter(|k| k.starts_with("window|1h|")).count(), 10);
    let windows: Vec<_> = k.iter().filter(|k| k.starts_with("window|")).collect();
    assert!(
        windows.iter().all(|k| k.starts_with("window|1h|")),
        "{windows:?}"
    );
    for w in ["1h", "1d", "1h_every_5m"] {
        let dir = format!("sales_windows/window={w}/");
        assert!(plan.files.iter().any(|f| f.0.starts_with(&dir)), "{w}");
    }
    assert_eq!(plan.stats.windows, 10 * (1 + 1 + 12));
}

#[test]
fn a_replay_from_the_checkpoint_sends_nothing_twice_and_decides_as_one_pass() {
    let mut cfg = Config::default();
    cfg.stream.features = vec![Feature::Totals];
    let (s, reg) = (settings(&cfg), Registry::local().unwrap());
    let t0 = Instant::now();
    let sales: Vec<ProductSale> = (0..40)
        .map(|i| sale(i, 1 + i % 3, 1, DAY0 + i * HOUR / 4))
        .collect();

    // One uninterrupted pass, flushed at 20 and at the end.
    let mut one = Partition::restore(0, None, vec![], &s, t0);
    feed(&mut one, &s, &reg, 0, &sales[..20]);
    let first = one.plan_flush(&s, t0).unwrap();
    one.flushed(first.seq, t0);
    feed(&mut one, &s, &reg, 20, &sales[20..]);
    one.close_all();
    let second = one.plan_flush(&s, t0).unwrap();

    // A run that crashed after sending the first 5 messages of its second flush: the
    // replay restores the first checkpoint, and recovery found those 5 keys.
    let sent: Vec<String> = keys(&second)[..5].iter().map(|k| k.to_string()).collect();
    let mut replay = Partition::restore(0, Some(first.checkpoint.clone()), sent, &s, t0);
    assert_eq!(replay.position(19), Position::Covered);
    feed(&mut replay, &s, &reg, 20, &sales[20..]);
    replay.close_all();
    let again = replay.plan_flush(&s, t0).unwrap();
    assert_eq!(again.stats.skipped, 5);
    assert_eq!(keys(&again), keys(&second)[5..]);
    assert_eq!(again.files, second.files, "the same files, byte for byte");
    assert_eq!(again.checkpoint.counters, second.checkpoint.counters);
    assert_eq!(again.checkpoint.windows, second.checkpoint.windows);
}

/// Any sales (out of order, late, invalid), any flush points, a crash at any flush with any
/// number of its messages already sent: restoring the last checkpoint and replaying from it
/// sends exactly the messages one uninterrupted pass sends (none twice, none missing), writes
/// the same files byte for byte and ends with the same counters and open windows.
mod replay_property {
    use proptest::prelude::*;

    use super::*;

    /// A sale: product 1-4, quantity 0-3 (0 is invalid), minutes from DAY0 with jitter
    /// backwards (some land behind the watermark).
    fn sales() -> impl Strategy<Value = Vec<ProductSale>> {
        prop::collection::vec((1i64..5, 0i32..4, 0i64..600, 0i64..120), 1..60).prop_map(|v| {
            let mut clock = 0i64;
            v.into_iter()
                .enumerate()
                .map(|(i, (product, qty, step, back))| {
                    clock += step;
                    let minutes = (clock - back * (i as i64 % 3)).max(0);
                    sale(i as i64, product, qty, DAY0 + minutes * 60_000_000)
                })
                .collect()
        })
    }

    /// One pass over `sales`, flushed after each offset in `cuts` and at the end (closing
    /// everything), returning every plan.
    fn one_pass(
        s: &Settings,
        reg: &Registry,
        sales: &[ProductSale],
        cuts: &[usize],
    ) -> Vec<FlushPlan> {
        let t0 = Instant::now();
        let mut part = Partition::restore(0, None, vec![], s, t0);
        run(&mut part, s, reg, sales, 0, cuts, t0)
    }

    fn run(
        part: &mut Partition,
        s: &Settings,
        reg: &Registry,
        sales: &[ProductSale],
        from: usize,
        cuts: &[usize],
        t0: Instant,
    ) -> Vec<FlushPlan> {
        let mut plans = vec![];
        let mut at = from;
        for &cut in cuts
            .iter()
            .filter(|&&c| c > from)
            .chain(std::iter::once(&sales.len()))
        {
            feed(part, s, reg, at as i64, &sales[at..cut]);
            at = cut;
            if cut == sales.len() {
                part.close_all();
            }
            let plan = part.plan_flush(s, t0).unwrap();
            part.flushed(plan.seq, t0);
            plans.push(plan);
        }
        plans
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
        #[test]
        fn restore_and_replay_at_any_crash_point_equals_one_pass(
            sales in sales(),
            cuts in prop::collection::btree_set(1usize..60, 0..5),
            crash in 0usize..6,
            sent_fraction in 0.0f64..=1.0,
        ) {
            let mut cfg = Config::default();
            cfg.stream.features = vec![Feature::Totals];
            let (s, reg) = (settings(&cfg), Registry::local().unwrap());
            let cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < sales.len()).collect();
            let whole = one_pass(&s, &reg, &sales, &cuts);
            let crash = crash.min(whole.len() - 1);
            // The crashed flush had sent the first part of its messages; recovery finds them.
            let crashed = &whole[crash];
            let n = (crashed.messages.len() as f64 * sent_fraction) as usize;
            let sent: Vec<String> = keys(crashed)[..n].iter().map(|k| k.to_string()).collect();
            let (ck, from) = match crash {
                0 => (None, 0),
                k => (Some(whole[k - 1].checkpoint.clone()), cuts.iter().filter(|&&c| c > 0).nth(k - 1).copied().unwrap()),
            };
            let t0 = Instant::now();
            let mut again = Partition::restore(0, ck, sent, &s, t0);
            let replayed = run(&mut again, &s, &reg, &sales, from, &cuts, t0);
            prop_assert_eq!(replayed.len(), whole.len() - crash);
            for (i, (a, b)) in replayed.iter().zip(&whole[crash..]).enumerate() {
                let expect: &[&str] = if i == 0 { &keys(b)[n..] } else { &keys(b) };
                prop_assert_eq!(keys(a), expect, "flush {}", crash + i);
                prop_assert!(a.files == b.files, "flush {}: other files", crash + i);
                prop_assert_eq!(&a.checkpoint.counters, &b.checkpoint.counters);
                prop_assert_eq!(&a.checkpoint.windows, &b.checkpoint.windows);
            }
            let last = &whole[whole.len() - 1].checkpoint.counters;
            prop_assert_eq!(last.consumed, sales.len() as u64);
            prop_assert_eq!(last.consumed, last.aggregated + last.late + last.dead_lettered);
        }
    }
}
