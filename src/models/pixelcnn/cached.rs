//! The cached exact sampler (Fast PixelCNN++ style: only what the new
//! sub-pixel changes is recomputed; tools/PIXELCNN.md "Exact samplers").
//!
//! Per row r: `vrow` computes row r of every vertical layer from the cached
//! rows r-pv..r-1 of its input. Per sub-pixel (r, q, colour): `pixel`
//! computes column q of every horizontal layer from the cached columns
//! q-ph..q-1 of its input, and the logits at (r, q). Column q is recomputed
//! for each colour (the colour just drawn changes it); after the pixel's last
//! colour it is final and joins the caches. Graphs: cache_graphs.rs; there
//! is one `pixel` executor per colour, whose head computes only that
//! colour's 256 logits.

use crate::graph::Executor;
use crate::{GpuContext, Result};

use super::canvas::Canvas;
use super::config::{PixelCnnConfig, COLOURS, LEVELS};

/// Draw the first `steps` sub-pixels of `cv` with the `vrow` executor and
/// the `pixel` executor of each colour (built for `cv.n` images).
pub(super) fn sample(
    ctx: &GpuContext,
    cfg: &PixelCnnConfig,
    vrow: &mut Executor,
    mut pixel: [&mut Executor; COLOURS],
    cv: &mut Canvas,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let (n, h, w) = (cv.n, cv.h, cv.w);
    let (c, nb) = (cfg.prior_channels, cfg.prior_blocks);
    let (kin, kv, kh) = (cfg.prior_in_kernel, cfg.prior_v_kernel, cfg.prior_h_kernel);
    let (pin, pv, ph) = (kin / 2, kv / 2, kh / 2);
    let total = COLOURS * h * w;
    let row = n * c * w; // one row of a C-channel layer, [n, C, W]
    // The last pv rows of every block's vertical input v_i (v_0 = h_0), row y in slot y % pv.
    let mut vring = vec![vec![0f32; pv * row]; nb];
    // Row r of every block's horizontal input h_i, filled in as its columns become final.
    let mut hrow = vec![vec![0f32; row]; nb];
    // The pixel graph's inputs: every block's window history and vertical
    // column, [n][block][...] (cache_graphs.rs).
    let (mut vhist, mut hist) = (vec![0f32; n * c * kv * w], vec![0f32; n * nb * c * kh]);
    let (mut vcol, mut xwin) = (vec![0f32; n * nb * 2 * c], vec![0f32; n * COLOURS * kin * kin]);
    let names = |p: &str, r: std::ops::Range<usize>| r.map(|i| format!("{p}{i}")).collect::<Vec<_>>();
    let (vhist_n, vh_n, v_n) = (names("vhist", 0..nb), names("vh", 0..nb), names("v", 1..nb));
    let vrow_out: Vec<&str> = vh_n.iter().chain(&v_n).map(String::as_str).collect();
    let pixel_out = ["b", "hs"];
    let mut done = 0;
    for r in 0..h {
        if done == steps {
            break;
        }
        // Vertical stack, row r: windows of rows r-pv..r-1 (zeros above the image).
        for i in 0..nb {
            vhist.fill(0.0);
            for ky in 0..pv {
                let Some(y) = (r + ky).checked_sub(pv) else { continue };
                let src = &vring[i][(y % pv) * row..][..row];
                for sc in 0..n * c {
                    vhist[(sc * kv + ky) * w..][..w].copy_from_slice(&src[sc * w..][..w]);
                }
            }
            vrow.set_input(ctx, &vhist_n[i], &vhist)?;
        }
        vrow.submit(ctx)?;
        let outs = vrow.read_outputs(ctx, &vrow_out)?;
        let (vh, vs) = outs.split_at(nb);
        for (i, v) in vs.iter().enumerate() {
            vring[i + 1][(r % pv) * row..][..row].copy_from_slice(v);
        }
        for q in 0..w {
            // Per pixel: column q of each vh_i and columns q-ph..q-1 of each h_i.
            hist.fill(0.0);
            for s in 0..n {
                for i in 0..nb {
                    let at = s * nb + i;
                    for ch in 0..2 * c {
                        vcol[at * 2 * c + ch] = vh[i][(s * 2 * c + ch) * w + q];
                    }
                    for kx in 0..ph {
                        let Some(col) = (q + kx).checked_sub(ph) else { continue };
                        for ci in 0..c {
                            hist[(at * c + ci) * kh + kx] = hrow[i][(s * c + ci) * w + col];
                        }
                    }
                }
            }
            for e in pixel.iter_mut() {
                e.set_input(ctx, "vh", &vcol)?;
                e.set_input(ctx, "hist", &hist)?;
            }
            for (colour, e) in pixel.iter_mut().enumerate() {
                if done == steps {
                    return Ok(());
                }
                // The input conv's kin x kin window of the current image (zeros outside it).
                for s in 0..n {
                    for cc in 0..COLOURS {
                        for ky in 0..kin {
                            let y = (r + ky).checked_sub(pin).filter(|&y| y < h);
                            for kx in 0..kin {
                                let xq = (q + kx).checked_sub(pin).filter(|&x| x < w);
                                xwin[((s * COLOURS + cc) * kin + ky) * kin + kx] = match (y, xq) {
                                    (Some(y), Some(xq)) => cv.x[cv.at(s, cc, y, xq)],
                                    _ => 0.0,
                                };
                            }
                        }
                    }
                }
                e.set_input(ctx, "x_win", &xwin)?;
                e.submit(ctx)?;
                let last = colour + 1 == COLOURS;
                let outs = e.read_outputs(ctx, if last { &pixel_out } else { &pixel_out[..1] })?;
                cv.draw(&outs[0], LEVELS, colour * LEVELS, 1, 0, r, q, colour);
                if last {
                    let hs = &outs[1];
                    for s in 0..n {
                        for (i, hr) in hrow.iter_mut().enumerate() {
                            for ci in 0..c {
                                hr[(s * c + ci) * w + q] = hs[(s * nb + i) * c + ci];
                            }
                        }
                    }
                }
                done += 1;
                progress(done, total);
            }
        }
        // Row r of h_0 is row r of v_0 for the rows below.
        vring[0][(r % pv) * row..][..row].copy_from_slice(&hrow[0]);
    }
    Ok(())
}
