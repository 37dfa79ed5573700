//! The shop as a model, no IO: the catalogue, customers with a segment, a country, a card and
//! a taste of their own (a favourite brand and category), and orders drawn with a daily and
//! weekly curve, per-product popularity, trend and price changes with a demand response.

use chrono::{Datelike, Timelike};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// (name, category, brand, list price in rupees), in catalogue order; ids are 1-based positions.
pub const CATALOGUE: &[(&str, &str, &str, i64)] = &[
    ("Dell Inspiron", "Laptop", "Dell", 50_000),
    ("Dell XPS 13", "Laptop", "Dell", 115_000),
    ("Apple MacBook Air M3", "Laptop", "Apple", 114_900),
    ("Apple MacBook Pro 14", "Laptop", "Apple", 169_900),
    ("Lenovo ThinkPad", "Laptop", "Lenovo", 65_000),
    ("Lenovo IdeaPad Slim 5", "Laptop", "Lenovo", 58_990),
    ("HP Pavilion 15", "Laptop", "HP", 62_499),
    ("HP Victus Gaming", "Laptop", "HP", 71_990),
    ("Asus ZenBook 14", "Laptop", "Asus", 84_990),
    ("Asus VivoBook 15", "Laptop", "Asus", 39_990),
    ("Apple iPhone 12", "Smartphone", "Apple", 80_000),
    ("Apple iPhone 15", "Smartphone", "Apple", 79_900),
    ("Samsung Galaxy S24", "Smartphone", "Samsung", 74_999),
    ("Samsung Galaxy A55", "Smartphone", "Samsung", 39_999),
    ("Google Pixel 8", "Smartphone", "Google", 75_999),
    ("OnePlus 12", "Smartphone", "OnePlus", 64_999),
    ("OnePlus Nord CE 4", "Smartphone", "OnePlus", 24_999),
    ("Xiaomi Redmi Note 13", "Smartphone", "Xiaomi", 17_999),
    ("Xiaomi 14", "Smartphone", "Xiaomi", 69_999),
    ("Apple iPad Air", "Tablet", "Apple", 59_900),
    ("Apple iPad 10th Gen", "Tablet", "Apple", 34_900),
    ("Samsung Galaxy Tab S9", "Tablet", "Samsung", 72_999),
    ("Samsung Galaxy Tab A9", "Tablet", "Samsung", 14_999),
    ("Lenovo Tab P12", "Tablet", "Lenovo", 26_999),
    ("Xiaomi Pad 6", "Tablet", "Xiaomi", 26_999),
    ("Apple AirPods Pro", "Accessory", "Apple", 24_900),
    ("Apple MagSafe Charger", "Accessory", "Apple", 4_500),
    ("Samsung Galaxy Buds2 Pro", "Accessory", "Samsung", 17_999),
    ("Sony WH-1000XM5", "Accessory", "Sony", 29_990),
    ("Sony WF-C700N", "Accessory", "Sony", 8_990),
    ("Logitech MX Master 3S", "Accessory", "Logitech", 9_995),
    ("Logitech K380 Keyboard", "Accessory", "Logitech", 2_995),
    ("Anker PowerCore 20000", "Accessory", "Anker", 3_499),
    ("Anker 65W USB-C Charger", "Accessory", "Anker", 2_999),
    ("Dell 27 Monitor S2721", "Accessory", "Dell", 17_499),
    ("HP USB-C Dock G5", "Accessory", "HP", 15_999),
];

pub(super) const SEGMENTS: &[(&str, f64)] = &[("Premium", 0.2), ("Regular", 0.5), ("Budget", 0.3)];
pub(super) const COUNTRIES: &[(&str, f64)] = &[
    ("India", 0.55),
    ("United States", 0.12),
    ("United Kingdom", 0.07),
    ("Germany", 0.06),
    ("United Arab Emirates", 0.06),
    ("Singapore", 0.05),
    ("Australia", 0.05),
    ("Canada", 0.04),
];
pub(super) const CARDS: &[(&str, f64)] = &[
    ("Visa", 0.38),
    ("Mastercard", 0.3),
    ("RuPay", 0.17),
    ("American Express", 0.1),
    ("Discover", 0.05),
];
pub(super) const FIRST: &[&str] = &[
    "Aarav", "Priya", "Rohan", "Ananya", "Vikram", "Meera", "Arjun", "Sneha", "Kabir", "Isha",
    "James", "Emma", "Liam", "Olivia", "Noah", "Sofia", "Lukas", "Mia", "Omar", "Layla", "Wei",
    "Mei", "Ethan", "Chloe",
];
pub(super) const LAST: &[&str] = &[
    "Sharma", "Patel", "Iyer", "Reddy", "Gupta", "Nair", "Singh", "Khan", "Smith", "Brown",
    "Wilson", "Taylor", "Müller", "Schmidt", "Al-Farsi", "Tan", "Lim", "Nguyen", "Martin",
    "Clarke",
];
/// Relative order volume by hour of day (UTC), evening peak.
pub(super) const HOURLY: [f64; 24] = [
    0.25, 0.15, 0.1, 0.08, 0.08, 0.12, 0.25, 0.45, 0.7, 0.9, 1.0, 1.05, 1.1, 1.05, 1.0, 1.0, 1.05,
    1.15, 1.3, 1.5, 1.6, 1.45, 1.0, 0.55,
];
/// Relative order volume by weekday, Monday first.
pub(super) const WEEKLY: [f64; 7] = [0.9, 0.88, 0.92, 0.95, 1.08, 1.3, 1.2];
pub(super) const DAY_MICROS: i64 = 86_400_000_000;
pub(super) const HOUR_MICROS: i64 = 3_600_000_000;

/// A customer as the generator sees it.
pub(super) struct Customer {
    pub(super) id: i64,
    pub(super) segment: usize,
    country: &'static str,
    card: &'static str,
    taste: Taste,
}

/// What a customer favours beyond their segment's price band: a brand and a category, each
/// pulling their share of the customer's orders up by a factor; some favour neither.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Taste {
    pub(super) brand: Option<&'static str>,
    pub(super) category: Option<&'static str>,
}

/// Weight factor of the favourite brand's products in a customer's orders ...
const BRAND_PULL: f64 = 40.0;
/// ... and of the favourite category's.
const CATEGORY_PULL: f64 = 6.0;

impl Taste {
    /// The taste of customer `id` of the shop seeded `seed`: from a generator of its own, so
    /// that the shop's other draws (and so its volumes) do not move with it.
    fn of(seed: u64, id: i64) -> Taste {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut brands: Vec<&'static str> = CATALOGUE.iter().map(|c| c.2).collect();
        brands.sort_unstable();
        brands.dedup();
        let categories = ["Laptop", "Smartphone", "Tablet", "Accessory"];
        let brand = (rng.random::<f64>() < 0.9).then(|| brands[rng.random_range(0..brands.len())]);
        let category =
            (rng.random::<f64>() < 0.6).then(|| categories[rng.random_range(0..categories.len())]);
        Taste { brand, category }
    }

    fn pull(&self, category: &str, brand: &str) -> f64 {
        let b = if self.brand == Some(brand) {
            BRAND_PULL
        } else {
            1.0
        };
        let c = if self.category == Some(category) {
            CATEGORY_PULL
        } else {
            1.0
        };
        b * c
    }
}

/// One product's behaviour over time.
pub(super) struct ProductModel {
    popularity: f64,
    /// Multiplicative demand trend per day.
    trend_per_day: f64,
    /// (from_micros, price in cents), ascending; the first entry is the list price.
    pub(super) prices: Vec<(i64, i64)>,
}

/// The generator's state: catalogue models and customers, all derived from the seed.
pub struct Shop {
    pub(super) rng: ChaCha8Rng,
    pub(super) products: Vec<ProductModel>,
    pub(super) customers: Vec<Customer>,
}

pub(super) fn pick<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, f64)]) -> (usize, &'a str) {
    let total: f64 = items.iter().map(|i| i.1).sum();
    let mut x = rng.random::<f64>() * total;
    for (i, (name, w)) in items.iter().enumerate() {
        if x < *w {
            return (i, name);
        }
        x -= w;
    }
    (items.len() - 1, items[items.len() - 1].0)
}

impl Shop {
    /// Builds the shop for `seed`, with price histories over `[start, end)`.
    pub fn new(seed: u64, customers: u32, start: i64, end: i64) -> Shop {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let days = ((end - start) / DAY_MICROS).max(1);
        let products = CATALOGUE
            .iter()
            .map(|(_, cat, _, list)| {
                let base = match *cat {
                    "Accessory" => 2.2,
                    "Smartphone" => 1.6,
                    "Laptop" => 0.8,
                    _ => 0.7,
                };
                let popularity = base * (0.3 + rng.random::<f64>() * 1.7);
                let trend_per_day = 1.0 + (rng.random::<f64>() - 0.4) * 0.012;
                let mut prices = vec![(i64::MIN, list * 100)];
                let mut day = 0;
                while day < days {
                    day += 7 + rng.random_range(0..21);
                    if day >= days {
                        break;
                    }
                    let factor: f64 = [0.85, 0.9, 0.95, 1.0, 1.05][rng.random_range(0..5)];
                    let cents = ((*list as f64 * factor).round() as i64) * 100;
                    prices.push((
                        start + day * DAY_MICROS + rng.random_range(0..DAY_MICROS),
                        cents,
                    ));
                }
                ProductModel {
                    popularity,
                    trend_per_day,
                    prices,
                }
            })
            .collect();
        let customers = (1..=i64::from(customers))
            .map(|id| {
                let (segment, _) = pick(&mut rng, SEGMENTS);
                let (_, country) = pick(&mut rng, COUNTRIES);
                let (_, card) = pick(&mut rng, CARDS);
                let country = COUNTRIES
                    .iter()
                    .find(|c| c.0 == country)
                    .map(|c| c.0)
                    .unwrap_or("India");
                let card = CARDS
                    .iter()
                    .find(|c| c.0 == card)
                    .map(|c| c.0)
                    .unwrap_or("Visa");
                Customer {
                    id,
                    segment,
                    country,
                    card,
                    taste: Taste::of(seed, id),
                }
            })
            .collect();
        Shop {
            rng,
            products,
            customers,
        }
    }

    fn price_at(&self, p: usize, at: i64) -> i64 {
        let prices = &self.products[p].prices;
        prices
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .map(|x| x.1)
            .unwrap_or(prices[0].1)
    }

    /// Product weights for a segment at a time: popularity x trend x price response x the
    /// segment's price band x the customer's own taste (none for a guest).
    fn weights(&self, segment: usize, taste: Option<&Taste>, at: i64, start: i64) -> Vec<f64> {
        let day = ((at - start) / DAY_MICROS) as f64;
        CATALOGUE
            .iter()
            .enumerate()
            .map(|(i, (_, category, brand, list))| {
                let m = &self.products[i];
                let price = self.price_at(i, at) as f64 / 100.0;
                let elasticity = (price / *list as f64).powf(-2.0);
                let band = match (SEGMENTS[segment].0, *list) {
                    ("Premium", l) if l >= 60_000 => 2.5,
                    ("Budget", l) if l <= 25_000 => 2.5,
                    ("Budget", l) if l >= 100_000 => 0.3,
                    _ => 1.0,
                };
                let own = taste.map_or(1.0, |t| t.pull(category, brand));
                m.popularity * m.trend_per_day.powf(day) * elasticity * band * own
            })
            .collect()
    }

    /// One order at `at`.
    pub(super) fn order(&mut self, at: i64, start: i64) -> Sale {
        let guest = self.rng.random::<f64>() < 0.03;
        let c = self.rng.random_range(0..self.customers.len());
        let segment = if guest { 1 } else { self.customers[c].segment };
        let taste = (!guest).then_some(self.customers[c].taste);
        let w = self.weights(segment, taste.as_ref(), at, start);
        let total: f64 = w.iter().sum();
        let mut x = self.rng.random::<f64>() * total;
        let mut p = w.len() - 1;
        for (i, wi) in w.iter().enumerate() {
            if x < *wi {
                p = i;
                break;
            }
            x -= wi;
        }
        let (name, category, brand, _) = CATALOGUE[p];
        let quantity = if category == "Accessory" {
            1 + (self.rng.random::<f64>().powi(3) * 4.0) as i64
        } else {
            match self.rng.random::<f64>() {
                x if x < 0.86 => 1,
                x if x < 0.97 => 2,
                _ => 3,
            }
        };
        let (customer, country, card) = if guest {
            let (_, country) = pick(&mut self.rng, COUNTRIES);
            let (_, card) = pick(&mut self.rng, CARDS);
            (None, country.to_string(), card.to_string())
        } else {
            let cu = &self.customers[c];
            let card = if self.rng.random::<f64>() < 0.8 {
                cu.card.to_string()
            } else {
                pick(&mut self.rng, CARDS).1.to_string()
            };
            (Some(cu.id), cu.country.to_string(), card)
        };
        Sale {
            product_id: p as i64 + 1,
            name,
            category,
            brand,
            quantity,
            price_cents: self.price_at(p, at),
            at,
            customer,
            country,
            card,
        }
    }

    /// Orders for `[start, end)`: `n` in total, spread by the hourly and weekly curves and
    /// the shop's growth, in time order.
    pub fn backfill(&mut self, start: i64, end: i64, n: u64) -> Vec<Sale> {
        let hours: Vec<(i64, f64)> = (0..)
            .map(|h| start - start.rem_euclid(HOUR_MICROS) + h * HOUR_MICROS)
            .take_while(|t| *t < end)
            .map(|t| {
                let dt = chrono::DateTime::from_timestamp_micros(t).unwrap_or_default();
                let growth = 1.0 + 0.3 * ((t - start) as f64 / (end - start).max(1) as f64);
                let w = HOURLY[dt.hour() as usize]
                    * WEEKLY[dt.weekday().num_days_from_monday() as usize]
                    * growth;
                (t, w)
            })
            .collect();
        let total: f64 = hours.iter().map(|h| h.1).sum();
        let mut out = Vec::with_capacity(n as usize);
        let mut carry = 0.0;
        for (i, (t, w)) in hours.iter().enumerate() {
            carry += n as f64 * w / total;
            let mut k = carry.floor() as u64;
            if i == hours.len() - 1 {
                k = n - out.len() as u64;
            }
            carry -= k as f64;
            let lo = (*t).max(start);
            let hi = (*t + HOUR_MICROS).min(end);
            if hi <= lo {
                continue;
            }
            let mut times: Vec<i64> = (0..k).map(|_| self.rng.random_range(lo..hi)).collect();
            times.sort_unstable();
            for at in times {
                let s = self.order(at, start);
                out.push(s);
            }
        }
        out
    }

    /// The latest price of every product at `at`, in cents.
    pub fn prices_at(&self, at: i64) -> Vec<i64> {
        (0..CATALOGUE.len()).map(|p| self.price_at(p, at)).collect()
    }
}

/// One generated order line.
#[derive(Debug, Clone)]
pub struct Sale {
    pub product_id: i64,
    pub name: &'static str,
    pub category: &'static str,
    pub brand: &'static str,
    pub quantity: i64,
    pub price_cents: i64,
    pub at: i64,
    pub customer: Option<i64>,
    pub country: String,
    pub card: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_favour_their_brand_and_category() {
        let (start, end) = (0, 60 * DAY_MICROS);
        let mut shop = Shop::new(7, 300, start, end);
        let sales = shop.backfill(start, end, 60_000);
        let taste = |id: i64| shop.customers[(id - 1) as usize].taste;
        // Each brand's share of all orders, and of the orders of the customers who favour it.
        let share = |pick: &dyn Fn(&Sale) -> bool, of: &dyn Fn(&Sale) -> bool| {
            let of: Vec<&Sale> = sales.iter().filter(|s| of(s)).collect();
            of.iter().filter(|s| pick(s)).count() as f64 / of.len().max(1) as f64
        };
        let mut checked = 0;
        for brand in ["Apple", "Dell", "Samsung"] {
            let all = share(&|s| s.brand == brand, &|s| s.customer.is_some());
            let fans = share(&|s| s.brand == brand, &|s| {
                s.customer.is_some_and(|c| taste(c).brand == Some(brand))
            });
            assert!(
                fans > 2.0 * all,
                "{brand}: {fans:.3} of fans' orders vs {all:.3} of all"
            );
            checked += 1;
        }
        assert_eq!(checked, 3);
        let all = share(&|s| s.category == "Tablet", &|s| s.customer.is_some());
        let fans = share(&|s| s.category == "Tablet", &|s| {
            s.customer
                .is_some_and(|c| taste(c).category == Some("Tablet"))
        });
        assert!(fans > 1.5 * all, "tablets: {fans:.3} vs {all:.3}");
        // Some customers favour nothing in particular.
        assert!(shop.customers.iter().any(|c| c.taste.brand.is_none()));
        // The same seed, the same tastes.
        let again = Shop::new(7, 300, start, end);
        assert!(
            again
                .customers
                .iter()
                .zip(&shop.customers)
                .all(|(a, b)| a.taste == b.taste)
        );
    }
}
