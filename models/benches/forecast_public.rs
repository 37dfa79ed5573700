//! Benchmark harness for public demand series, run by `scripts/bench-forecast-public` as
//! `cargo bench -p models --bench forecast_public -- IN.json` (the library stays free of
//! IO; this harness reads the series and prints the forecasts).
//!
//! `IN.json`: `{"granularity": "day"|"week", "horizon": H, "series": [{"id", "first_day",
//! "quantity": [...], "price": [...], "holidays": [day numbers]}]}`, each series already
//! without its held-out periods. Prints one JSON object: per series, the forecast of the
//! backtest's choice (`auto`, with the chosen method and the 80% interval) and of every
//! method alone, at the planning price; and the seconds it took.

use std::time::Instant;

use models::backtest;
use models::features::{Calendar, Granularity, Series};
use models::forecast::{self, Method};
use serde_json::{Value, json};

fn main() {
    // `cargo bench` appends `--bench`.
    let args: Vec<String> = std::env::args().filter(|a| a != "--bench").collect();
    let input: Value = serde_json::from_slice(&std::fs::read(&args[1]).unwrap()).unwrap();
    let g = match input["granularity"].as_str() {
        Some("week") => Granularity::Week,
        _ => Granularity::Day,
    };
    let horizon = input["horizon"].as_u64().unwrap() as usize;
    let floats = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let started = Instant::now();
    let mut out = serde_json::Map::new();
    for s in input["series"].as_array().unwrap() {
        let series = Series {
            first_day: s["first_day"].as_i64().unwrap(),
            quantity: floats(&s["quantity"]),
            price: floats(&s["price"]),
        };
        let cal = Calendar::new(
            s["holidays"]
                .as_array()
                .map(|a| a.iter().map(|d| d.as_i64().unwrap()).collect())
                .unwrap_or_default(),
        );
        let price = series.planning_price(g).unwrap();
        let choice =
            backtest::choose(&series, &Method::ALL, Method::Ridge, horizon, (g, &cal)).unwrap();
        let auto = choice.predict(&series, horizon, price, &cal);
        let residuals = choice.backtest.as_ref().map(|b| b.residuals.clone());
        let band = backtest::interval(&auto, residuals.as_deref().unwrap_or(&[]), 0.8);
        let mut one = serde_json::Map::new();
        one.insert("auto".into(), json!(auto));
        one.insert("auto_method".into(), json!(choice.name()));
        one.insert(
            "lower".into(),
            json!(band.iter().map(|b| b.0).collect::<Vec<_>>()),
        );
        one.insert(
            "upper".into(),
            json!(band.iter().map(|b| b.1).collect::<Vec<_>>()),
        );
        if let Some(b) = &choice.backtest {
            let mae: serde_json::Map<String, Value> = b
                .mae
                .iter()
                .map(|(m, e)| (m.name().to_string(), json!(e)))
                .collect();
            one.insert("backtest_mae".into(), Value::Object(mae));
            one.insert("origins".into(), json!(b.origins));
            one.insert("residuals".into(), json!(b.residuals));
        }
        for m in Method::ALL {
            let model = forecast::fit(&series, m, g, &cal).unwrap();
            let f = forecast::predict(&model, &series, horizon, price, &cal);
            one.insert(m.name().into(), json!(f));
        }
        out.insert(s["id"].as_str().unwrap().to_string(), Value::Object(one));
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("{}", json!({"forecasts": out, "seconds": seconds}));
}
