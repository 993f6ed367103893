//! ActNorm (Glow / HCFlow `ActNorm2d`) with fixed, loaded parameters:
//! forward `y = (x + bias) * exp(logs)` per channel, `logdet += sum(logs) * H * W`;
//! reverse `x = y * exp(-logs) - bias`, `logdet -= sum(logs) * H * W`.

use crate::gpu::{grid_1d, Dispatch, GpuContext, WG};
use crate::ops::flow::{self, FlowParams};
use crate::ops::reduce;
use crate::{Error, Result, Shape, Tensor};

/// ActNorm parameters resident on the GPU plus the host-side `sum(logs)`.
pub struct ActNorm {
    /// `[bias (c), exp(logs) (c), exp(-logs) (c)]`, exponentials taken in f64
    /// on the host so they are correctly rounded.
    params: Tensor,
    c: usize,
    sum_logs: f64,
}

impl ActNorm {
    /// `bias` and `logs` are the per-channel parameters (`[1, C, 1, 1]` in the
    /// checkpoint, flattened).
    pub fn new(ctx: &GpuContext, bias: &[f32], logs: &[f32]) -> Result<ActNorm> {
        let c = bias.len();
        if c == 0 || logs.len() != c {
            return Err(Error::Shape(format!(
                "actnorm: bias has {} values and logs {}; both need one per channel",
                bias.len(),
                logs.len()
            )));
        }
        if let Some(v) = bias.iter().chain(logs).find(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!("actnorm: parameter {v} is not finite")));
        }
        let mut packed = Vec::with_capacity(3 * c);
        packed.extend_from_slice(bias);
        packed.extend(logs.iter().map(|&l| (l as f64).exp() as f32));
        packed.extend(logs.iter().map(|&l| (-(l as f64)).exp() as f32));
        // Only the exponentials can overflow or underflow (a zero bias is fine).
        if let Some(v) = packed[c..].iter().find(|v| !v.is_finite() || **v == 0.0) {
            return Err(Error::InvalidArgument(format!("actnorm: exp(logs) overflows f32 ({v})")));
        }
        let params = Tensor::from_slice(ctx, Shape::new(1, 1, 3, c), &packed)?;
        let sum_logs = logs.iter().map(|&l| l as f64).sum();
        Ok(ActNorm { params, c, sum_logs })
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    /// `sum(logs)` over channels (f64).
    pub fn sum_logs(&self) -> f64 {
        self.sum_logs
    }

    /// The per-sample logdet change of a forward pass on `H x W` pixels.
    pub fn dlogdet(&self, h: usize, w: usize) -> f64 {
        self.sum_logs * (h * w) as f64
    }

    /// `out = (x + bias) * exp(logs)`; `logdet` (`[N, 1, 1, 1]`) `+= sum(logs) * H * W`.
    /// `out` may be `x` itself (in place).
    pub fn forward(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        self.run(ctx, "actnorm.forward", false, x, out, logdet)
    }

    /// `out = x * exp(-logs) - bias`; `logdet -= sum(logs) * H * W`. `out` may be `x`.
    pub fn reverse(&self, ctx: &GpuContext, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        self.run(ctx, "actnorm.reverse", true, x, out, logdet)
    }

    fn run(&self, ctx: &GpuContext, op: &str, reverse: bool, x: &Tensor, out: &Tensor, logdet: Option<&Tensor>) -> Result<Vec<Dispatch>> {
        let s = x.shape();
        if s.c() != self.c {
            return Err(Error::Shape(format!("{op}: input {s} has {} channels, the layer has {}", s.c(), self.c)));
        }
        let inplace = flow::check_out(op, x, out)?;
        if let Some(ld) = logdet {
            reduce::check_per_sample(op, "logdet", ld, s.n())?;
            flow::check_distinct(op, "logdet", ld, out)?;
            flow::check_distinct(op, "logdet", ld, x)?;
        }
        let p = FlowParams { n: s.n(), c: s.c(), hw: s.hw(), k: 0, parts: 0, a: 0.0 };
        let input = if inplace { self.params.arg() } else { x.arg() };
        let total = s.numel();
        // vec4 entry when every vec4 stays in one channel.
        let (entry, threads) = if s.hw() % 4 == 0 { ("actnorm4", total / 4) } else { ("actnorm", total) };
        let d = flow::call(
            ctx,
            entry,
            &[("REVERSE", flow::flag(reverse)), ("INPLACE", flow::flag(inplace))],
            &p,
            &[input, self.params.arg(), out.arg_mut()],
            grid_1d(threads.div_ceil(WG)),
        )?
        .with_cost(2.0 * total as f64, 8.0 * total as f64);
        let mut ds = vec![d];
        if let Some(ld) = logdet {
            let dl = self.dlogdet(s.h(), s.w());
            ds.push(reduce::add_scalar_inplace(ctx, ld, (if reverse { -dl } else { dl }) as f32)?);
        }
        Ok(ds)
    }
}
