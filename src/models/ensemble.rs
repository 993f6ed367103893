//! Geometric self-ensemble (Timofte et al. 2016, "Seven ways to improve
//! example-based SR"; EDSR+ in Lim et al. 2017): run a deterministic model on
//! the LR image under n of the 8 symmetries of the square (rotations by 90
//! degrees, with and without a mirror), undo each symmetry on its output and
//! average. A small model's fixed-pattern texture depends on orientation, so
//! the average cancels much of it; the cost is n passes.
//!
//! Only for deterministic passes (HCFlow SR at heat 0): at a temperature
//! above 0 the passes would be different samples and their mean a blur.

use crate::image_io::RgbImage;
use crate::{Error, Result};

/// One symmetry of the square: `rot` counter-clockwise quarter turns, then
/// a left-right mirror when `mirror`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dihedral {
    pub rot: u8,
    pub mirror: bool,
}

const fn d(rot: u8, mirror: bool) -> Dihedral {
    Dihedral { rot, mirror }
}

/// The ensemble sizes and the symmetries each uses: 2 = identity and a half
/// turn, 4 = the four rotations, 8 = all of them.
const ENSEMBLES: [&[Dihedral]; 4] = [
    &[d(0, false)],
    &[d(0, false), d(2, false)],
    &[d(0, false), d(1, false), d(2, false), d(3, false)],
    &[d(0, false), d(1, false), d(2, false), d(3, false), d(0, true), d(1, true), d(2, true), d(3, true)],
];

/// The symmetries of an ensemble of `n` passes (1, 2, 4 or 8).
pub fn symmetries(n: usize) -> Result<&'static [Dihedral]> {
    ENSEMBLES
        .into_iter()
        .find(|s| s.len() == n)
        .ok_or_else(|| Error::InvalidArgument(format!("self-ensemble size must be 1, 2, 4 or 8 passes, got {n}")))
}

/// One counter-clockwise quarter turn: W x H -> H x W, the top-right corner
/// going to the top-left.
fn rot90(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width, img.height);
    let (ow, oh) = (h, w);
    let mut out = vec![0f32; img.data.len()];
    for c in 0..3 {
        let src = &img.data[c * w * h..][..w * h];
        let dst = &mut out[c * w * h..][..w * h];
        for y in 0..oh {
            for x in 0..ow {
                dst[y * ow + x] = src[x * w + (w - 1 - y)];
            }
        }
    }
    RgbImage { width: ow, height: oh, data: out }
}

fn mirror(img: &RgbImage) -> RgbImage {
    let w = img.width;
    let mut out = img.data.clone();
    for row in out.chunks_exact_mut(w) {
        row.reverse();
    }
    RgbImage { width: w, height: img.height, data: out }
}

fn turns(img: &RgbImage, n: u8) -> RgbImage {
    (0..n % 4).fold(img.clone(), |a, _| rot90(&a))
}

/// `img` under `t`: `rot` quarter turns, then the mirror.
pub fn apply(img: &RgbImage, t: Dihedral) -> RgbImage {
    let r = turns(img, t.rot);
    if t.mirror {
        mirror(&r)
    } else {
        r
    }
}

/// The inverse of [`apply`]: `invert(&apply(x, t), t) == x`.
pub fn invert(img: &RgbImage, t: Dihedral) -> RgbImage {
    let m = if t.mirror { mirror(img) } else { img.clone() };
    turns(&m, 4 - t.rot % 4)
}

/// Mean of `pass(apply(lr, t))` brought back by `invert`, over the `n`
/// symmetries of [`symmetries`] in their order (the sum in f32, then / n);
/// `progress(k)` after pass k. `n == 1` is one plain pass.
pub fn self_ensemble(
    n: usize,
    lr: &RgbImage,
    progress: &mut dyn FnMut(usize),
    mut pass: impl FnMut(&RgbImage) -> Result<RgbImage>,
) -> Result<RgbImage> {
    let syms = symmetries(n)?;
    let mut sum: Option<RgbImage> = None;
    for (k, &t) in syms.iter().enumerate() {
        let out = invert(&pass(&apply(lr, t))?, t);
        match &mut sum {
            None => sum = Some(out),
            Some(s) => {
                if (s.width, s.height) != (out.width, out.height) {
                    return Err(Error::Shape(format!(
                        "self-ensemble pass {k} gave {}x{}, pass 0 {}x{}",
                        out.width, out.height, s.width, s.height
                    )));
                }
                s.data.iter_mut().zip(&out.data).for_each(|(a, b)| *a += b);
            }
        }
        progress(k + 1);
    }
    let mut s = sum.expect("at least one symmetry");
    if n > 1 {
        let inv = 1.0 / n as f32;
        s.data.iter_mut().for_each(|v| *v *= inv);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: usize, h: usize) -> RgbImage {
        RgbImage::new(w, h, (0..3 * w * h).map(|i| i as f32).collect()).unwrap()
    }

    #[test]
    fn quarter_turn_moves_the_top_right_corner_to_the_top_left() {
        // 3 wide, 2 high: rows [0 1 2] [3 4 5] -> 2 wide, 3 high: [2 5] [1 4] [0 3].
        let r = rot90(&img(3, 2));
        assert_eq!((r.width, r.height), (2, 3));
        assert_eq!(&r.data[..6], &[2.0, 5.0, 1.0, 4.0, 0.0, 3.0]);
        assert_eq!(&r.data[6..12], &[8.0, 11.0, 7.0, 10.0, 6.0, 9.0]);
    }

    #[test]
    fn every_symmetry_is_undone_by_invert_and_all_eight_differ() {
        let x = img(5, 3);
        let mut seen = Vec::new();
        for &t in symmetries(8).unwrap() {
            let y = apply(&x, t);
            assert_eq!(invert(&y, t), x, "{t:?}");
            assert!(!seen.contains(&y.data), "{t:?} repeats another symmetry");
            seen.push(y.data);
        }
    }

    #[test]
    fn sizes_other_than_1_2_4_8_are_refused() {
        for n in [0, 3, 5, 16] {
            assert!(symmetries(n).is_err(), "{n}");
        }
        assert_eq!(symmetries(4).unwrap().len(), 4);
    }

    #[test]
    fn an_equivariant_pass_averages_to_itself_and_a_fixed_pattern_cancels() {
        // A pass that doubles every value is equivariant: the ensemble is one pass.
        let x = img(4, 6);
        let one = self_ensemble(1, &x, &mut |_| {}, |i| Ok(RgbImage { data: i.data.iter().map(|v| 2.0 * v).collect(), ..i.clone() })).unwrap();
        let eight = self_ensemble(8, &x, &mut |_| {}, |i| Ok(RgbImage { data: i.data.iter().map(|v| 2.0 * v).collect(), ..i.clone() })).unwrap();
        assert_eq!(one, eight);
        // A pass that adds +1 at its own top-left pixel: in the average of the four
        // rotations each corner of the original gets +1/4.
        let mut calls = 0;
        let four = self_ensemble(4, &x, &mut |k| assert_eq!(k, { calls += 1; calls }), |i| {
            let mut o = i.clone();
            o.data[0] += 1.0;
            Ok(o)
        })
        .unwrap();
        assert_eq!(calls, 4);
        let (w, h) = (x.width, x.height);
        for (px, want) in [(0, 0.25), (w - 1, 0.25), ((h - 1) * w, 0.25), (h * w - 1, 0.25), (1, 0.0)] {
            assert!((four.data[px] - x.data[px] - want).abs() < 1e-6, "pixel {px}");
        }
    }
}
