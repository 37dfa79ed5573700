//! Implicit-feedback alternating least squares (Hu, Koren and Volinsky, 2008): preference 1
//! for every bought item, confidence `1 + alpha * quantity`, each side solved with a few
//! conjugate-gradient steps warm-started from the previous iteration (Takács, Pilászy and
//! Tikk, 2011). f32 throughout; rows are solved in parallel with rayon, and every row
//! depends only on the other side's factors, so a seed gives the same factors bit for bit
//! whatever the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

mod cg;

use cg::{Kernel, dot, solve_side};

/// A sparse customer x product matrix of purchase quantities (compressed rows, columns
/// sorted within a row, duplicates summed).
#[derive(Debug, Clone, PartialEq)]
pub struct Interactions {
    rows: usize,
    cols: usize,
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl Interactions {
    /// Builds the matrix from `(row, column, quantity)` triplets; repeated cells add up.
    /// Quantities must be finite and positive.
    pub fn from_triplets(rows: usize, cols: usize, triplets: &[(u32, u32, f32)]) -> Result<Self> {
        let mut count = vec![0usize; rows + 1];
        for &(r, c, v) in triplets {
            if r as usize >= rows || c as usize >= cols {
                return Err(Error::Input(format!(
                    "cell ({r}, {c}) outside a {rows} x {cols} matrix"
                )));
            }
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::Input(format!("cell ({r}, {c}) has quantity {v}")));
            }
            count[r as usize + 1] += 1;
        }
        for i in 0..rows {
            count[i + 1] += count[i];
        }
        let mut next = count.clone();
        let mut cells = vec![(0u32, 0f32); triplets.len()];
        for &(r, c, v) in triplets {
            let slot = &mut next[r as usize];
            cells[*slot] = (c, v);
            *slot += 1;
        }
        let mut indptr = Vec::with_capacity(rows + 1);
        let mut indices = Vec::with_capacity(cells.len());
        let mut values = Vec::with_capacity(cells.len());
        indptr.push(0);
        for r in 0..rows {
            let row = &mut cells[count[r]..count[r + 1]];
            row.sort_unstable_by_key(|&(c, _)| c);
            for &(c, v) in row.iter() {
                if indices.len() > indptr[r] && indices.last() == Some(&c) {
                    *values.last_mut().expect("pushed with indices") += v;
                } else {
                    indices.push(c);
                    values.push(v);
                }
            }
            indptr.push(indices.len());
        }
        Ok(Interactions {
            rows,
            cols,
            indptr,
            indices,
            values,
        })
    }

    /// Number of rows (customers).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (products).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of non-empty cells.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The columns of row `r`, ascending, and their quantities.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let span = self.indptr[r]..self.indptr[r + 1];
        (&self.indices[span.clone()], &self.values[span])
    }

    /// The transposed matrix (products x customers).
    pub fn transpose(&self) -> Interactions {
        let mut count = vec![0usize; self.cols + 1];
        for &c in &self.indices {
            count[c as usize + 1] += 1;
        }
        for i in 0..self.cols {
            count[i + 1] += count[i];
        }
        let mut next = count.clone();
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f32; self.nnz()];
        for r in 0..self.rows {
            let (cols, vals) = self.row(r);
            for (&c, &v) in cols.iter().zip(vals) {
                let slot = &mut next[c as usize];
                indices[*slot] = r as u32;
                values[*slot] = v;
                *slot += 1;
            }
        }
        Interactions {
            rows: self.cols,
            cols: self.rows,
            indptr: count,
            indices,
            values,
        }
    }
}

/// ALS hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Latent factors per customer and product.
    pub factors: usize,
    /// L2 regularisation (lambda).
    pub regularization: f32,
    /// Scale lambda by each row's number of purchases (ALS-WR, as Spark does), so that heavy
    /// buyers and best sellers are regularised in proportion to their data.
    pub scale_regularization: bool,
    /// Confidence per unit bought: `c = 1 + alpha * quantity`.
    pub alpha: f32,
    /// Alternating iterations (each solves customers, then products).
    pub iterations: usize,
    /// Conjugate-gradient steps per row and iteration.
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            factors: 32,
            regularization: 0.25,
            scale_regularization: true,
            alpha: 3.0,
            iterations: 15,
            cg_steps: 3,
            seed: 42,
        }
    }
}

/// Fitted factors: row `u` of `users` times row `i` of `items` scores product `i` for
/// customer `u`. Both are row-major with `factors` columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Als {
    /// Latent factors per row.
    pub factors: usize,
    /// Customer factors, `rows x factors`.
    pub users: Vec<f32>,
    /// Product factors, `cols x factors`.
    pub items: Vec<f32>,
}

/// Fits ALS to `data`; `on_iteration(i)` is called after iteration `i` (1-based) finishes.
pub fn fit(
    params: &Params,
    data: &Interactions,
    mut on_iteration: impl FnMut(usize),
) -> Result<Als> {
    let f = params.factors;
    if f == 0 || params.iterations == 0 {
        return Err(Error::Input(
            "ALS needs at least one factor and one iteration".into(),
        ));
    }
    if !(params.regularization >= 0.0 && params.alpha >= 0.0) {
        return Err(Error::Input(format!(
            "regularization {} and alpha {} must be >= 0",
            params.regularization, params.alpha
        )));
    }
    let by_item = data.transpose();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut users: Vec<f32> = (0..data.rows() * f)
        .map(|_| rng.random::<f32>() * 0.01)
        .collect();
    let mut items: Vec<f32> = (0..data.cols() * f)
        .map(|_| rng.random::<f32>() * 0.01)
        .collect();
    let kernel = Kernel::detect();
    for it in 1..=params.iterations {
        solve_side(&mut users, data, &items, params, kernel);
        solve_side(&mut items, &by_item, &users, params, kernel);
        on_iteration(it);
    }
    Ok(Als {
        factors: f,
        users,
        items,
    })
}

impl Als {
    /// Number of customers.
    pub fn rows(&self) -> usize {
        self.users.len() / self.factors
    }

    /// Scores of every product for customer `u`.
    pub fn scores(&self, u: usize) -> Vec<f32> {
        let f = self.factors;
        let xu = &self.users[u * f..(u + 1) * f];
        self.items.chunks_exact(f).map(|yi| dot(xu, yi)).collect()
    }

    /// The `k` best products for customer `u` with their scores, best first (ties: lower
    /// product index first), leaving out `bought` (ascending) unless `include_bought`.
    pub fn recommend(
        &self,
        u: usize,
        bought: &[u32],
        k: usize,
        include_bought: bool,
    ) -> Vec<(u32, f32)> {
        let exclude = if include_bought { &[][..] } else { bought };
        top_k(&self.scores(u), exclude, k)
    }
}

impl Als {
    /// Every customer's `k` best products (ids only, best first), leaving out what that row of
    /// `seen` holds: the lists a held-out evaluation scores.
    pub fn ranked_lists(&self, seen: &Interactions, k: usize) -> Vec<Vec<u32>> {
        (0..seen.rows())
            .map(|u| {
                self.recommend(u, seen.row(u).0, k, false)
                    .into_iter()
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect()
    }
}

/// The `k` highest scores, best first with ties broken by lower index, skipping `exclude`
/// (ascending).
pub fn top_k(scores: &[f32], exclude: &[u32], k: usize) -> Vec<(u32, f32)> {
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let mut cand: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .map(|(i, &s)| (i as u32, s))
        .filter(|(i, _)| exclude.binary_search(i).is_err())
        .collect();
    if k == 0 {
        return Vec::new();
    }
    if cand.len() > k {
        cand.select_nth_unstable_by(k - 1, order);
        cand.truncate(k);
    }
    cand.sort_unstable_by(order);
    cand
}

/// Products from most to least popular: by number of distinct customers, then by units
/// sold, then by lower index. This is the order of the cold-start rule.
pub fn popularity(data: &Interactions) -> Vec<u32> {
    let mut buyers = vec![0usize; data.cols()];
    let mut units = vec![0f64; data.cols()];
    for (&c, &v) in data.indices.iter().zip(&data.values) {
        buyers[c as usize] += 1;
        units[c as usize] += f64::from(v);
    }
    let mut order: Vec<u32> = (0..data.cols() as u32).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (a as usize, b as usize);
        buyers[b]
            .cmp(&buyers[a])
            .then(units[b].total_cmp(&units[a]))
            .then(a.cmp(&b))
    });
    order
}

/// The cold-start rule: the first `k` of `popular` (see [`popularity`]) not in `exclude`
/// (ascending).
pub fn cold_start(popular: &[u32], exclude: &[u32], k: usize) -> Vec<u32> {
    popular
        .iter()
        .copied()
        .filter(|i| exclude.binary_search(i).is_err())
        .take(k)
        .collect()
}

/// Holds out `fraction` of each customer's products (rounded to nearest; seeded): returns
/// the training matrix and, per customer, the held-out products ascending.
pub fn holdout(data: &Interactions, fraction: f64, seed: u64) -> (Interactions, Vec<Vec<u32>>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut train = Vec::with_capacity(data.nnz());
    let mut test = Vec::with_capacity(data.rows());
    for r in 0..data.rows() {
        let (cols, vals) = data.row(r);
        let n = cols.len();
        let hold = ((n as f64) * fraction).round() as usize;
        let mut pos: Vec<usize> = (0..n).collect();
        // Partial Fisher-Yates: the first `hold` positions are a uniform sample.
        for i in 0..hold.min(n) {
            let j = rng.random_range(i..n);
            pos.swap(i, j);
        }
        let mut held: Vec<u32> = pos[..hold].iter().map(|&i| cols[i]).collect();
        held.sort_unstable();
        for (&c, &v) in cols.iter().zip(vals) {
            if held.binary_search(&c).is_err() {
                train.push((r as u32, c, v));
            }
        }
        test.push(held);
    }
    let train = Interactions::from_triplets(data.rows(), data.cols(), &train)
        .expect("cells of a valid matrix stay valid");
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::mean_ranking;

    /// 400 customers in 4 tastes over 80 products in 4 groups: each customer buys 8 of
    /// their group's 20 products and one random other product.
    fn planted() -> Interactions {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut t = Vec::new();
        for u in 0..400u32 {
            let g = u % 4;
            let mut mine: Vec<u32> = (0..20).map(|i| g * 20 + i).collect();
            for i in 0..8 {
                let j = rng.random_range(i..20);
                mine.swap(i, j);
                t.push((u, mine[i], rng.random_range(1..4) as f32));
            }
            t.push((u, rng.random_range(0..80), 1.0));
        }
        Interactions::from_triplets(400, 80, &t).unwrap()
    }

    fn small_params() -> Params {
        Params {
            factors: 8,
            regularization: 0.05,
            scale_regularization: false,
            alpha: 2.0,
            iterations: 10,
            ..Params::default()
        }
    }

    #[test]
    fn triplets_are_summed_sorted_and_transposed() {
        let m = Interactions::from_triplets(
            2,
            3,
            &[(1, 2, 1.0), (0, 1, 2.0), (1, 0, 1.0), (1, 2, 3.0)],
        )
        .unwrap();
        assert_eq!(m.row(0), (&[1u32][..], &[2.0f32][..]));
        assert_eq!(m.row(1), (&[0u32, 2][..], &[1.0f32, 4.0][..]));
        assert_eq!(m.nnz(), 3);
        let t = m.transpose();
        assert_eq!((t.rows(), t.cols()), (3, 2));
        assert_eq!(t.row(2), (&[1u32][..], &[4.0f32][..]));
        assert_eq!(t.transpose(), m);
        assert!(Interactions::from_triplets(1, 1, &[(0, 1, 1.0)]).is_err());
        assert!(Interactions::from_triplets(1, 1, &[(0, 0, -1.0)]).is_err());
    }

    #[test]
    fn recovers_a_planted_structure_and_ranks_held_out_items_above_random() {
        let data = planted();
        let (train, test) = holdout(&data, 0.25, 5);
        let model = fit(&small_params(), &train, |_| {}).unwrap();
        let lists = model.ranked_lists(&train, 10);
        let (als, n) = mean_ranking(&lists, &test, 10);
        assert!(n > 350, "{n} customers evaluated");
        // Random ranking of the ~71 unseen products hits ~2/71 per slot: P@10 ~ 0.03.
        // Each customer's own 12 unseen group products hold almost all held-out items.
        assert!(als.precision > 0.12, "P@10 {:.3}", als.precision);
        assert!(als.ndcg > 0.3, "nDCG@10 {:.3}", als.ndcg);
        // Every top-10 list stays (mostly) inside the customer's group.
        let inside: usize = lists
            .iter()
            .enumerate()
            .map(|(u, l)| l.iter().filter(|&&i| i / 20 == u as u32 % 4).count())
            .sum();
        assert!(
            inside as f64 > 0.9 * 4000.0,
            "{inside} of 4000 in the customer's group"
        );
    }

    #[test]
    fn same_seed_same_factors_whatever_the_thread_count() {
        let data = planted();
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fit(&small_params(), &data, |_| {}).unwrap())
        };
        let (one, two) = (run(1), run(2));
        assert_eq!(one, two);
        let other = fit(
            &Params {
                seed: 43,
                ..small_params()
            },
            &data,
            |_| {},
        )
        .unwrap();
        assert_ne!(one, other);
    }

    #[test]
    fn scaled_regularisation_is_deterministic_and_still_recovers_the_structure() {
        let data = planted();
        let (train, test) = holdout(&data, 0.25, 5);
        let p = Params {
            factors: 8,
            regularization: 0.25,
            scale_regularization: true,
            iterations: 10,
            ..Params::default()
        };
        let model = fit(&p, &train, |_| {}).unwrap();
        assert_eq!(model, fit(&p, &train, |_| {}).unwrap());
        assert_ne!(
            model,
            fit(
                &Params {
                    scale_regularization: false,
                    ..p
                },
                &train,
                |_| {}
            )
            .unwrap()
        );
        let lists = model.ranked_lists(&train, 10);
        let (r, _) = mean_ranking(&lists, &test, 10);
        assert!(r.precision > 0.12, "P@10 {:.3}", r.precision);
    }

    #[test]
    fn bought_items_are_left_out_unless_asked() {
        let data = planted();
        let model = fit(&small_params(), &data, |_| {}).unwrap();
        for u in [0, 1, 2, 3, 97] {
            let bought = data.row(u).0;
            let recs = model.recommend(u, bought, 20, false);
            assert_eq!(recs.len(), 20);
            assert!(recs.iter().all(|(i, _)| bought.binary_search(i).is_err()));
            assert!(recs.windows(2).all(|w| w[0].1 >= w[1].1));
            // Exactly the full ranking with the purchases taken out.
            let all = model.recommend(u, bought, 80, true);
            assert_eq!(all.len(), 80);
            let filtered: Vec<(u32, f32)> = all
                .into_iter()
                .filter(|(i, _)| bought.binary_search(i).is_err())
                .take(20)
                .collect();
            assert_eq!(recs, filtered);
        }
    }

    #[test]
    fn cold_start_is_popularity_in_a_stated_order() {
        // Product 2: 2 buyers; product 0: 2 buyers but fewer units; 1 and 3: 1 buyer, tie on
        // units -> lower index first; 4: nobody.
        let m = Interactions::from_triplets(
            3,
            5,
            &[
                (0, 2, 1.0),
                (1, 2, 5.0),
                (0, 0, 1.0),
                (2, 0, 1.0),
                (1, 3, 2.0),
                (2, 1, 2.0),
            ],
        )
        .unwrap();
        let pop = popularity(&m);
        assert_eq!(pop, vec![2, 0, 1, 3, 4]);
        assert_eq!(cold_start(&pop, &[], 3), vec![2, 0, 1]);
        assert_eq!(cold_start(&pop, &[0, 2], 3), vec![1, 3, 4]);
    }

    #[test]
    fn top_k_breaks_ties_by_index() {
        let s = [0.5, 0.9, 0.5, 0.9, 0.1];
        assert_eq!(top_k(&s, &[], 3), vec![(1, 0.9), (3, 0.9), (0, 0.5)]);
        assert_eq!(top_k(&s, &[1], 2), vec![(3, 0.9), (0, 0.5)]);
        assert_eq!(top_k(&s, &[], 10).len(), 5);
        assert!(top_k(&s, &[], 0).is_empty());
    }

    #[test]
    fn holdout_is_seeded_and_disjoint() {
        let data = planted();
        let (train, test) = holdout(&data, 0.2, 9);
        let (train2, test2) = holdout(&data, 0.2, 9);
        assert_eq!((&train, &test), (&train2, &test2));
        assert_eq!(
            train.nnz() + test.iter().map(Vec::len).sum::<usize>(),
            data.nnz()
        );
        for (u, held) in test.iter().enumerate() {
            assert_eq!(
                held.len(),
                (data.row(u).0.len() as f64 * 0.2).round() as usize
            );
            assert!(
                held.iter()
                    .all(|i| train.row(u).0.binary_search(i).is_err())
            );
        }
    }
}
