//! The row solve of ALS: `Y'Y`, then a few conjugate-gradient steps per row, with the SIMD
//! kernel chosen once per fit from what the CPU offers (AVX-512, AVX2 with FMA, or plain).

use rayon::prelude::*;

use super::{Interactions, Params};

/// Rows of the other side summed per task when forming `Y'Y`. A fixed size, not one per
/// thread: the partial sums are added in the same order whatever the thread count, so a seed
/// still gives the same factors bit for bit.
const GRAM_CHUNK: usize = 2048;

/// `Y'Y + reg * I`, row-major `f x f`, summed in f64 in a fixed order (upper triangle, then
/// mirrored).
fn gram(y: &[f32], f: usize, reg: f32) -> Vec<f32> {
    let partials: Vec<Vec<f64>> = y
        .par_chunks(GRAM_CHUNK * f)
        .map(|block| {
            let mut g = vec![0f64; f * f];
            for row in block.chunks_exact(f) {
                for i in 0..f {
                    let a = f64::from(row[i]);
                    let gi = &mut g[i * f + i..(i + 1) * f];
                    for (gij, &b) in gi.iter_mut().zip(&row[i..]) {
                        *gij += a * f64::from(b);
                    }
                }
            }
            g
        })
        .collect();
    let mut g = vec![0f64; f * f];
    for part in &partials {
        for (gij, &p) in g.iter_mut().zip(part) {
            *gij += p;
        }
    }
    for i in 0..f {
        for j in 0..i {
            g[i * f + j] = g[j * f + i];
        }
        g[i * f + i] += f64::from(reg);
    }
    g.into_iter().map(|v| v as f32).collect()
}

/// The code path of the row solve. Every row of a fit takes the same one, so results do not
/// depend on the thread count; they differ in the last bits between paths (FMA rounds once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Portable code (128-bit vectors on baseline x86-64), separate multiply and add.
    Plain,
    /// 256-bit vectors with fused multiply-add.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// 512-bit vectors with fused multiply-add.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The widest path this CPU runs.
    pub(super) fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") && has!("fma") {
                return Kernel::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Kernel::Avx2;
            }
        }
        Kernel::Plain
    }

    /// Every path this CPU runs, the widest first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Kernel> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if Kernel::detect() == Kernel::Avx512 {
                all.push(Kernel::Avx512);
            }
            if Kernel::detect() != Kernel::Plain {
                all.push(Kernel::Avx2);
            }
        }
        all.push(Kernel::Plain);
        all
    }
}

/// Solves every row of `x` against the other side's factors `y`.
pub(super) fn solve_side(
    x: &mut [f32],
    data: &Interactions,
    y: &[f32],
    p: &Params,
    kernel: Kernel,
) {
    let f = p.factors;
    let reg = if p.scale_regularization {
        0.0
    } else {
        p.regularization
    };
    let a = gram(y, f, reg);
    x.par_chunks_mut(f).enumerate().for_each_init(
        || vec![0f32; 3 * f],
        |scratch, (r, xr)| {
            let (cols, vals) = data.row(r);
            if cols.is_empty() {
                xr.fill(0.0);
            } else {
                solve_row(kernel, xr, cols, vals, y, &a, p, scratch);
            }
        },
    );
}

/// One row's conjugate-gradient steps on the given path; `scratch` holds `3 * f` floats.
/// The usual factor counts (16, 32, 64, 128) get code compiled for their length, which keeps
/// a row's vectors in registers.
#[allow(clippy::too_many_arguments)]
pub(super) fn solve_row(
    kernel: Kernel,
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    scratch: &mut [f32],
) {
    match x.len() {
        16 => solve_row_sized::<16>(kernel, x, cols, vals, y, a, p, scratch),
        32 => solve_row_sized::<32>(kernel, x, cols, vals, y, a, p, scratch),
        64 => solve_row_sized::<64>(kernel, x, cols, vals, y, a, p, scratch),
        128 => solve_row_sized::<128>(kernel, x, cols, vals, y, a, p, scratch),
        _ => solve_row_sized::<0>(kernel, x, cols, vals, y, a, p, scratch),
    }
}

/// [`solve_row`] for `F` factors (`0`: any number, known only at run time).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn solve_row_sized<const F: usize>(
    kernel: Kernel,
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    scratch: &mut [f32],
) {
    match kernel {
        Kernel::Plain => cg_row::<F, Plain>(x, cols, vals, y, a, p, scratch),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::detect` chose this path only where the CPU reports AVX2 and FMA.
        Kernel::Avx2 => unsafe { cg_avx2::<F>(x, cols, vals, y, a, p, scratch) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::detect` chose this path only where the CPU reports AVX-512F/VL and
        // FMA.
        Kernel::Avx512 => unsafe { cg_avx512::<F>(x, cols, vals, y, a, p, scratch) },
    }
}

/// [`cg_row`] compiled for AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cg_avx2<const F: usize>(
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    scratch: &mut [f32],
) {
    cg_row::<F, x86::Avx2>(x, cols, vals, y, a, p, scratch)
}

/// [`cg_row`] compiled for AVX-512 with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
fn cg_avx512<const F: usize>(
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    scratch: &mut [f32],
) {
    cg_row::<F, x86::Avx512>(x, cols, vals, y, a, p, scratch)
}

/// The row's working vectors: on the stack for a length known when compiling (so they can
/// live in registers), else in `scratch`.
#[inline(always)]
fn cg_row<const F: usize, O: Ops>(
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    scratch: &mut [f32],
) {
    if F == 0 {
        let f = x.len();
        let (r, rest) = scratch.split_at_mut(f);
        let (dir, ad) = rest.split_at_mut(f);
        conjugate_gradient::<O>(f, x, cols, vals, y, a, p, r, dir, ad);
    } else {
        let x: &mut [f32; F] = x.try_into().expect("a row of F factors");
        let (mut r, mut dir, mut ad) = ([0f32; F], [0f32; F], [0f32; F]);
        conjugate_gradient::<O>(F, x, cols, vals, y, a, p, &mut r, &mut dir, &mut ad);
    }
}

/// A few CG steps on `(Y'Y + reg I + Y' (C - I) Y) x = Y' C p` from the current `x`
/// (warm start), with the vector operations of `O`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn conjugate_gradient<O: Ops>(
    f: usize,
    x: &mut [f32],
    cols: &[u32],
    vals: &[f32],
    y: &[f32],
    a: &[f32],
    p: &Params,
    r: &mut [f32],
    dir: &mut [f32],
    ad: &mut [f32],
) {
    // With ALS-WR the row's own lambda * n goes on the diagonal (`a` has none).
    let own_reg = if p.scale_regularization {
        p.regularization * cols.len() as f32
    } else {
        0.0
    };
    // r = b - A x
    for (o, row) in r.iter_mut().zip(a.chunks_exact(f)) {
        *o = -O::dot(row, x);
    }
    O::axpy(-own_reg, x, r);
    // The first pass over the row's products meets their factors in memory, the later
    // passes in cache: fetch a few rows ahead.
    for (k, (&c, &q)) in cols.iter().zip(vals).enumerate() {
        if let Some(&next) = cols.get(k + PREFETCH_AHEAD) {
            O::prefetch(&y[next as usize * f..(next as usize + 1) * f]);
        }
        let conf = 1.0 + p.alpha * q;
        let yi = &y[c as usize * f..(c as usize + 1) * f];
        O::axpy(conf - (conf - 1.0) * O::dot(yi, x), yi, r);
    }
    dir.copy_from_slice(r);
    let mut rs = O::dot(r, r);
    for _ in 0..p.cg_steps {
        if rs < 1e-20 {
            break;
        }
        for (o, row) in ad.iter_mut().zip(a.chunks_exact(f)) {
            *o = O::dot(row, dir);
        }
        O::axpy(own_reg, dir, ad);
        for (&c, &q) in cols.iter().zip(vals) {
            let yi = &y[c as usize * f..(c as usize + 1) * f];
            O::axpy(p.alpha * q * O::dot(yi, dir), yi, ad);
        }
        let step = rs / O::dot(dir, ad);
        O::axpy(step, dir, x);
        O::axpy(-step, ad, r);
        let rs_new = O::dot(r, r);
        let beta = rs_new / rs;
        for (d, &ri) in dir.iter_mut().zip(r.iter()) {
            *d = ri + beta * *d;
        }
        rs = rs_new;
    }
}

/// How many products ahead the first pass asks for a row of factors.
const PREFETCH_AHEAD: usize = 4;

/// The vector operations of the row solve.
trait Ops {
    /// A hint that `row` is read soon (default: none).
    #[inline(always)]
    fn prefetch(_row: &[f32]) {}

    /// `a . b`
    fn dot(a: &[f32], b: &[f32]) -> f32;
    /// `y += alpha * x`
    fn axpy(alpha: f32, x: &[f32], y: &mut [f32]);
}

/// Portable code: what the compiler vectorises for the baseline target.
struct Plain;

impl Ops for Plain {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }

    #[inline(always)]
    fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        for (yi, &xi) in y.iter_mut().zip(x) {
            *yi += alpha * xi;
        }
    }
}

/// Dot product with eight independent accumulators, so that it vectorises on any target.
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The x86-64 vector paths, written with intrinsics: the compiler's own vectorisation of the
/// portable code splits a 64-float dot product into 2-float pieces.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::Ops;

    /// 256-bit vectors with FMA.
    pub(super) struct Avx2;

    /// 512-bit vectors with FMA.
    pub(super) struct Avx512;

    impl Ops for Avx2 {
        #[inline(always)]
        fn prefetch(row: &[f32]) {
            prefetch_lines(row)
        }

        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: only reached from `cg_avx2`, which runs where the CPU has AVX2 and FMA.
            unsafe { dot_avx2(a, b) }
        }

        #[inline(always)]
        fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
            // SAFETY: as for `dot`.
            unsafe { axpy_avx2(alpha, x, y) }
        }
    }

    impl Ops for Avx512 {
        #[inline(always)]
        fn prefetch(row: &[f32]) {
            prefetch_lines(row)
        }

        #[inline(always)]
        fn dot(a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: only reached from `cg_avx512`, which runs where the CPU has AVX-512F
            // and FMA.
            unsafe { dot_avx512(a, b) }
        }

        #[inline(always)]
        fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
            // SAFETY: as for `dot`.
            unsafe { axpy_avx512(alpha, x, y) }
        }
    }

    /// Asks for every 64-byte line of `row`.
    #[inline(always)]
    fn prefetch_lines(row: &[f32]) {
        for line in row.chunks(16) {
            // SAFETY: a prefetch is a hint; it never faults, and the pointer is in `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at `i`, `i + 8 <= n`.
        unsafe {
            while i + 16 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                acc[1] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i + 8)),
                    _mm256_loadu_ps(pb.add(i + 8)),
                    acc[1],
                );
                i += 16;
            }
            if i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(
                    _mm256_loadu_ps(pa.add(i)),
                    _mm256_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 8;
            }
        }
        let v = _mm256_add_ps(acc[0], acc[1]);
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_movehdup_ps(h));
        let mut s = _mm_cvtss_f32(h);
        while i < n {
            s = a[i].mul_add(b[i], s);
            i += 1;
        }
        s
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn axpy_avx2(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        // SAFETY: every access covers 8 floats at `i`, `i + 8 <= n`.
        unsafe {
            while i + 8 <= n {
                let v = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
                _mm256_storeu_ps(py.add(i), v);
                i += 8;
            }
        }
        while i < n {
            y[i] = alpha.mul_add(x[i], y[i]);
            i += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        // SAFETY: every full load reads 16 floats at `i`, `i + 16 <= n`; the last one is
        // masked to the `n - i` that are left.
        unsafe {
            while i + 32 <= n {
                acc[0] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pb.add(i)),
                    acc[0],
                );
                acc[1] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i + 16)),
                    _mm512_loadu_ps(pb.add(i + 16)),
                    acc[1],
                );
                i += 32;
            }
            if i + 16 <= n {
                acc[0] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(pa.add(i)),
                    _mm512_loadu_ps(pb.add(i)),
                    acc[0],
                );
                i += 16;
            }
            if i < n {
                let m: __mmask16 = (1u16 << (n - i)) - 1;
                acc[1] = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm512_maskz_loadu_ps(m, pb.add(i)),
                    acc[1],
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    fn axpy_avx512(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm512_set1_ps(alpha);
        let mut i = 0;
        // SAFETY: every full access covers 16 floats at `i`, `i + 16 <= n`; the last one is
        // masked to the `n - i` that are left.
        unsafe {
            while i + 16 <= n {
                let v = _mm512_fmadd_ps(va, _mm512_loadu_ps(px.add(i)), _mm512_loadu_ps(py.add(i)));
                _mm512_storeu_ps(py.add(i), v);
                i += 16;
            }
            if i < n {
                let m: __mmask16 = (1u16 << (n - i)) - 1;
                let v = _mm512_fmadd_ps(
                    va,
                    _mm512_maskz_loadu_ps(m, px.add(i)),
                    _mm512_maskz_loadu_ps(m, py.add(i)),
                );
                _mm512_mask_storeu_ps(py.add(i), m, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn dot_sums_every_length_exactly_enough() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 64, 70, 100] {
            let a: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            let exact: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum();
            assert!((f64::from(dot(&a, &b)) - exact).abs() < 1e-5, "length {n}");
        }
    }

    #[test]
    fn every_kernel_solves_the_same_row() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for f in [8, 16, 20, 32, 64, 128] {
            let items = 50;
            let y: Vec<f32> = (0..items * f)
                .map(|_| rng.random_range(-0.5..0.5))
                .collect();
            let cols: Vec<u32> = (0..items as u32).step_by(3).collect();
            let vals: Vec<f32> = cols.iter().map(|_| rng.random_range(1.0..4.0)).collect();
            let p = Params {
                factors: f,
                cg_steps: 8,
                ..Params::default()
            };
            let a = gram(&y, f, 0.0);
            let start: Vec<f32> = (0..f).map(|_| rng.random_range(-0.1..0.1)).collect();
            let solved: Vec<Vec<f32>> = Kernel::available()
                .into_iter()
                .map(|k| {
                    let mut x = start.clone();
                    let mut scratch = vec![0f32; 3 * f];
                    solve_row(k, &mut x, &cols, &vals, &y, &a, &p, &mut scratch);
                    x
                })
                .collect();
            for other in &solved[1..] {
                for (u, v) in solved[0].iter().zip(other) {
                    assert!((u - v).abs() < 1e-3 * (1.0 + u.abs()), "f {f}: {u} vs {v}");
                }
            }
            assert_ne!(solved[0], start);
        }
    }

    #[test]
    fn gram_is_symmetric_and_adds_the_regularisation() {
        let y: Vec<f32> = (0..5000 * 3).map(|i| (i % 7) as f32 - 3.0).collect();
        let g = gram(&y, 3, 2.0);
        let mut exact = [0f64; 9];
        for row in y.chunks_exact(3) {
            for i in 0..3 {
                for j in 0..3 {
                    exact[i * 3 + j] += f64::from(row[i]) * f64::from(row[j]);
                }
            }
        }
        for i in 0..3 {
            exact[i * 3 + i] += 2.0;
        }
        for (a, b) in g.iter().zip(exact) {
            assert_eq!(f64::from(*a), b);
        }
    }
}
