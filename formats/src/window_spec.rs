//! A window's shape and what it aggregates: a leaf (it imports nothing of the crate), so
//! the configuration holds window specs typed and the window core reads them.

use serde::{Deserialize, Serialize};

/// A window shape: tumbling when `slide == size`.
/// In configuration it is its text (`"1h"`, `"1h/5m"`), parsed once when the configuration
/// loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WindowSpec {
    /// The name used in the lake (`window=<name>`) and in output records: `1h`, `1d`,
    /// `1h_every_5m`.
    pub name: String,
    pub size_micros: i64,
    pub slide_micros: i64,
    /// What this window aggregates.
    pub groups: Groups,
}

/// The groupings a window keeps. Products are kept when either product output is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Groups {
    /// Per-product rows go to `sales_windows` (and, with `kafka`, `windowed_product_sales`).
    pub sales_windows: bool,
    /// The per-product rows also go to `windowed_product_sales` (`stream.kafka_windows`).
    pub kafka: bool,
    /// Per-product rows feed the top-N ranking.
    pub top: bool,
    /// Per (customer segment, product).
    pub segments: bool,
    /// Per country and per card type (the dashboard tables).
    pub dashboard: bool,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            sales_windows: true,
            kafka: true,
            top: false,
            segments: false,
            dashboard: false,
        }
    }
}

impl Groups {
    /// Whether per-product rows are kept (either product output is on).
    pub fn products(self) -> bool {
        self.sales_windows || self.top
    }
}

impl WindowSpec {
    /// Parses `1h` (tumbling) or `1h/5m` (sliding: size/slide), humantime units.
    pub fn parse(text: &str) -> Result<WindowSpec, String> {
        let dur = |t: &str| -> Result<i64, String> {
            let d =
                humantime::parse_duration(t.trim()).map_err(|e| format!("window {text:?}: {e}"))?;
            let m =
                i64::try_from(d.as_micros()).map_err(|_| format!("window {text:?} too long"))?;
            if m <= 0 {
                return Err(format!("window {text:?} must be longer than zero"));
            }
            Ok(m)
        };
        let (size, slide, name) = match text.split_once('/') {
            Some((a, b)) => (dur(a)?, dur(b)?, format!("{}_every_{}", a.trim(), b.trim())),
            None => (dur(text)?, dur(text)?, text.trim().to_string()),
        };
        if slide > size || size % slide != 0 {
            return Err(format!("window {text:?}: the slide must divide the size"));
        }
        if (86_400_000_000 % slide != 0) && (slide % 86_400_000_000 != 0) {
            return Err(format!(
                "window {text:?}: the slide must divide a day (or be whole days)"
            ));
        }
        Ok(WindowSpec {
            name,
            size_micros: size,
            slide_micros: slide,
            groups: Groups::default(),
        })
    }

    /// Tumbling: each event falls in exactly one window.
    pub fn is_tumbling(&self) -> bool {
        self.size_micros == self.slide_micros
    }

    /// Starts of the windows that contain `ts`, oldest first.
    pub fn starts(&self, ts: i64) -> impl Iterator<Item = i64> + '_ {
        let last = ts.div_euclid(self.slide_micros) * self.slide_micros;
        let n = self.size_micros / self.slide_micros;
        (0..n).rev().map(move |k| last - k * self.slide_micros)
    }
}

impl TryFrom<String> for WindowSpec {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        WindowSpec::parse(&text)
    }
}

impl From<WindowSpec> for String {
    fn from(w: WindowSpec) -> String {
        w.to_string()
    }
}

impl std::fmt::Display for WindowSpec {
    /// The configuration text: `1h`, or `1h/5m` for the sliding window named `1h_every_5m`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.is_tumbling() {
            true => f.write_str(&self.name),
            false => f.write_str(&self.name.replacen("_every_", "/", 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_round_trips_through_its_configuration_text() {
        for text in ["1h", "1d", "1h/5m", "7d/1d"] {
            let w = WindowSpec::parse(text).unwrap();
            assert_eq!(String::from(w.clone()), text);
            assert_eq!(WindowSpec::try_from(text.to_string()), Ok(w));
        }
        assert!(WindowSpec::try_from("1h/7m".to_string()).is_err());
    }
}
