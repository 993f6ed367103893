//! ops::texel: texel words <-> planes (exact for rgba16float, one rounding
//! for rgba8) and the GPU bicubic plane resize against resize::imresize_plane
//! in f64.

use wgsr::ops::texel::{self, PlaneResize, TexelFormat};
use wgsr::resize::imresize_plane;
use wgsr::{Shape, Tensor};

use crate::common::*;

#[test]
fn plane_resize_matches_matlab_bicubic_f64() {
    let c = ctx();
    let mut rng = Rng::new(41);
    for (w, h, s) in [(5, 3, 4), (7, 6, 2), (1, 4, 8), (9, 9, 3)] {
        let (x, xv) = rand_tensor(&mut rng, Shape::new(1, 1, h, w), -0.5, 1.5);
        let out = poisoned(Shape::new(1, 1, h * s, w * s));
        let r = PlaneResize::new(c, w, h, s).unwrap();
        let got = run_and_read(r.prepare(c, &x, &out).unwrap(), &out);
        let src: Vec<f64> = xv.iter().map(|&v| v as f64).collect();
        let want = imresize_plane(&src, w, h, w * s, h * s, s as f64, s as f64, false).unwrap();
        assert_close(&format!("texel.resize {w}x{h} x{s}"), &got, &want, 2e-6, 1e-6);
    }
}

#[test]
fn unpack_then_pack_round_trips_texels() {
    let c = ctx();
    let mut rng = Rng::new(42);
    let (w, h) = (7usize, 3usize);
    for fmt in [TexelFormat::Rgba8, TexelFormat::Rgba16F] {
        let rw = fmt.row_words(w);
        // Random texel words (finite f16 halves for rgba16float), padding included.
        let words: Vec<u32> = (0..rw * h)
            .map(|_| match fmt {
                TexelFormat::Rgba8 => rng.next_u64() as u32,
                TexelFormat::Rgba16F => {
                    let half = |r: &mut Rng| half::f16::from_f32(r.uniform() as f32).to_bits() as u32;
                    half(&mut rng) | half(&mut rng) << 16
                }
            })
            .collect();
        let wt = Tensor::from_slice(c, Shape::new(1, 1, h, rw), bytemuck::cast_slice(&words)).unwrap();
        let (rgb, alpha) = (poisoned(Shape::new(1, 3, h, w)), poisoned(Shape::new(1, 1, h, w)));
        run_and_read(texel::unpack(c, &wt, fmt, &rgb, &alpha).unwrap(), &rgb);
        let (rv, av) = (rgb.to_vec(c).unwrap(), alpha.to_vec(c).unwrap());
        // f64 reference of the unpack: texel (x, y), channel k.
        let texel = |x: usize, y: usize, k: usize| -> f64 {
            match fmt {
                TexelFormat::Rgba8 => ((words[y * rw + x] >> (8 * k)) & 0xff) as f64 / 255.0,
                TexelFormat::Rgba16F => {
                    let word = words[y * rw + 2 * x + k / 2];
                    half::f16::from_bits((word >> (16 * (k % 2))) as u16).to_f64()
                }
            }
        };
        let want_rgb: Vec<f64> = (0..3).flat_map(|k| (0..h * w).map(move |i| (k, i))).map(|(k, i)| texel(i % w, i / w, k)).collect();
        let want_a: Vec<f64> = (0..h * w).map(|i| texel(i % w, i / w, 3)).collect();
        assert_close(&format!("texel.unpack {fmt:?} rgb"), &rv, &want_rgb, 1e-7, 0.0);
        assert_close(&format!("texel.unpack {fmt:?} alpha"), &av, &want_a, 1e-7, 0.0);
        // Packing the planes gives the texels back (padding words aside).
        let back = Tensor::filled(c, Shape::new(1, 1, h, rw), 0.0).unwrap();
        ctx().run(&[texel::pack(c, &rgb, &alpha, fmt, &back).unwrap()]).unwrap();
        let bw: Vec<u32> = bytemuck::cast_slice(&back.to_vec(c).unwrap()).to_vec();
        let row = w * fmt.words_per_texel();
        for y in 0..h {
            assert_eq!(&bw[y * rw..y * rw + row], &words[y * rw..y * rw + row], "{fmt:?} row {y}");
        }
    }
}
