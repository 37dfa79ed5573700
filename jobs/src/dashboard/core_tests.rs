//! Tests of the dashboard core: coverage by checkpoint, the panels' sums, ties and filters.

use super::*;
use crate::stream::window::WindowState;

pub fn ck(seq: u64, open: Vec<(i64, usize, i64, i64, i64, i64, i64)>) -> PartitionState {
    PartitionState {
        checkpoint: Checkpoint {
            seq,
            next_offset: Some(10),
            counters: Default::default(),
            output_offsets: BTreeMap::new(),
            windows: WindowState {
                max_ts: Some(5 * HOUR + 10),
                emitted_to: 4 * HOUR,
                open,
                ..Default::default()
            },
            totals: Default::default(),
            stock: Default::default(),
        },
        written_at: 0,
    }
}

fn row(start: i64, product: i64, q: i64) -> HourRow {
    HourRow {
        start,
        product,
        quantity: q,
        revenue_cents: q * 100,
        orders: 1,
    }
}

#[test]
fn files_of_flushes_after_the_checkpoint_wait_and_open_windows_come_from_it() {
    let mut live = Live {
        hour_spec: Some(0),
        ..Default::default()
    };
    live.partitions
        .insert(0, ck(2, vec![(6 * HOUR, 0, 5 * HOUR, 7, 3, 300, 1)]));
    let listing = vec![
        (
            "w/part-p000-s00000002-o00000000000000000000.parquet".into(),
            1,
        ),
        (
            "w/part-p000-s00000003-o00000000000000000009.parquet".into(),
            1,
        ),
        ("w/compacted-1-2-0.parquet".into(), 1),
        (
            "w/part-p001-s00000009-o00000000000000000000.parquet".into(),
            1,
        ),
    ];
    let mut ix = Index::default();
    let want = ix.wanted(&listing, &live);
    assert_eq!(want.len(), 3, "{want:?}");
    assert!(!want.iter().any(|p| p.contains("s00000003")));
    let read = want
        .into_iter()
        .map(|p| {
            (
                p,
                WindowFile {
                    table: Table::Products,
                    labels: vec![],
                    rows: vec![row(4 * HOUR, 7, 2)],
                    products: vec![],
                },
            )
        })
        .collect();
    assert_eq!(ix.apply(&listing, read), 0);
    let h = ix.hourly(
        &live,
        &Query {
            hours: 2,
            ..Default::default()
        },
    );
    assert_eq!(h.units, 3 * 2 + 3);
    assert_eq!(h.hours[0].units, 6);
    assert!(!h.hours[0].open);
    assert_eq!((h.hours[1].units, h.hours[1].open), (3, true));
    assert_eq!(h.revenue_cents, 900);
    // The compacted file replaced the others: they are forgotten.
    let listing = vec![("w/compacted-1-2-0.parquet".to_string(), 1)];
    assert_eq!(ix.apply(&listing, vec![]), 2);
    assert_eq!(
        ix.hourly(
            &live,
            &Query {
                hours: 2,
                ..Default::default()
            }
        )
        .units,
        5
    );
}

#[test]
fn the_filter_keeps_only_the_matching_products() {
    let mut ix = Index::default();
    let info = |c: &str, b: &str| ProductInfo {
        name: "x".into(),
        brand: b.into(),
        category: c.into(),
    };
    ix.apply(
        &[("a.parquet".into(), 1)],
        vec![(
            "a.parquet".into(),
            WindowFile {
                table: Table::Products,
                labels: vec![],
                rows: vec![row(0, 1, 1), row(0, 2, 10)],
                products: vec![(1, info("Laptops", "Dell")), (2, info("Tablets", "Apple"))],
            },
        )],
    );
    let live = Live::default();
    let q = |c: Option<&str>, b: Option<&str>| Query {
        hours: 1,
        category: c.map(String::from),
        brand: b.map(String::from),
    };
    assert_eq!(ix.hourly(&live, &q(None, None)).units, 11);
    assert_eq!(ix.hourly(&live, &q(Some("Laptops"), None)).units, 1);
    assert_eq!(ix.hourly(&live, &q(None, Some("Apple"))).units, 10);
    assert_eq!(
        ix.hourly(&live, &q(Some("Laptops"), Some("Apple"))).units,
        0
    );
    assert_eq!(
        ix.filters().1,
        vec!["Apple".to_string(), "Dell".to_string()]
    );
}

#[test]
fn top_lists_and_bars_sum_the_range_closed_and_open() {
    let mut live = Live {
        hour_spec: Some(0),
        ..Default::default()
    };
    let mut st = ck(1, vec![(6 * HOUR, 0, 5 * HOUR, 8, 9, 90, 1)]);
    st.checkpoint.windows.labels = vec!["DE".into(), "FR".into()];
    st.checkpoint.windows.groups = vec![
        (6 * HOUR, 0, 5 * HOUR, 2, 1, 0, 4, 400, 2),
        // Another window (spec 1) and another kind (card type) do not count.
        (6 * HOUR, 1, 5 * HOUR, 2, 1, 0, 50, 5000, 5),
        (6 * HOUR, 0, 5 * HOUR, 3, 0, 0, 60, 6000, 6),
    ];
    live.partitions.insert(0, st);
    let label = |start: i64, l: &str, q: i64| LabelRow {
        start,
        label: l.into(),
        quantity: q,
        revenue_cents: q * 100,
        orders: 1,
    };
    let mut ix = Index::default();
    let mut countries = WindowFile::new(Table::Countries);
    countries.labels = vec![
        label(4 * HOUR, "DE", 5),
        label(4 * HOUR, "FR", 1),
        label(HOUR, "FR", 99),
    ];
    let mut products = WindowFile::new(Table::Products);
    products.rows = vec![
        row(4 * HOUR, 7, 10),
        row(4 * HOUR, 8, 2),
        HourRow {
            revenue_cents: 5000,
            ..row(4 * HOUR, 9, 1)
        },
    ];
    let listing = vec![("c.parquet".to_string(), 1), ("p.parquet".to_string(), 1)];
    ix.apply(
        &listing,
        vec![
            ("c.parquet".into(), countries),
            ("p.parquet".into(), products),
        ],
    );
    let q = Query {
        hours: 2,
        ..Default::default()
    };
    let b = ix.bars(&live, &q, Table::Countries);
    assert_eq!(
        b.bars
            .iter()
            .map(|b| (b.label.as_str(), b.units))
            .collect::<Vec<_>>(),
        vec![("DE", 5), ("FR", 1 + 4)],
        "the hour outside the range is left out"
    );
    assert!(!b.all_products);
    assert_eq!(ix.bars(&live, &q, Table::Cards).bars[0].label, "DE");
    let t = ix.top(&live, &q, 2);
    // Product 8: 2 closed + 9 open.
    assert_eq!(
        t.by_units
            .iter()
            .map(|r| (r.product_id, r.units))
            .collect::<Vec<_>>(),
        vec![(8, 11), (7, 10)]
    );
    assert_eq!(
        t.by_revenue
            .iter()
            .map(|r| r.product_id)
            .collect::<Vec<_>>(),
        vec![9, 7]
    );
}
