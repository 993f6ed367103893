//! Layout ops in the graph: squeeze / pixel (un)shuffle, Haar, channel
//! slicing and concatenation, nearest upsampling. Output shapes come from
//! the kernel family's shape functions (`ops::reshape::*_shape`), the same
//! rules its prepare functions check.

use crate::graph::ops::node_label;
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::reshape as rs;
use crate::{Result, ResultExt};

impl GraphBuilder<'_> {
    /// HCFlow squeeze2d (= torch pixel_unshuffle): [n,c,h,w] -> [n,c*f*f,h/f,w/f].
    pub fn squeeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let out = rs::space_to_depth_shape(self.shape(x)?, f).with_context(|| node_label(name, "squeeze"))?;
        self.kernel(name, "squeeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::squeeze(c, i[0], f, o[0])?])))
    }

    /// HCFlow unsqueeze2d (= torch pixel_shuffle): [n,c,h,w] -> [n,c/(f*f),h*f,w*f].
    pub fn unsqueeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let out = rs::depth_to_space_shape(self.shape(x)?, f).with_context(|| node_label(name, "unsqueeze"))?;
        self.kernel(name, "unsqueeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::unsqueeze(c, i[0], f, o[0])?])))
    }

    /// Haar wavelet downsampling, band-major channels: [n,c,h,w] -> [n,4c,h/2,w/2].
    pub fn haar_down(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let out = rs::haar_down_shape(self.shape(x)?).with_context(|| node_label(name, "haar_down"))?;
        self.kernel(name, "haar_down", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_down(c, i[0], o[0])?])))
    }

    /// Inverse of `haar_down`: [n,4c,h,w] -> [n,c,2h,2w].
    pub fn haar_up(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let out = rs::haar_up_shape(self.shape(x)?).with_context(|| node_label(name, "haar_up"))?;
        self.kernel(name, "haar_up", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_up(c, i[0], o[0])?])))
    }

    /// Channels start, start+step, ... (count of them).
    pub fn slice_channels(&mut self, name: &str, x: TensorId, start: usize, step: usize, count: usize) -> Result<TensorId> {
        let out = rs::slice_channels_shape(self.shape(x)?, start, step, count).with_context(|| node_label(name, "slice_channels"))?;
        self.kernel(
            name,
            "slice_channels",
            format!("start={start} step={step} count={count}"),
            &[x],
            out,
            Box::new(move |c, i, o, _| Ok(vec![rs::slice_channels(c, i[0], start, step, count, o[0])?])),
        )
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
        self.kernel(name, "concat", format!("{} inputs", xs.len()), xs, out, Box::new(|c, i, o, _| rs::concat_channels(c, i, o[0])))
    }

    /// Nearest-neighbour upsampling by an integer factor.
    pub fn upsample_nearest(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let out = rs::upsample_nearest_shape(self.shape(x)?, f).with_context(|| node_label(name, "upsample_nearest"))?;
        self.kernel(name, "upsample_nearest", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::upsample_nearest(c, i[0], f, o[0])?])))
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
