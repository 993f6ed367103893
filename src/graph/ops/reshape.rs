//! Layout ops in the graph: squeeze / pixel (un)shuffle, Haar, channel
//! slicing and concatenation, nearest upsampling. Output shapes come from
//! the kernel family's shape functions (`ops::reshape::*_shape`), the same
//! rules its prepare functions check.

use crate::graph::ops::node_label;
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::reshape as rs;
use crate::graph::ops::conv::Conv;
use crate::ops::conv::Conv2dParams;
use crate::weights::HostTensor;
use crate::{Error, Result, ResultExt, Shape};

impl GraphBuilder<'_> {
    /// HCFlow squeeze2d (= torch pixel_unshuffle): [n,c,h,w] -> [n,c*f*f,h/f,w/f].
    pub fn squeeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let out = rs::space_to_depth_shape(self.shape(x)?, f).with_context(|| node_label(name, "squeeze"))?;
        let y = self.kernel(name, "squeeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::squeeze(c, i[0], f, o[0])?])))?;
        // A permutation: its transpose is its inverse.
        self.vjp(move |g, v| Ok(vec![Some(g.unsqueeze(&v.node("x"), v.dy0()?, f)?)]));
        Ok(y)
    }

    /// HCFlow unsqueeze2d (= torch pixel_shuffle): [n,c,h,w] -> [n,c/(f*f),h*f,w*f].
    pub fn unsqueeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let out = rs::depth_to_space_shape(self.shape(x)?, f).with_context(|| node_label(name, "unsqueeze"))?;
        let y = self.kernel(name, "unsqueeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::unsqueeze(c, i[0], f, o[0])?])))?;
        self.vjp(move |g, v| Ok(vec![Some(g.squeeze(&v.node("x"), v.dy0()?, f)?)]));
        Ok(y)
    }

    /// Haar wavelet downsampling, band-major channels: [n,c,h,w] -> [n,4c,h/2,w/2].
    pub fn haar_down(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let out = rs::haar_down_shape(self.shape(x)?).with_context(|| node_label(name, "haar_down"))?;
        let y = self.kernel(name, "haar_down", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_down(c, i[0], o[0])?])))?;
        // down = H / 4 with H the +-1 filter bank and up = H^T (H^T H = 4 I),
        // so down^T = up / 4 and up^T = 4 down.
        self.vjp(|g, v| {
            let t = g.haar_up(&v.node("up"), v.dy0()?)?;
            Ok(vec![Some(g.affine(&v.node("x"), t, 0.25, 0.0)?)])
        });
        Ok(y)
    }

    /// Inverse of `haar_down`: [n,4c,h,w] -> [n,c,2h,2w].
    pub fn haar_up(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let out = rs::haar_up_shape(self.shape(x)?).with_context(|| node_label(name, "haar_up"))?;
        let y = self.kernel(name, "haar_up", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_up(c, i[0], o[0])?])))?;
        self.vjp(|g, v| {
            let t = g.haar_down(&v.node("down"), v.dy0()?)?;
            Ok(vec![Some(g.affine(&v.node("x"), t, 4.0, 0.0)?)])
        });
        Ok(y)
    }

    /// Channels start, start+step, ... (count of them).
    pub fn slice_channels(&mut self, name: &str, x: TensorId, start: usize, step: usize, count: usize) -> Result<TensorId> {
        let sx = self.shape(x)?;
        let out = rs::slice_channels_shape(sx, start, step, count).with_context(|| node_label(name, "slice_channels"))?;
        let y = self.kernel(
            name,
            "slice_channels",
            format!("start={start} step={step} count={count}"),
            &[x],
            out,
            Box::new(move |c, i, o, _| Ok(vec![rs::slice_channels(c, i[0], start, step, count, o[0])?])),
        )?;
        // dx = dy in the sliced channels, zero elsewhere: a concat with zeros.
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            if step != 1 && count > 1 {
                return Err(Error::Graph(format!("node '{}': no gradient for a strided channel slice", v.name)));
            }
            let mut parts = Vec::new();
            if start > 0 {
                parts.push(g.fill(&v.node("zeros_before"), Shape::new(sx.n(), start, sx.h(), sx.w()), 0.0)?);
            }
            parts.push(dy);
            let after = sx.c() - start - count;
            if after > 0 {
                parts.push(g.fill(&v.node("zeros_after"), Shape::new(sx.n(), after, sx.h(), sx.w()), 0.0)?);
            }
            Ok(vec![Some(if parts.len() == 1 { dy } else { g.concat(&v.node("x"), &parts)? })])
        });
        Ok(y)
    }

    /// HCFlow split_feature(x, "split"): first half, second half.
    pub fn split_half(&mut self, name: &str, x: TensorId) -> Result<(TensorId, TensorId)> {
        let c = self.shape(x)?.c();
        let a = self.slice_channels(&format!("{name}.0"), x, 0, 1, c / 2)?;
        let b = self.slice_channels(&format!("{name}.1"), x, c / 2, 1, c - c / 2)?;
        Ok((a, b))
    }

    /// HCFlow split_feature(x, "cross"): even channels, odd channels.
    pub fn split_cross(&mut self, name: &str, x: TensorId) -> Result<(TensorId, TensorId)> {
        let c = self.shape(x)?.c();
        let a = self.slice_channels(&format!("{name}.even"), x, 0, 2, c.div_ceil(2))?;
        let b = self.slice_channels(&format!("{name}.odd"), x, 1, 2, c / 2)?;
        Ok((a, b))
    }

    /// Concatenate along channels.
    pub fn concat(&mut self, name: &str, xs: &[TensorId]) -> Result<TensorId> {
        let shapes = xs.iter().map(|t| self.shape(*t)).collect::<Result<Vec<_>>>()?;
        let out = rs::concat_shape(&shapes).with_context(|| node_label(name, "concat"))?;
        let y = self.kernel(name, "concat", format!("{} inputs", xs.len()), xs, out, Box::new(|c, i, o, _| rs::concat_channels(c, i, o[0])))?;
        self.vjp(move |g, v| {
            let dy = v.dy0()?;
            let mut start = 0;
            let mut dx = Vec::with_capacity(shapes.len());
            for (k, s) in shapes.iter().enumerate() {
                dx.push(if v.needs[k] { Some(g.slice_channels(&v.node(&format!("part{k}")), dy, start, 1, s.c())?) } else { None });
                start += s.c();
            }
            Ok(dx)
        });
        Ok(y)
    }

    /// A copy of `base` whose channels start + k*step hold channel k of `x`
    /// (same batch and size): two copy dispatches, no gradient. Builds a
    /// tensor from cached channels plus freshly computed ones.
    pub fn insert_channels(&mut self, name: &str, base: TensorId, x: TensorId, start: usize, step: usize) -> Result<TensorId> {
        let (sb, sx) = (self.shape(base)?, self.shape(x)?);
        rs::slice_channels_shape(sb, start, step, sx.c()).with_context(|| node_label(name, "insert_channels"))?;
        if (sb.n(), sb.h(), sb.w()) != (sx.n(), sx.h(), sx.w()) {
            return Err(self.shape_error(name, "insert_channels", format!("inserted {sx} does not match {sb} in batch or size")));
        }
        self.kernel(
            name,
            "insert_channels",
            format!("start={start} step={step}"),
            &[base, x],
            sb,
            Box::new(move |c, i, o, _| Ok(vec![rs::write_channels(c, i[0], o[0], 0, 1)?, rs::write_channels(c, i[1], o[0], start, step)?])),
        )
    }

    /// Nearest-neighbour upsampling by an integer factor.
    pub fn upsample_nearest(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let sx = self.shape(x)?;
        let out = rs::upsample_nearest_shape(sx, f).with_context(|| node_label(name, "upsample_nearest"))?;
        let y = self.kernel(name, "upsample_nearest", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::upsample_nearest(c, i[0], f, o[0])?])))?;
        // dx = the sum over each f x f block of dy: a depthwise conv with
        // all-ones weights and stride f.
        self.vjp(move |g, v| {
            let ones = HostTensor::new(vec![sx.c(), 1, f, f], vec![1.0; sx.c() * f * f])?;
            let params = Conv2dParams { stride: [f, f], groups: sx.c(), ..Default::default() };
            let c = Conv { params, bias: false, ..Default::default() };
            Ok(vec![Some(g.conv2d_with(&v.node("x"), v.dy0()?, &ones, None, None, c)?)])
        });
        Ok(y)
    }

    /// cat([a, upsample_nearest(b, f)], channels) in two dispatches, no temporary.
    pub fn concat_upsampled(&mut self, name: &str, a: TensorId, b: TensorId, f: usize) -> Result<TensorId> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        let out = rs::concat_upsampled_shape(sa, sb, f).with_context(|| node_label(name, "concat_upsampled"))?;
        let ca = sa.c();
        self.kernel(
            name,
            "concat_upsampled",
            format!("f={f}"),
            &[a, b],
            out,
            Box::new(move |c, i, o, _| {
                Ok(vec![rs::write_channels(c, i[0], o[0], 0, 1)?, rs::upsample_nearest_into(c, i[1], f, o[0], ca)?])
            }),
        )
    }
}
