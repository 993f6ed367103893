//! Layout ops in the graph: squeeze / pixel (un)shuffle, Haar, channel
//! slicing and concatenation, nearest upsampling.

use crate::graph::{GraphBuilder, TensorId};
use crate::ops::reshape as rs;
use crate::{Result, Shape};

impl GraphBuilder<'_> {
    /// HCFlow squeeze2d (= torch pixel_unshuffle): [n,c,h,w] -> [n,c*f*f,h/f,w/f].
    pub fn squeeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let s = self.shape(x)?;
        if f == 0 || s.h() % f != 0 || s.w() % f != 0 {
            return Err(self.shape_error(name, "squeeze", format!("{s} is not divisible by factor {f}")));
        }
        let out = Shape::new(s.n(), s.c() * f * f, s.h() / f, s.w() / f);
        self.kernel(name, "squeeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::squeeze(c, i[0], f, o[0])?])))
    }

    /// HCFlow unsqueeze2d (= torch pixel_shuffle): [n,c,h,w] -> [n,c/(f*f),h*f,w*f].
    pub fn unsqueeze(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let s = self.shape(x)?;
        if f == 0 || s.c() % (f * f) != 0 {
            return Err(self.shape_error(name, "unsqueeze", format!("{} channels are not divisible by {}", s.c(), f * f)));
        }
        let out = Shape::new(s.n(), s.c() / (f * f), s.h() * f, s.w() * f);
        self.kernel(name, "unsqueeze", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::unsqueeze(c, i[0], f, o[0])?])))
    }

    /// Haar wavelet downsampling, band-major channels: [n,c,h,w] -> [n,4c,h/2,w/2].
    pub fn haar_down(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let s = self.shape(x)?;
        if s.h() % 2 != 0 || s.w() % 2 != 0 {
            return Err(self.shape_error(name, "haar_down", format!("{s} has an odd side")));
        }
        let out = Shape::new(s.n(), 4 * s.c(), s.h() / 2, s.w() / 2);
        self.kernel(name, "haar_down", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_down(c, i[0], o[0])?])))
    }

    /// Inverse of `haar_down`: [n,4c,h,w] -> [n,c,2h,2w].
    pub fn haar_up(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let s = self.shape(x)?;
        if s.c() % 4 != 0 {
            return Err(self.shape_error(name, "haar_up", format!("{} channels are not divisible by 4", s.c())));
        }
        let out = Shape::new(s.n(), s.c() / 4, s.h() * 2, s.w() * 2);
        self.kernel(name, "haar_up", String::new(), &[x], out, Box::new(|c, i, o, _| Ok(vec![rs::haar_up(c, i[0], o[0])?])))
    }

    /// Channels start, start+step, ... (count of them).
    pub fn slice_channels(&mut self, name: &str, x: TensorId, start: usize, step: usize, count: usize) -> Result<TensorId> {
        let s = self.shape(x)?;
        if step == 0 || count == 0 || start + (count - 1) * step >= s.c() {
            return Err(self.shape_error(
                name,
                "slice_channels",
                format!("channels {start}+{step}k (k < {count}) out of range for {s}"),
            ));
        }
        let out = Shape::new(s.n(), count, s.h(), s.w());
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
        let first = *shapes.first().ok_or_else(|| self.shape_error(name, "concat", "no inputs".into()))?;
        if shapes.iter().any(|s| (s.n(), s.h(), s.w()) != (first.n(), first.h(), first.w())) {
            return Err(self.shape_error(name, "concat", format!("inputs differ outside the channel axis: {shapes:?}")));
        }
        let out = Shape::new(first.n(), shapes.iter().map(|s| s.c()).sum(), first.h(), first.w());
        self.kernel(name, "concat", format!("{} inputs", xs.len()), xs, out, Box::new(|c, i, o, _| rs::concat_channels(c, i, o[0])))
    }

    /// Nearest-neighbour upsampling by an integer factor.
    pub fn upsample_nearest(&mut self, name: &str, x: TensorId, f: usize) -> Result<TensorId> {
        let s = self.shape(x)?;
        if f == 0 {
            return Err(self.shape_error(name, "upsample_nearest", "factor 0".into()));
        }
        let out = Shape::new(s.n(), s.c(), s.h() * f, s.w() * f);
        self.kernel(name, "upsample_nearest", format!("f={f}"), &[x], out, Box::new(move |c, i, o, _| Ok(vec![rs::upsample_nearest(c, i[0], f, o[0])?])))
    }

    /// cat([a, upsample_nearest(b, f)], channels) in two dispatches, no temporary.
    pub fn concat_upsampled(&mut self, name: &str, a: TensorId, b: TensorId, f: usize) -> Result<TensorId> {
        let (sa, sb) = (self.shape(a)?, self.shape(b)?);
        if f == 0 || sa.n() != sb.n() || sa.h() != sb.h() * f || sa.w() != sb.w() * f {
            return Err(self.shape_error(name, "concat_upsampled", format!("{sa} and {sb} x{f} do not line up")));
        }
        let out = Shape::new(sa.n(), sa.c() + sb.c(), sa.h(), sa.w());
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
