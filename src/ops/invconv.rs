//! Invertible 1x1 convolution (Glow / HCFlow `InvertibleConv1x1`):
//! `y = W x` per pixel, `logdet += log|det W| * H * W`; reverse applies
//! `W^-1` and subtracts. All matrix work (LU factors, determinant, inverse)
//! happens once on the host in f64.

use crate::gpu::{grid_1d, Dispatch, GpuContext, WG};
use crate::ops::flow::{self, FlowParams};
use crate::ops::reduce;
use crate::{Error, Result, Shape, Tensor};

/// A row-permuted LU factorisation `A[perm[i], :] = (L U)[i, :]`, `L` unit
/// lower triangular, `U` upper triangular (row-major `n x n`, f64).
#[derive(Clone, Debug)]
pub struct LuFactors {
    pub n: usize,
    pub perm: Vec<usize>,
    pub l: Vec<f64>,
    pub u: Vec<f64>,
}

impl LuFactors {
    /// Gaussian elimination with partial pivoting. A pivot below
    /// `n * eps * max|A|` means the matrix is singular to working precision.
    pub fn decompose(a: &[f64], n: usize) -> Result<LuFactors> {
        if n == 0 || a.len() != n * n {
            return Err(Error::Shape(format!("lu: {} values for a {n}x{n} matrix", a.len())));
        }
        if a.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument("lu: matrix has non-finite entries".into()));
        }
        let max_abs = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let tiny = n as f64 * f64::EPSILON * max_abs;
        let mut m = a.to_vec();
        let mut perm: Vec<usize> = (0..n).collect();
        for k in 0..n {
            let piv = (k..n).max_by(|&i, &j| m[i * n + k].abs().total_cmp(&m[j * n + k].abs())).unwrap();
            let piv_abs = m[piv * n + k].abs();
            if piv_abs.is_nan() || piv_abs <= tiny {
                return Err(Error::InvalidArgument(format!(
                    "invconv: the {n}x{n} weight is singular (pivot {:e} in column {k}); it has no inverse",
                    m[piv * n + k]
                )));
            }
            if piv != k {
                for j in 0..n {
                    m.swap(k * n + j, piv * n + j);
                }
                perm.swap(k, piv);
            }
            let d = m[k * n + k];
            for i in k + 1..n {
                let f = m[i * n + k] / d;
                m[i * n + k] = f;
                for j in k + 1..n {
                    m[i * n + j] -= f * m[k * n + j];
                }
            }
        }
        let mut l = vec![0.0; n * n];
        let mut u = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                if j < i {
                    l[i * n + j] = m[i * n + j];
                } else {
                    u[i * n + j] = m[i * n + j];
                }
            }
            l[i * n + i] = 1.0;
        }
        Ok(LuFactors { n, perm, l, u })
    }

    /// `log|det A|` = sum of `log|U_ii|`.
    pub fn logabsdet(&self) -> f64 {
        (0..self.n).map(|i| self.u[i * self.n + i].abs().ln()).sum()
    }

    /// Solve `A x = b` by permutation, forward and back substitution.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut y: Vec<f64> = self.perm.iter().map(|&p| b[p]).collect();
        for i in 0..n {
            let s: f64 = (0..i).map(|j| self.l[i * n + j] * y[j]).sum();
            y[i] -= s;
        }
        for i in (0..n).rev() {
            let s: f64 = (i + 1..n).map(|j| self.u[i * n + j] * y[j]).sum();
            y[i] = (y[i] - s) / self.u[i * n + i];
        }
        y
    }

    /// `A^-1` (row-major), one solve per column.
    pub fn inverse(&self) -> Vec<f64> {
        let n = self.n;
        let mut inv = vec![0.0; n * n];
        let mut e = vec![0.0; n];
        for j in 0..n {
            e.iter_mut().for_each(|v| *v = 0.0);
            e[j] = 1.0;
            for (i, v) in self.solve(&e).into_iter().enumerate() {
                inv[i * n + j] = v;
            }
        }
        inv
    }

    /// `A` rebuilt from the factors.
    pub fn product(&self) -> Vec<f64> {
        let n = self.n;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let s: f64 = (0..n).map(|k| self.l[i * n + k] * self.u[k * n + j]).sum();
                a[self.perm[i] * n + j] = s;
            }
        }
        a
    }
}

/// An invertible 1x1 convolution ready to run: `W` and `W^-1` on the GPU,
/// the f64 matrices and `log|det W|` on the host.
pub struct InvConv {
    /// `[W, W^-1]`, each input-major with the output index padded to a
    /// multiple of 4 (`m[i * cp + o]`), the layout kernels/flow.wgsl reads.
    params: Tensor,
    c: usize,
    logabsdet: f64,
    w: Vec<f64>,
    w_inv: Vec<f64>,
}

fn check_len(what: &str, v: &[f32], c: usize, want: usize) -> Result<()> {
    if v.len() != want {
        return Err(Error::Shape(format!("invconv: {what} has {} values, expected {want} for {c} channels", v.len())));
    }
    if let Some(x) = v.iter().find(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument(format!("invconv: {what} has a non-finite value {x}")));
    }
    Ok(())
}

impl InvConv {
    /// From the plain weight `W` (`[C, C]` row-major: `W[out][in]`, the
    /// official checkpoints' `permute.weight` with the 1x1 kernel dims dropped).
    /// Errors if `W` is singular.
    pub fn from_weight(ctx: &GpuContext, w: &[f32], c: usize) -> Result<InvConv> {
        if c == 0 {
            return Err(Error::Shape("invconv: zero channels".into()));
        }
        check_len("weight", w, c, c * c)?;
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        let lu = LuFactors::decompose(&w64, c)?;
        let w_inv = lu.inverse();
        Self::build(ctx, c, w64, w_inv, lu.logabsdet())
    }

    /// From Glow's LU parametrisation (`LU_decomposed=True`):
    /// `W = P L (U + diag(sign_s * exp(log_s)))`, where only the strictly lower
    /// part of `l` (unit diagonal implied) and the strictly upper part of `u`
    /// are used, as the official masks do. `p` must be a permutation matrix.
    /// `log|det W| = sum(log_s)`; `W^-1 = U'^-1 L^-1 P^T` by triangular solves.
    pub fn from_lu(
        ctx: &GpuContext,
        p: &[f32],
        l: &[f32],
        u: &[f32],
        log_s: &[f32],
        sign_s: &[f32],
        c: usize,
    ) -> Result<InvConv> {
        if c == 0 {
            return Err(Error::Shape("invconv: zero channels".into()));
        }
        check_len("p", p, c, c * c)?;
        check_len("l", l, c, c * c)?;
        check_len("u", u, c, c * c)?;
        check_len("log_s", log_s, c, c)?;
        check_len("sign_s", sign_s, c, c)?;
        // Row i of P^T W = L U' is row perm[i] of W, where P[perm[i]][i] = 1.
        let mut perm = vec![usize::MAX; c];
        let mut row_used = vec![false; c];
        for col in 0..c {
            for row in 0..c {
                let v = p[row * c + col];
                if v == 1.0 {
                    if perm[col] != usize::MAX || row_used[row] {
                        return Err(Error::InvalidArgument("invconv: p is not a permutation matrix".into()));
                    }
                    perm[col] = row;
                    row_used[row] = true;
                } else if v != 0.0 {
                    return Err(Error::InvalidArgument(format!("invconv: p is not a permutation matrix (entry {v})")));
                }
            }
        }
        if perm.contains(&usize::MAX) {
            return Err(Error::InvalidArgument("invconv: p is not a permutation matrix".into()));
        }
        let mut lm = vec![0.0; c * c];
        let mut um = vec![0.0; c * c];
        let mut logabsdet = 0.0;
        for i in 0..c {
            for j in 0..c {
                if j < i {
                    lm[i * c + j] = l[i * c + j] as f64;
                } else if j > i {
                    um[i * c + j] = u[i * c + j] as f64;
                }
            }
            lm[i * c + i] = 1.0;
            let s = sign_s[i] as f64 * (log_s[i] as f64).exp();
            if !(s.is_finite() && s != 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "invconv: diagonal {i} of U, sign_s * exp(log_s) = {s}, makes W singular or overflows"
                )));
            }
            um[i * c + i] = s;
            logabsdet += s.abs().ln();
        }
        let lu = LuFactors { n: c, perm, l: lm, u: um };
        let w = lu.product();
        let w_inv = lu.inverse();
        Self::build(ctx, c, w, w_inv, logabsdet)
    }

    fn build(ctx: &GpuContext, c: usize, w: Vec<f64>, w_inv: Vec<f64>, logabsdet: f64) -> Result<InvConv> {
        if let Some(v) = w.iter().chain(&w_inv).find(|v| !(v.is_finite() && v.abs() < f32::MAX as f64)) {
            return Err(Error::InvalidArgument(format!("invconv: W or its inverse has an entry {v} outside f32 range")));
        }
        let cp = c.div_ceil(4) * 4;
        let mut packed = vec![0.0f32; 2 * c * cp];
        for (m, mat) in [&w, &w_inv].into_iter().enumerate() {
            for o in 0..c {
                for i in 0..c {
                    packed[m * c * cp + i * cp + o] = mat[o * c + i] as f32;
                }
            }
        }
        let params = Tensor::from_slice(ctx, Shape::new(1, 2, c, cp), &packed)?;
        Ok(InvConv { params, c, logabsdet, w, w_inv })
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    /// `log|det W|` in f64.
    pub fn logabsdet(&self) -> f64 {
        self.logabsdet
    }

    /// `W` (row-major `[out][in]`, f64) as the layer applies it.
    pub fn weight_f64(&self) -> &[f64] {
        &self.w
    }

    /// `W^-1` computed in f64 from the LU factors.
    pub fn inverse_f64(&self) -> &[f64] {
        &self.w_inv
    }

    /// `out = W x` per pixel; `logdet += log|det W| * H * W`. `out` must not be `x`.
    pub fn forward(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        self.run(ctx, "invconv.forward", false, x, out, logdet)
    }

    /// `out = W^-1 x` per pixel; `logdet -= log|det W| * H * W`.
    pub fn reverse(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        self.run(ctx, "invconv.reverse", true, x, out, logdet)
    }

    fn run(&self, ctx: &GpuContext, op: &str, reverse: bool, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        let s = x.shape();
        if s.c() != self.c {
            return Err(Error::Shape(format!("{op}: input {s} has {} channels, the layer has {}", s.c(), self.c)));
        }
        if flow::check_out(op, x, out)? {
            return Err(Error::InvalidArgument(format!(
                "{op}: cannot run in place (every output channel reads every input channel); use a separate output"
            )));
        }
        if let Some(ld) = logdet {
            reduce::check_per_sample(op, "logdet", ld, s.n())?;
            flow::check_distinct(op, "logdet", ld, out)?;
            flow::check_distinct(op, "logdet", ld, x)?;
        }
        let c = self.c;
        let cp = c.div_ceil(4) * 4;
        // Pixel quads (flow.wgsl invconv4) when a vec4 stays in one channel.
        let quads = s.hw() % 4 == 0;
        let (entry, per_thread) = if quads { ("invconv4", 4) } else { ("invconv", 1) };
        let chunks = (s.hw() / per_thread).div_ceil(WG);
        let p = FlowParams { n: s.n(), c, hw: s.hw(), k: if reverse { c * cp } else { 0 }, parts: chunks, a: 0.0 };
        let groups = s.n() * c.div_ceil(4) * chunks;
        let pixels = (s.n() * s.hw()) as f64;
        let d = flow::call(ctx, entry, &[], &p, &[x.arg(), self.params.arg(), out.arg_mut()], grid_1d(groups))?
            .with_cost(2.0 * (c * c) as f64 * pixels, 8.0 * c as f64 * pixels + 4.0 * (c * cp) as f64);
        let mut ds = vec![d];
        if let Some(ld) = logdet {
            let dl = self.logabsdet * s.hw() as f64;
            ds.push(reduce::add_scalar_inplace(ctx, ld, (if reverse { -dl } else { dl }) as f32)?);
        }
        Ok(ds)
    }
}
