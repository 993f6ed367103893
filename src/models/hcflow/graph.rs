//! HCFlow graphs: the building blocks (coupling nets, RRDB trunk, flow steps,
//! conditional features, priors) and the four passes, in exactly the op order
//! of tools/README.md (which documents the official model).

use crate::graph::ops::conv::Conv;
use crate::graph::ops::flow::Dir;
use crate::graph::ops::winograd::WinogradFeatures;
use crate::graph::ops::Scalar;
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::conv::{Activation, Conv2dParams};
use crate::ops::coupling::GaussianScale;
use crate::{Error, Result, Shape};

use super::config::{Coupling, CouplingNet, CouplingType, HcflowConfig, Squeeze, Task};

/// Names of graph inputs, outputs and parameters shared with `mod.rs`.
pub const HEAT: &str = "heat";

pub fn eps_name(l: usize) -> String {
    format!("eps{l}")
}

struct Ctx<'g, 'c> {
    g: &'g mut GraphBuilder<'c>,
    cfg: &'g HcflowConfig,
    /// While a level's split steps and prior are built: its conditional
    /// features transformed once into a Winograd buffer (`share_cond`), and
    /// their channel count, after which each coupling pushes its own z1.
    cond_v: Option<(WinogradFeatures, usize)>,
}

impl Ctx<'_, '_> {
    /// Build a conditional network (features, coupling nets, priors) in the
    /// graph's precision. Everything else (the flow's own tensors: inputs,
    /// latents, every flow step's state, the output) is f32: f16 there moved
    /// the tiny fixtures' HR by up to 1.4 levels, while the nets hold nearly
    /// all of the memory and bandwidth.
    fn net<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let p = self.g.precision();
        self.stored_as(p, f)
    }

    /// A net's output layer, read by the flow (coupling shift / scale, prior
    /// mean / scale): f32 with f32 weights, since its rounding moves the
    /// flow's state directly (the rescaling fixture's HR by 1.1 levels).
    fn head<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.stored_as(crate::Dtype::F32, f)
    }

    /// Run `f` with new tensors and weights stored as `dtype`, then restore.
    fn stored_as<T>(&mut self, dtype: crate::Dtype, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let prev = self.g.set_storage(dtype)?;
        let r = f(self);
        self.g.set_storage(prev)?;
        r
    }

    /// A pass's context: flow tensors f32 (see [`Ctx::net`]).
    fn new<'g, 'c>(g: &'g mut GraphBuilder<'c>, cfg: &'g HcflowConfig) -> Result<Ctx<'g, 'c>> {
        g.set_storage(crate::Dtype::F32)?;
        Ok(Ctx { g, cfg, cond_v: None })
    }

    fn vec(&self, node: &str, key: &str, n: usize) -> Result<Vec<f32>> {
        let w = self.g.weight(node, key, None)?;
        if w.numel() != n {
            return Err(Error::Weights(format!("node '{node}': {key} has shape {:?}, expected {n} values", w.shape)));
        }
        Ok(w.data.clone())
    }

    /// Conv (no bias) followed by ActNorm and an activation, folded into the
    /// conv epilogue: act((conv(x) + an.bias) * exp(an.logs)). `x`: the
    /// channel parts of the input (never concatenated, see `conv2d_cat`).
    fn conv_actnorm(&mut self, x: &[TensorId], p: &str, k: usize, act: Activation) -> Result<TensorId> {
        let w = self.g.weight(p, &format!("{p}.weight"), None)?;
        let cout = w.shape.first().copied().unwrap_or(0);
        if w.shape.len() != 4 || w.shape[2] != k || w.shape[3] != k {
            return Err(Error::Weights(format!("{p}.weight has shape {:?}, expected [_, _, {k}, {k}]", w.shape)));
        }
        let (bias, scale) = self.actnorm_epilogue(p, cout)?;
        let c = Conv { params: Conv2dParams::new(1, (k - 1) / 2), ..Default::default() }.act(act);
        self.g.conv2d_cat_with(p, x, w, Some(&bias), Some(&scale), c)
    }

    /// The folded ActNorm of conv `p` as a conv epilogue: bias, exp(logs).
    fn actnorm_epilogue(&self, p: &str, cout: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let bias = self.vec(p, &format!("{p}.actnorm.bias"), cout)?;
        let scale = self.vec(p, &format!("{p}.actnorm.logs"), cout)?.iter().map(|l| l.exp()).collect();
        Ok((bias, scale))
    }

    /// Conv2dZeros `p`'s epilogue: bias, exp(factor * logs).
    fn zeros_epilogue(&self, p: &str, cout: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let bias = self.vec(p, &format!("{p}.bias"), cout)?;
        let f = self.cfg.conv_zeros_logscale;
        let scale = self.vec(p, &format!("{p}.logs"), cout)?.iter().map(|l| (f * l).exp()).collect();
        Ok((bias, scale))
    }

    /// Glow's Conv2dZeros: (conv3x3(x) + bias) * exp(factor * logs), `x` in channel parts.
    fn conv_zeros(&mut self, x: &[TensorId], p: &str) -> Result<TensorId> {
        let w = self.g.weight(p, &format!("{p}.weight"), None)?;
        let cout = w.shape.first().copied().unwrap_or(0);
        let (bias, scale) = self.zeros_epilogue(p, cout)?;
        // Every Conv2dZeros is a head (the Fcn coupling nets' last layer, the priors).
        self.head(|c| c.g.conv2d_cat_with(p, x, w, Some(&bias), Some(&scale), Conv::same(3)))
    }

    fn lrelu(&self) -> Activation {
        Activation::LeakyRelu(self.cfg.lrelu_slope)
    }

    /// ESRGAN dense block on the channel parts `x` of its input; with
    /// `residual` (r, x0), conv5's output is `r*y + x0` (the RDB). Conv j
    /// reads cat(x, x1, .., x_{j-1}) as parts: no concat. Where the five
    /// convs run as Winograd, each feature is transformed once for all of
    /// them (`winograd_features`), else each conv is a `conv2d_cat`; the
    /// same bits either way.
    fn dense_block(&mut self, x: &[TensorId], p: &str, residual: Option<(f32, TensorId)>) -> Result<TensorId> {
        let conv = |j: usize| format!("{p}.conv{j}");
        let conv5 = conv(5);
        let shapes: Option<Vec<[usize; 4]>> = (1..=5)
            .map(|j| self.g.weight(&conv(j), &format!("{}.weight", conv(j)), None).ok().and_then(|w| <[usize; 4]>::try_from(w.shape.as_slice()).ok()))
            .collect();
        let shared = match (&shapes, x) {
            (Some(shapes), [x0, ..]) => self.g.winograd_features(&format!("{p}.features"), *x0, shapes[4][1], shapes, 1)?,
            _ => None,
        };
        let Some(mut f) = shared else {
            let mut feats = x.to_vec();
            for j in 1..=4 {
                let y = self.g.conv2d_cat(&conv(j), &feats, &conv(j), Conv::same(3).act(self.lrelu()))?;
                feats.push(y);
            }
            return match residual {
                // An RDB's output is the trunk's residual stream: f32 (see `features`).
                Some((r, x0)) => self.head(|c| c.g.conv2d_cat(&conv5, &feats, &conv5, Conv::same(3).residual(x0, r, 1.0))),
                // Without a residual it is a coupling net, whose conv5 is its head.
                None => self.head(|c| c.g.conv2d_cat(&conv5, &feats, &conv5, Conv::same(3))),
            };
        };
        for (i, &part) in x.iter().enumerate().skip(1) {
            self.g.winograd_features_push(&format!("{p}.features.part{i}"), &mut f, part)?;
        }
        for j in 1..=4 {
            let y = self.g.conv2d_features_from(&conv(j), &f, &conv(j), Conv::same(3).act(self.lrelu()))?;
            self.g.winograd_features_push(&format!("{p}.features.x{j}"), &mut f, y)?;
        }
        match residual {
            Some((r, x0)) => self.head(|c| c.g.conv2d_features_from(&conv5, &f, &conv5, Conv::same(3).residual(x0, r, 1.0))),
            None => self.head(|c| c.g.conv2d_features_from(&conv5, &f, &conv5, Conv::same(3))),
        }
    }

    /// RRDB: RDB3(RDB2(RDB1(x))) * 0.2 + x.
    fn rrdb(&mut self, x: TensorId, p: &str) -> Result<TensorId> {
        let r = self.cfg.rrdb_residual_scale;
        let mut y = x;
        for i in 1..=3 {
            y = self.dense_block(&[y], &format!("{p}.RDB{i}"), Some((r, y)))?;
        }
        self.head(|c| c.g.axpby(&format!("{p}.res"), y, x, r, 1.0))
    }

    fn trunk(&mut self, x: TensorId, p: &str, n: usize) -> Result<TensorId> {
        let mut y = x;
        for i in 0..n {
            y = self.rrdb(y, &format!("{p}.{i}"))?;
        }
        Ok(y)
    }

    /// The coupling network on the channel parts `x` of its input.
    fn coupling_net(&mut self, x: &[TensorId], p: &str, net: CouplingNet) -> Result<TensorId> {
        match net {
            CouplingNet::Fcn { kernel_hidden, .. } => {
                let h = self.conv_actnorm(x, &format!("{p}.conv1"), 3, Activation::Relu)?;
                let h = self.conv_actnorm(&[h], &format!("{p}.conv2"), kernel_hidden, Activation::Relu)?;
                self.conv_zeros(&[h], &format!("{p}.conv3"))
            }
            CouplingNet::DenseBlock { .. } => self.dense_block(x, p, None),
        }
    }

    /// The coupling of a flow step (`k` = position within its level's main
    /// steps, which selects the affine3shift variant; `cond`: the
    /// conditional features' channel parts).
    #[allow(clippy::too_many_arguments)]
    fn coupling(
        &mut self,
        z: TensorId,
        p: &str,
        cp: Coupling,
        k: usize,
        cond: Option<&[TensorId]>,
        logdet: Option<TensorId>,
        dir: Dir,
    ) -> Result<(TensorId, Option<TensorId>)> {
        let c = self.g.shape(z)?.c();
        let net_p = format!("{p}.affine.f");
        if cp.kind == CouplingType::Affine3Shift && k % 2 == 1 {
            // z[0:3) +/-= net(z[3:C)); volume preserving.
            let rest = self.g.slice_channels(&format!("{p}.rest"), z, 3, 1, c - 3)?;
            let shift = self.net(|c| c.coupling_net(&[rest], &net_p, cp.net))?;
            let y = self.g.additive_coupling(&format!("{p}.additive"), z, shift, dir)?;
            return Ok((y, logdet));
        }
        let split = if cp.kind == CouplingType::Affine { c / 2 } else { 3 };
        let z1 = self.g.slice_channels(&format!("{p}.z1"), z, 0, 1, split)?;
        if let (Some(_), Some((mut f, base)), CouplingNet::Fcn { kernel_hidden, .. }) = (cond, self.cond_v.take(), cp.net) {
            let h = self.net(|c| c.fcn_shared(&mut f, base, z1, &net_p, kernel_hidden));
            self.cond_v = Some((f, base));
            return self.g.affine_coupling(&format!("{p}.affine"), z, h?, split, logdet, dir);
        }
        // The net reads cat(z1, cond) as parts: no concat.
        let mut inp = vec![z1];
        inp.extend_from_slice(cond.unwrap_or_default());
        let h = self.net(|c| c.coupling_net(&inp, &net_p, cp.net))?;
        self.g.affine_coupling(&format!("{p}.affine"), z, h, split, logdet, dir)
    }

    /// Flow step: actnorm -> invconv -> coupling (reverse in reverse order).
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        z: TensorId,
        p: &str,
        invconv: bool,
        cp: Coupling,
        k: usize,
        cond: Option<&[TensorId]>,
        logdet: Option<TensorId>,
        dir: Dir,
    ) -> Result<(TensorId, Option<TensorId>)> {
        let (mut z, mut ld) = (z, logdet);
        match dir {
            Dir::Forward => {
                (z, ld) = self.g.actnorm(&format!("{p}.actnorm"), z, &format!("{p}.actnorm"), ld, dir)?;
                if invconv {
                    (z, ld) = self.g.invconv(&format!("{p}.permute"), z, &format!("{p}.permute"), ld, dir)?;
                }
                self.coupling(z, p, cp, k, cond, ld, dir)
            }
            Dir::Reverse => {
                (z, ld) = self.coupling(z, p, cp, k, cond, ld, dir)?;
                if invconv {
                    (z, ld) = self.g.invconv(&format!("{p}.permute"), z, &format!("{p}.permute"), ld, dir)?;
                }
                self.g.actnorm(&format!("{p}.actnorm"), z, &format!("{p}.actnorm"), ld, dir)
            }
        }
    }

    fn squeeze(&mut self, x: TensorId, l: usize, dir: Dir) -> Result<TensorId> {
        let n = format!("flow.layers.{}", self.cfg.levels[l].squeeze_layer);
        match self.cfg.squeeze {
            Squeeze::Squeeze2d => match dir {
                Dir::Forward => self.g.squeeze(&n, x, 2),
                Dir::Reverse => self.g.unsqueeze(&n, x, 2),
            },
            Squeeze::Haar => {
                self.check_haar(&n, l)?;
                match dir {
                    Dir::Forward => self.g.haar_down(&n, x),
                    Dir::Reverse => self.g.haar_up(&n, x),
                }
            }
        }
    }

    /// The Haar filters are constants in the kernel; a checkpoint whose
    /// `haar_weights` differ would silently compute something else.
    fn check_haar(&self, n: &str, l: usize) -> Result<()> {
        let c = self.cfg.levels[l].in_channels;
        let key = format!("{n}.haar_weights");
        let w = self.g.weight(n, &key, Some(&[4 * c, 1, 2, 2]))?;
        const BANDS: [[f32; 4]; 4] = [[1., 1., 1., 1.], [1., -1., 1., -1.], [1., 1., -1., -1.], [1., -1., -1., 1.]];
        for ch in 0..c {
            for (b, band) in BANDS.iter().enumerate() {
                if w.data[(ch * 4 + b) * 4..(ch * 4 + b + 1) * 4] != band[..] {
                    return Err(Error::Weights(format!("{key}: channel {ch} band {b} is not the standard Haar filter")));
                }
            }
        }
        Ok(())
    }

    /// Conditional features of level `l` from the channel parts `u` of its
    /// conditional input, as channel parts: SR's cat(f1, f2) is never
    /// materialised (every reader is a conv, or an upsample done per part).
    fn features(&mut self, u: &[TensorId], l: usize) -> Result<Vec<TensorId>> {
        let p = self.cfg.levels[l].cond_module.clone();
        // The residual stream (conv_first, every RDB and RRDB output, the
        // features) is f32: rounded to f16 at each of the trunk's residual
        // adds its error grows with the depth; the dense blocks' inner
        // features (4 of every 5 conv outputs) are in the net's precision.
        let first = self.head(|c| c.g.conv2d_cat(&format!("{p}.conv_first"), u, &format!("{p}.conv_first"), Conv::same(3)))?;
        let [n0, n1] = self.cfg.rrdb_nb;
        match self.cfg.task {
            Task::Sr => {
                let f1 = self.trunk(first, &format!("{p}.RRDB_trunk0"), n0)?;
                let t = self.trunk(f1, &format!("{p}.RRDB_trunk1"), n1)?;
                let f2 = self.head(|c| c.g.conv2d(&format!("{p}.trunk_conv1"), t, &format!("{p}.trunk_conv1"), Conv::same(3).residual(first, 1.0, 1.0)))?;
                Ok(vec![f1, f2])
            }
            Task::Rescale => {
                let t = self.trunk(first, &format!("{p}.RRDB_trunk0"), n0)?;
                let t = self.trunk(t, &format!("{p}.RRDB_trunk1"), n1)?;
                Ok(vec![self.head(|c| c.g.conv2d(&format!("{p}.trunk_conv1"), t, &format!("{p}.trunk_conv1"), Conv::same(3).residual(first, 1.0, 1.0)))?])
            }
        }
    }

    /// The features of level `l` as one tensor (trace outputs only).
    fn feat_tensor(&mut self, parts: &[TensorId], l: usize) -> Result<TensorId> {
        match parts {
            [f] => Ok(*f),
            _ => self.g.concat(&format!("{}.feat", self.cfg.levels[l].cond_module), parts),
        }
    }

    /// u_l = cat(y_l, up(feat_j) for the coarser levels j), as channel
    /// parts (only conv_first reads it): one upsample per feature part.
    fn cond_input(&mut self, y: TensorId, l: usize, feats: &[Option<Vec<TensorId>>]) -> Result<Vec<TensorId>> {
        let lev = self.cfg.levels[l].clone();
        let mut parts = vec![y];
        for &(j, f) in &lev.cond_feats {
            let fj = feats[j].clone().ok_or_else(|| Error::Graph(format!("level {l} needs the features of level {j} first")))?;
            for (k, part) in fj.iter().enumerate() {
                let name = if fj.len() == 1 { format!("{}.up{j}", lev.cond_module) } else { format!("{}.up{j}.{k}", lev.cond_module) };
                parts.push(self.g.upsample_nearest(&name, *part, f)?);
            }
        }
        Ok(parts)
    }

    fn prior_scale(&self) -> GaussianScale {
        match self.cfg.task {
            Task::Sr => GaussianScale::Logs,
            Task::Rescale => GaussianScale::Atan,
        }
    }

    fn prior(&mut self, feat: &[TensorId], l: usize) -> Result<TensorId> {
        let p = format!("{}.f", self.cfg.levels[l].cond_module);
        if let Some((mut f, base)) = self.cond_v.take() {
            let r = self.conv_zeros_features(&mut f, base, &p);
            self.cond_v = Some((f, base));
            return r;
        }
        self.conv_zeros(feat, &p)
    }

    /// Transform level `l`'s conditional features `feat` once (Winograd
    /// input transform, [`GraphBuilder::winograd_features`]) for every conv
    /// that reads them: the prior and the first conv of each split step's
    /// coupling net, which reads cat(z1, feat). Without this each of those
    /// convs transforms all of `feat` again (13 split steps per level in the
    /// official SR x4: 26 transforms of 64 channels at 128x128). Sets
    /// `cond_v` when every such conv runs as Winograd with one tile, else
    /// leaves it None (the convs then run as before).
    fn share_cond(&mut self, feat: &[TensorId], l: usize) -> Result<()> {
        self.cond_v = None;
        let cp = self.cfg.split_coupling;
        let (Some(&first), CouplingNet::Fcn { .. }) = (feat.first(), cp.net) else { return Ok(()) };
        let mut fc = 0;
        for &t in feat {
            fc += self.g.shape(t)?.c();
        }
        let mut names = vec![format!("{}.f", self.cfg.levels[l].cond_module)];
        for i in 0..self.cfg.levels[l].cond_steps {
            if !(cp.kind == CouplingType::Affine3Shift && i % 2 == 1) {
                names.push(format!("{}.affine.f.conv1", self.split_step_prefix(l, i)));
            }
        }
        let mut shapes = Vec::new();
        for n in &names {
            // A missing or malformed weight is left for the unshared build to report.
            let Some(s) = self.g.weight(n, &format!("{n}.weight"), None).ok().and_then(|w| <[usize; 4]>::try_from(w.shape.as_slice()).ok()) else {
                return Ok(());
            };
            shapes.push(s);
        }
        // The prior reads exactly the features, each coupling features + z1.
        if shapes[0][1] != fc || shapes[1..].iter().any(|s| s[1] <= fc) {
            return Ok(());
        }
        let capacity = shapes.iter().map(|s| s[1]).max().unwrap_or(fc);
        let name = format!("{}.cond_features", self.cfg.levels[l].cond_module);
        let Some(mut f) = self.g.winograd_features(&name, first, capacity, &shapes, 1)? else { return Ok(()) };
        for (k, &part) in feat.iter().enumerate().skip(1) {
            self.g.winograd_features_push(&format!("{name}.part{k}"), &mut f, part)?;
        }
        self.cond_v = Some((f, fc));
        Ok(())
    }

    /// `conv_zeros` over the first `base` channels of `f` (the shared features).
    fn conv_zeros_features(&mut self, f: &mut WinogradFeatures, base: usize, p: &str) -> Result<TensorId> {
        self.g.winograd_features_truncate(f, base)?;
        let w = self.g.weight(p, &format!("{p}.weight"), None)?;
        let cout = w.shape.first().copied().unwrap_or(0);
        let w = w.clone();
        let (bias, scale) = self.zeros_epilogue(p, cout)?;
        self.head(|c| c.g.conv2d_features(p, f, &w, Some(&bias), Some(&scale), Conv::same(3)))
    }

    /// The Fcn coupling net on cat(z1, shared features): z1 is pushed after
    /// the features' `base` channels (overwriting the previous step's z1),
    /// and conv1's weight columns are reordered to match (features first).
    fn fcn_shared(&mut self, f: &mut WinogradFeatures, base: usize, z1: TensorId, p: &str, kernel_hidden: usize) -> Result<TensorId> {
        let p1 = format!("{p}.conv1");
        self.g.winograd_features_truncate(f, base)?;
        self.g.winograd_features_push(&format!("{p1}.z1"), f, z1)?;
        let w = self.g.weight(&p1, &format!("{p1}.weight"), None)?;
        let Ok([cout, cin, 3, 3]) = <[usize; 4]>::try_from(w.shape.as_slice()) else {
            return Err(Error::Weights(format!("{p1}.weight has shape {:?}, expected [_, _, 3, 3]", w.shape)));
        };
        if cin != f.channels() {
            return Err(Error::Weights(format!("{p1}.weight reads {cin} channels, but z1 and the features have {}", f.channels())));
        }
        let split = cin - base;
        let mut data = Vec::with_capacity(w.data.len());
        for co in 0..cout {
            let row = &w.data[co * cin * 9..][..cin * 9];
            data.extend_from_slice(&row[split * 9..]);
            data.extend_from_slice(&row[..split * 9]);
        }
        let w = crate::weights::HostTensor::new(w.shape.clone(), data)?;
        let (bias, scale) = self.actnorm_epilogue(&p1, cout)?;
        let h = self.g.conv2d_features(&p1, f, &w, Some(&bias), Some(&scale), Conv::same(3).act(Activation::Relu))?;
        let h = self.conv_actnorm(&[h], &format!("{p}.conv2"), kernel_hidden, Activation::Relu)?;
        self.conv_zeros(&[h], &format!("{p}.conv3"))
    }

    fn split_step_prefix(&self, l: usize, i: usize) -> String {
        format!("{}.additional_flow_steps.{i}", self.cfg.levels[l].cond_module)
    }
}

/// Shapes of the per-level latents for an LR of `lr` (the finest level first).
pub fn eps_shapes(cfg: &HcflowConfig, lr: Shape) -> Vec<Shape> {
    let nl = cfg.n_levels();
    cfg.levels
        .iter()
        .enumerate()
        .map(|(l, lev)| {
            let f = 1 << (nl - 1 - l);
            Shape::new(lr.n(), lev.off, lr.h() * f, lr.w() * f)
        })
        .collect()
}

/// Reverse pass (SR reverse / rescaling reverse): inputs `lr`, `eps{l}`,
/// parameter `heat`; output `hr` (clamped to [0,1]). With `trace`, also
/// `hr_raw`, `feat{l}` and `a{l}` (the split-off latent after its steps).
pub fn build_reverse(g: &mut GraphBuilder, cfg: &HcflowConfig, lr: Shape, trace: bool) -> Result<()> {
    let mut c = Ctx::new(g, cfg)?;
    c.g.param(HEAT, cfg.default_heat as f64)?;
    let z = c.g.input("lr", lr)?;
    let eps = eps_inputs(&mut c, lr)?;
    let hr_raw = reverse_body(&mut c, z, &eps, trace)?;
    if trace {
        c.g.output("hr_raw", hr_raw)?;
    }
    let hr = c.g.clamp("clamp", hr_raw, 0.0, 1.0)?;
    c.g.output("hr", hr)
}

fn eps_inputs(c: &mut Ctx, lr: Shape) -> Result<Vec<TensorId>> {
    eps_shapes(c.cfg, lr).into_iter().enumerate().map(|(l, s)| c.g.input(&eps_name(l), s)).collect()
}

/// The reverse pass from LR tensor `z` and the latents to the unclamped HR.
fn reverse_body(c: &mut Ctx, mut z: TensorId, eps: &[TensorId], trace: bool) -> Result<TensorId> {
    let cfg = c.cfg;
    let nl = cfg.n_levels();
    let mut feats: Vec<Option<Vec<TensorId>>> = vec![None; nl];
    for l in (0..nl).rev() {
        let lev = cfg.levels[l].clone();
        let (feat, h) = c.net(|c| {
            let u = c.cond_input(z, l, &feats)?;
            let feat = c.features(&u, l)?;
            c.share_cond(&feat, l)?;
            let h = c.prior(&feat, l)?;
            Ok((feat, h))
        })?;
        feats[l] = Some(feat.clone());
        let scale = c.prior_scale();
        let mut a = c.g.gaussian_sample(&format!("{}.sample", lev.cond_module), h, eps[l], Scalar::param(HEAT), scale)?;
        for i in (0..lev.cond_steps).rev() {
            let p = c.split_step_prefix(l, i);
            a = c.step(a, &p, cfg.split_invconv, cfg.split_coupling, i, Some(&feat), None, Dir::Reverse)?.0;
        }
        c.cond_v = None;
        if trace {
            let f = c.feat_tensor(&feat, l)?;
            c.g.output(&format!("feat{l}"), f)?;
            c.g.output(&format!("a{l}"), a)?;
        }
        z = c.g.concat(&format!("flow.layers.{}.cat", lev.main_layers.last().copied().unwrap_or(lev.squeeze_layer)), &[z, a])?;
        for (k, &n) in lev.main_layers.iter().enumerate().rev() {
            z = c.step(z, &format!("flow.layers.{n}"), cfg.main_invconv, cfg.coupling, k, None, None, Dir::Reverse)?.0;
        }
        z = c.squeeze(z, l, Dir::Reverse)?;
    }
    Ok(z)
}

/// Forward pass: input `hr` (and `noise`, U(0,1) dequantisation, for SR);
/// outputs `z` (the LR before quantisation), `eps{l}` and, for SR, `logdet`
/// (everything but the LR likelihood term, which the host adds). With
/// `trace`: `squeeze{l}`, `step{N}` (first main step of each level), `feat{l}`.
pub fn build_forward(g: &mut GraphBuilder, cfg: &HcflowConfig, hr: Shape, trace: bool) -> Result<()> {
    let mut c = Ctx::new(g, cfg)?;
    let sr = cfg.task == Task::Sr;
    let mut x = c.g.input("hr", hr)?;
    let mut logdet = None;
    if sr {
        let noise = c.g.input("noise", hr)?;
        x = c.g.axpby("dequantize", x, noise, 1.0, (1.0 / cfg.quant) as f32)?;
        let pixels = (hr.h() * hr.w()) as f64;
        logdet = Some(c.g.logdet("logdet0", hr.n(), (-(cfg.quant.ln()) * pixels) as f32)?);
    }
    let (ys, offs, logdet) = forward_main(&mut c, x, logdet, trace)?;
    c.g.output("z", *ys.last().expect("at least one level"))?;
    forward_split(&mut c, &ys, &offs, logdet, trace)
}

type Levels = (Vec<TensorId>, Vec<TensorId>, Option<TensorId>);

/// The main flow: per level squeeze, flow steps, split into the kept
/// channels `ys[l]` and the split-off `offs[l]`; the last `ys` is the LR.
fn forward_main(c: &mut Ctx, mut x: TensorId, mut logdet: Option<TensorId>, trace: bool) -> Result<Levels> {
    let cfg = c.cfg;
    let nl = cfg.n_levels();
    let mut ys = Vec::with_capacity(nl);
    let mut offs = Vec::with_capacity(nl);
    for l in 0..nl {
        let lev = cfg.levels[l].clone();
        x = c.squeeze(x, l, Dir::Forward)?;
        if trace {
            c.g.output(&format!("squeeze{l}"), x)?;
        }
        for (k, &n) in lev.main_layers.iter().enumerate() {
            (x, logdet) = c.step(x, &format!("flow.layers.{n}"), cfg.main_invconv, cfg.coupling, k, None, logdet, Dir::Forward)?;
            if trace && k == 0 {
                c.g.output(&format!("step{n}"), x)?;
            }
        }
        let split = format!("flow.layers.{}", lev.main_layers.last().copied().unwrap_or(lev.squeeze_layer) + 1);
        let y = c.g.slice_channels(&format!("{split}.keep"), x, 0, 1, lev.keep)?;
        let a = c.g.slice_channels(&format!("{split}.off"), x, lev.keep, 1, lev.off)?;
        ys.push(y);
        offs.push(a);
        x = y;
    }
    Ok((ys, offs, logdet))
}

/// Forward pass continued: conditional features, split-off flows, eps.
#[allow(clippy::needless_range_loop)]
fn forward_split(c: &mut Ctx, ys: &[TensorId], offs: &[TensorId], mut logdet: Option<TensorId>, trace: bool) -> Result<()> {
    let cfg = c.cfg;
    let nl = cfg.n_levels();
    let mut feats: Vec<Option<Vec<TensorId>>> = vec![None; nl];
    for l in (0..nl).rev() {
        let lev = cfg.levels[l].clone();
        let feat = c.net(|c| {
            let u = c.cond_input(ys[l], l, &feats)?;
            c.features(&u, l)
        })?;
        feats[l] = Some(feat.clone());
        if trace {
            let f = c.feat_tensor(&feat, l)?;
            c.g.output(&format!("feat{l}"), f)?;
        }
        c.share_cond(&feat, l)?;
        let mut a = offs[l];
        for i in 0..lev.cond_steps {
            let p = c.split_step_prefix(l, i);
            (a, logdet) = c.step(a, &p, cfg.split_invconv, cfg.split_coupling, i, Some(&feat), logdet, Dir::Forward)?;
        }
        let h = c.net(|c| c.prior(&feat, l))?;
        c.cond_v = None;
        let scale = c.prior_scale();
        if let Some(ld) = logdet {
            logdet = Some(c.g.gaussian_logp(&format!("{}.logp", lev.cond_module), a, h, ld, scale)?);
        }
        let e = c.g.gaussian_normalize(&format!("{}.eps", lev.cond_module), a, h, scale)?;
        c.g.output(&eps_name(l), e)?;
    }
    if let Some(ld) = logdet {
        c.g.output("logdet", ld)?;
    }
    Ok(())
}

/// The two stages of HCD (collaborative downscaling) on a rescaling model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HcdStage {
    /// Optimise the HR perturbation through down then up.
    Hr,
    /// Optimise the LR through up.
    Lr,
}

/// One HCD step's graph, forward and backward together, for an LR of
/// `lr` (the HR is `scale` times larger):
/// - `Hr`: inputs `x` (HR + perturbation), `target` (the HR) and `eps{l}`;
///   `lr = Quant(down(x))` (8-bit, straight-through gradient as the official
///   `Quantization`), `sr = clamp(up(lr, eps, heat), 0, 1)`;
///   outputs `sr`, `lr` and `grad` = d mean((sr - target)^2) / d x.
/// - `Lr`: inputs `lr`, `target`, `eps{l}`; `sr = clamp(up(lr, eps, heat), 0, 1)`;
///   outputs `sr` and `grad` = d mean((sr - target)^2) / d lr.
///
/// `up` is exactly the reverse graph `wgsr upscale` runs (same latents and
/// heat parameter), so the LR is optimised for the upscaler the user runs.
pub fn build_hcd(g: &mut GraphBuilder, cfg: &HcflowConfig, stage: HcdStage, lr: Shape) -> Result<()> {
    if cfg.task != Task::Rescale {
        return Err(Error::InvalidArgument("HCD needs an HCFlow rescaling model (task \"rescale\"); this is an SR model".into()));
    }
    g.enable_gradients();
    let mut c = Ctx::new(g, cfg)?;
    c.g.param(HEAT, cfg.default_heat as f64)?;
    let s = cfg.scale;
    let hr = Shape::new(lr.n(), lr.c(), lr.h() * s, lr.w() * s);
    let (wrt, lr_q) = match stage {
        HcdStage::Hr => {
            let x = c.g.input("x", hr)?;
            let (ys, _, _) = forward_main(&mut c, x, None, false)?;
            let z = *ys.last().expect("at least one level");
            let q = c.g.quantize_ste("hcd.quantize", z, 255.0)?;
            c.g.output("lr", q)?;
            (x, q)
        }
        HcdStage::Lr => {
            let x = c.g.input("lr", lr)?;
            (x, x)
        }
    };
    let target = c.g.input("target", hr)?;
    let eps = eps_inputs(&mut c, lr)?;
    let raw = reverse_body(&mut c, lr_q, &eps, false)?;
    let sr = c.g.clamp("clamp", raw, 0.0, 1.0)?;
    c.g.output("sr", sr)?;
    let k = 2.0 / hr.numel() as f32;
    let seed = c.g.axpby("hcd.loss_grad", sr, target, k, -k)?;
    let grad = c.g.backward(&[(sr, seed)], &[wrt])?[0];
    c.g.output("grad", grad)
}
