//! The batch panels, pure: the newest published `forecasts/` run against the daily windows,
//! and the newest `recommendations/` run for a customer (or its cold-start list).
//!
//! A run counts once its `manifest.json` is there: the batch jobs write it last, after the
//! broker acknowledged every message, so a run folder without one is unfinished.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::core::{Index, Live, Query};
use crate::units::rfc3339_micros;

const DAY: i64 = 86_400_000_000;
/// Days of actuals shown before a forecast's first date.
pub const HISTORY_DAYS: i64 = 28;
/// Products offered in the forecast panel's picker.
const PICKER: usize = 200;

/// One published forecast run, by product.
#[derive(Debug, Clone, Default)]
pub struct ForecastRun {
    /// `YYYY-MM-DD`.
    pub run_date: String,
    pub model_version: String,
    /// Product -> (model, [(day start micros, predicted units)] by day).
    pub products: BTreeMap<i64, (String, Vec<(i64, f64)>)>,
    /// Names as the run saw them.
    pub names: HashMap<i64, String>,
}

/// One recommended product.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rec {
    pub rank: i32,
    pub product_id: i64,
    pub name: String,
    pub score: f64,
    /// `als`, `popular`, ...
    pub source: String,
}

/// One published recommendation run.
#[derive(Debug, Clone, Default)]
pub struct RecRun {
    pub run_date: String,
    pub model_version: String,
    pub by_customer: HashMap<i64, Vec<Rec>>,
    /// For customers the run did not know (`customer_id` null).
    pub cold_start: Vec<Rec>,
}

/// One day of the forecast panel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForecastDay {
    pub date: String,
    /// Units of the day's window; `None` for a day the stream has not reached.
    pub actual: Option<i64>,
    /// Whether the day's window is still open (its actual still grows).
    pub open: bool,
    pub predicted: Option<f64>,
}

/// The forecast panel for one product.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForecastPanel {
    pub run_date: String,
    pub model_version: String,
    /// The products to pick from (those passing the filter), most predicted units first.
    pub products: Vec<(i64, String)>,
    pub product_id: Option<i64>,
    pub name: String,
    pub model: String,
    pub days: Vec<ForecastDay>,
    /// Days with both a closed actual and a prediction, and the errors over them.
    pub compared_days: usize,
    pub mae: Option<f64>,
    /// Sum of absolute errors over the sum of actuals.
    pub wape: Option<f64>,
}

/// The recommendations panel.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecPanel {
    pub run_date: String,
    pub model_version: String,
    pub customer_id: Option<i64>,
    /// Whether the run knew the customer (else the cold-start list is shown).
    pub known: bool,
    pub items: Vec<RecItem>,
    /// How many of the customer's items the filter hid.
    pub filtered_out: usize,
}

/// A recommended product with its brand and category (from the lake's windows).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecItem {
    #[serde(flatten)]
    pub rec: Rec,
    pub brand: String,
    pub category: String,
}

/// The forecast of `product` (or the top product passing the filter) against the actuals.
pub fn forecast_panel(
    run: &ForecastRun,
    index: &Index,
    live: &Live,
    q: &Query,
    product: Option<i64>,
) -> ForecastPanel {
    let total = |v: &[(i64, f64)]| v.iter().map(|d| d.1).sum::<f64>();
    let mut picker: Vec<(i64, f64)> = run
        .products
        .iter()
        .filter(|(id, _)| index.matches(live, q, **id))
        .map(|(id, (_, days))| (*id, total(days)))
        .collect();
    picker.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let name = |id: i64| {
        index
            .product(live, id)
            .map(|p| p.name.clone())
            .or_else(|| run.names.get(&id).cloned())
            .unwrap_or_default()
    };
    let chosen = product
        .filter(|p| run.products.contains_key(p))
        .or(picker.first().map(|p| p.0));
    let mut panel = ForecastPanel {
        run_date: run.run_date.clone(),
        model_version: run.model_version.clone(),
        products: picker
            .iter()
            .take(PICKER)
            .map(|(id, _)| (*id, name(*id)))
            .collect(),
        product_id: chosen,
        name: chosen.map(name).unwrap_or_default(),
        model: String::new(),
        days: vec![],
        compared_days: 0,
        mae: None,
        wape: None,
    };
    let Some(id) = chosen else {
        return panel;
    };
    let (model, predicted) = &run.products[&id];
    panel.model = model.clone();
    let Some(first) = predicted.first().map(|d| d.0) else {
        return panel;
    };
    let last = predicted.last().map_or(first, |d| d.0);
    let actual = index.daily(live, id);
    // A day the stream reached has an actual, zero when nothing sold; a day before the first
    // daily window has none (nothing was streamed then).
    let reached = live.newest_event().unwrap_or(i64::MIN);
    let since = index.first_day(live).unwrap_or(i64::MAX);
    let predicted: HashMap<i64, f64> = predicted.iter().copied().collect();
    let (mut abs, mut sum) = (0.0, 0i64);
    let mut day = first - HISTORY_DAYS * DAY;
    while day <= last {
        let got = actual.get(&day).copied();
        let (units, open) = match got {
            Some((u, _, open)) => (Some(u), open),
            None if day >= since && day <= reached => (Some(0), day + DAY > reached),
            None => (None, false),
        };
        let p = predicted.get(&day).copied();
        if let (Some(a), Some(p), false) = (units, p, open) {
            panel.compared_days += 1;
            abs += (p - a as f64).abs();
            sum += a;
        }
        panel.days.push(ForecastDay {
            date: rfc3339_micros(day)[..10].to_string(),
            actual: units,
            open,
            predicted: p,
        });
        day += DAY;
    }
    if panel.compared_days > 0 {
        panel.mae = Some(abs / panel.compared_days as f64);
        panel.wape = (sum > 0).then(|| abs / sum as f64);
    }
    panel
}

/// The recommendations of `customer` (the cold-start list when the run does not know it, or
/// when none is asked for), without the products the filter hides.
pub fn rec_panel(
    run: &RecRun,
    index: &Index,
    live: &Live,
    q: &Query,
    customer: Option<i64>,
) -> RecPanel {
    let list = customer.and_then(|c| run.by_customer.get(&c));
    let items: Vec<RecItem> = list
        .unwrap_or(&run.cold_start)
        .iter()
        .map(|r| {
            let info = index
                .product(live, r.product_id)
                .cloned()
                .unwrap_or_default();
            RecItem {
                rec: r.clone(),
                brand: info.brand,
                category: info.category,
            }
        })
        .collect();
    let all = items.len();
    let items: Vec<RecItem> = items
        .into_iter()
        .filter(|i| index.matches(live, q, i.rec.product_id))
        .collect();
    RecPanel {
        run_date: run.run_date.clone(),
        model_version: run.model_version.clone(),
        customer_id: customer,
        known: list.is_some(),
        filtered_out: all - items.len(),
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dashboard::core::tests::ck;
    use crate::dashboard::core::{HourRow, Table, WindowFile};

    #[test]
    fn actuals_meet_the_forecast_day_by_day_and_unreached_days_have_none() {
        // The stream has seen up to 5 h past the epoch: day 0 is reached (and open).
        let mut live = Live {
            day_spec: Some(0),
            ..Default::default()
        };
        live.partitions
            .insert(0, ck(1, vec![(DAY, 0, 0, 7, 4, 400, 2)]));
        let index = Index::default();
        let mut run = ForecastRun {
            run_date: "1970-01-01".into(),
            ..Default::default()
        };
        run.products
            .insert(7, ("ols".into(), vec![(0, 3.0), (DAY, 5.0)]));
        run.products.insert(8, ("naive".into(), vec![(0, 1.0)]));
        let q = Query {
            hours: 24,
            ..Default::default()
        };
        let p = forecast_panel(&run, &index, &live, &q, None);
        assert_eq!(p.product_id, Some(7), "the most predicted units first");
        assert_eq!(p.products.len(), 2);
        assert_eq!(p.days.len(), HISTORY_DAYS as usize + 2);
        let today = &p.days[HISTORY_DAYS as usize];
        assert_eq!(
            (today.actual, today.open, today.predicted),
            (Some(4), true, Some(3.0))
        );
        let tomorrow = p.days.last().unwrap();
        assert_eq!((tomorrow.actual, tomorrow.predicted), (None, Some(5.0)));
        assert_eq!(p.days[0].actual, None, "before the first daily window");
        assert_eq!(p.compared_days, 0, "an open day is not compared");
        assert_eq!(p.mae, None);
        // Once the stream is past day 0, its window is closed in the lake: compared.
        let mut closed = live.clone();
        closed.partitions.insert(0, ck(2, vec![]));
        closed
            .partitions
            .get_mut(&0)
            .unwrap()
            .checkpoint
            .windows
            .max_ts = Some(DAY + 5);
        let mut index = Index::default();
        index.apply(
            &[("w/a.parquet".into(), 1)],
            vec![(
                "w/a.parquet".into(),
                WindowFile {
                    table: Table::Daily,
                    rows: vec![HourRow {
                        start: 0,
                        product: 7,
                        quantity: 4,
                        revenue_cents: 400,
                        orders: 2,
                    }],
                    labels: vec![],
                    products: vec![],
                },
            )],
        );
        let p = forecast_panel(&run, &index, &closed, &q, None);
        let tomorrow = p.days.last().unwrap();
        assert_eq!(
            (tomorrow.actual, tomorrow.open),
            (Some(0), true),
            "a reached day without sales"
        );
        assert_eq!(p.compared_days, 1);
        assert_eq!((p.mae, p.wape), (Some(1.0), Some(0.25)));
        let p8 = forecast_panel(&run, &index, &live, &q, Some(8));
        assert_eq!((p8.product_id, p8.model.as_str()), (Some(8), "naive"));
        assert_eq!(
            forecast_panel(&run, &index, &live, &q, Some(99)).product_id,
            Some(7)
        );
    }

    #[test]
    fn an_unknown_customer_gets_the_cold_start_list() {
        let rec = |rank, product_id| Rec {
            rank,
            product_id,
            name: format!("p{product_id}"),
            score: 1.0 / f64::from(rank),
            source: "als".into(),
        };
        let mut run = RecRun::default();
        run.by_customer.insert(5, vec![rec(1, 3), rec(2, 4)]);
        run.cold_start = vec![rec(1, 9)];
        let (index, live, q) = (Index::default(), Live::default(), Query::default());
        let p = rec_panel(&run, &index, &live, &q, Some(5));
        assert!(p.known);
        assert_eq!(p.items.len(), 2);
        let p = rec_panel(&run, &index, &live, &q, Some(6));
        assert!(!p.known);
        assert_eq!(p.items[0].rec.product_id, 9);
        let filtered = Query {
            brand: Some("nope".into()),
            ..Default::default()
        };
        let p = rec_panel(&run, &index, &live, &filtered, Some(5));
        assert_eq!((p.items.len(), p.filtered_out), (0, 2));
    }
}
