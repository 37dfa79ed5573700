//! Pure models for `jobs`: demand features, linear forecasts chosen per product by backtest,
//! forecast and ranking metrics, and implicit-feedback ALS recommendations with settings
//! tuned per run on a validation split.
//!
//! **Invariant:** this crate does no IO: no files, no network, no async runtime, no Kafka.
//! Plain slices, `ndarray` arrays and structs go in and come out, so every model can be
//! tested and benchmarked on its own and the `jobs` binary owns every side effect.
//!
//! ```
//! use models::features::{Calendar, Granularity, Series};
//! use models::forecast::{Method, fit, predict};
//!
//! // Ten weeks of a product that sells 10 a day on weekdays and 20 on weekends.
//! let quantity: Vec<f64> = (0..70).map(|d| if (d + 3) % 7 >= 5 { 20.0 } else { 10.0 }).collect();
//! let series = Series { first_day: 0, quantity, price: vec![9.99; 70] };
//! let no_holidays = Calendar::default();
//! let model = fit(&series, Method::Ols, Granularity::Day, &no_holidays).unwrap();
//! let next_week = predict(&model, &series, 7, 9.99, &no_holidays);
//! assert!((next_week[2] - 20.0).abs() < 1e-6); // day 72 is a Saturday
//! ```

pub mod als;
pub mod backtest;
pub mod features;
pub mod forecast;
pub mod metrics;
pub mod tune;

/// What can go wrong inside a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input does not have the shape the model needs.
    #[error("invalid input: {0}")]
    Input(String),
    /// The linear algebra failed (a singular or non-finite system).
    #[error("fitting {model}: {reason}")]
    Fit {
        /// The model being fitted.
        model: &'static str,
        /// Why it failed.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
