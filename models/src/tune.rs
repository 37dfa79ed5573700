//! ALS settings chosen per run on a validation split carved from the training data only:
//! 20% of each customer's products (seeded) are held out of the data given, a small grid of
//! regularisation and confidence scales is fitted on the rest, and the setting with the best
//! nDCG@K on the held-out products wins (ties: the configured one). The data given is never
//! the test split of an evaluation: `jobs recommend --evaluate` tunes on its training part.

use crate::als::{self, Interactions, Params};
use crate::metrics;
use crate::{Error, Result};

/// Share of each customer's products held out for validation.
pub const VALIDATION: f64 = 0.2;
/// Mixed into the seed of the validation split, so it never repeats an evaluation's split.
const SPLIT_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// The settings tried: every pair of a regularisation and an alpha.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    pub regularization: Vec<f32>,
    pub alpha: Vec<f32>,
}

impl Grid {
    /// The configured setting and a factor of 4 (regularisation) or 3 (alpha) either side:
    /// 9 fits, the configured one first.
    pub fn around(base: &Params) -> Grid {
        let r = base.regularization;
        let a = base.alpha;
        Grid {
            regularization: vec![r, r / 4.0, r * 4.0],
            alpha: vec![a, a / 3.0, a * 3.0],
        }
    }
}

/// One setting's validation score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trial {
    pub regularization: f32,
    pub alpha: f32,
    pub precision: f64,
    pub ndcg: f64,
}

/// The chosen setting and what every setting scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuned {
    pub params: Params,
    pub trials: Vec<Trial>,
    /// Customers with a held-out product.
    pub customers: usize,
}

/// Chooses the grid's best setting for `data` by nDCG@`k` on a validation split of it;
/// `None` when no customer has enough products to hold one out.
pub fn tune(data: &Interactions, base: Params, grid: &Grid, k: usize) -> Result<Option<Tuned>> {
    if grid.regularization.is_empty() || grid.alpha.is_empty() {
        return Err(Error::Input("an empty tuning grid".into()));
    }
    let (fit_part, held) = als::holdout(data, VALIDATION, base.seed ^ SPLIT_SALT);
    if held.iter().all(Vec::is_empty) {
        return Ok(None);
    }
    let mut trials = Vec::new();
    let mut best: Option<(f64, Params)> = None;
    let mut customers = 0;
    for &regularization in &grid.regularization {
        for &alpha in &grid.alpha {
            let p = Params {
                regularization,
                alpha,
                ..base
            };
            let model = als::fit(&p, &fit_part, |_| {})?;
            let lists = model.ranked_lists(&fit_part, k);
            let (r, n) = metrics::mean_ranking(&lists, &held, k);
            customers = n;
            trials.push(Trial {
                regularization,
                alpha,
                precision: r.precision,
                ndcg: r.ndcg,
            });
            if best.is_none_or(|(b, _)| r.ndcg > b) {
                best = Some((r.ndcg, p));
            }
        }
    }
    let (_, params) = best.expect("a non-empty grid");
    Ok(Some(Tuned {
        params,
        trials,
        customers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Customers of four tastes, each buying from its own quarter of the products, with a
    /// few random purchases as noise.
    fn tastes(customers: usize, products: usize) -> Interactions {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut cells = Vec::new();
        let quarter = products / 4;
        for u in 0..customers {
            let taste = u % 4;
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..12 {
                seen.insert((taste * quarter + rng.random_range(0..quarter)) as u32);
            }
            seen.insert(rng.random_range(0..products) as u32);
            for c in seen {
                cells.push((u as u32, c, 1.0));
            }
        }
        Interactions::from_triplets(customers, products, &cells).unwrap()
    }

    #[test]
    fn the_grid_is_tried_in_full_and_the_best_wins() {
        let data = tastes(200, 40);
        let base = Params {
            factors: 8,
            iterations: 8,
            ..Params::default()
        };
        let grid = Grid::around(&base);
        assert_eq!((grid.regularization[0], grid.alpha[0]), (0.25, 3.0));
        let t = tune(&data, base, &grid, 5).unwrap().unwrap();
        assert_eq!(t.trials.len(), 9);
        assert_eq!(t.customers, 200);
        let best = t.trials.iter().map(|t| t.ndcg).fold(f64::MIN, f64::max);
        let chosen = t
            .trials
            .iter()
            .find(|x| x.regularization == t.params.regularization && x.alpha == t.params.alpha)
            .unwrap();
        assert_eq!(chosen.ndcg, best);
        // Four clean tastes: far better than chance (5 of 40 products).
        assert!(best > 0.3, "{:?}", t.trials);
        // Everything else is the configured setting.
        assert_eq!((t.params.factors, t.params.iterations), (8, 8));
    }

    #[test]
    fn too_few_purchases_to_hold_out_is_none() {
        // One product per customer: 20% of 1 rounds to 0.
        let cells: Vec<(u32, u32, f32)> = (0..10).map(|u| (u, u % 3, 1.0)).collect();
        let data = Interactions::from_triplets(10, 3, &cells).unwrap();
        let base = Params::default();
        assert_eq!(tune(&data, base, &Grid::around(&base), 5).unwrap(), None);
        let empty = Grid {
            regularization: vec![],
            alpha: vec![1.0],
        };
        assert!(tune(&data, base, &empty, 5).is_err());
    }
}
