//! The naive and row exact samplers (the cached one: cached.rs).

use crate::graph::Executor;
use crate::{GpuContext, Result};

use super::canvas::Canvas;
use super::config::{PixelCnnConfig, COLOURS, LOGITS};

/// The whole prior (`prior` graph) on the current image for every sub-pixel.
pub(super) fn naive(ctx: &GpuContext, e: &mut Executor, cv: &mut Canvas, steps: usize, progress: &mut dyn FnMut(usize, usize)) -> Result<()> {
    let (h, w) = (cv.h, cv.w);
    let total = COLOURS * h * w;
    let mut done = 0;
    for r in 0..h {
        for q in 0..w {
            for c in 0..COLOURS {
                if done == steps {
                    return Ok(());
                }
                e.set_input(ctx, "hr", &cv.x)?;
                e.run(ctx)?;
                let b = e.read_output(ctx, "b")?;
                cv.draw(&b, LOGITS, 0, h * w, r * w + q, r, q, c);
                done += 1;
                progress(done, total);
            }
        }
    }
    Ok(())
}

/// Per row the `vert` graph on the current image, per sub-pixel the 1-row `row` graph.
pub(super) fn row(
    ctx: &GpuContext,
    cfg: &PixelCnnConfig,
    ve: &mut Executor,
    re: &mut Executor,
    cv: &mut Canvas,
    steps: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let (n, h, w) = (cv.n, cv.h, cv.w);
    let total = COLOURS * h * w;
    let (nb, c2, kin) = (cfg.prior_blocks, 2 * cfg.prior_channels, cfg.prior_in_kernel);
    let pin = kin / 2;
    let mut rows = vec![0f32; n * COLOURS * kin * w];
    let mut vrow = vec![0f32; n * c2 * w];
    let mut done = 0;
    for r in 0..h {
        if done == steps {
            return Ok(());
        }
        ve.set_input(ctx, "hr", &cv.x)?;
        ve.run(ctx)?;
        for i in 0..nb {
            let vh = ve.read_output(ctx, &format!("vh{i}"))?; // [n, 2C, H, W]
            for (sc, dst) in vrow.chunks_mut(w).enumerate() {
                dst.copy_from_slice(&vh[(sc * h + r) * w..][..w]);
            }
            re.set_input(ctx, &format!("vh{i}"), &vrow)?;
        }
        for q in 0..w {
            for c in 0..COLOURS {
                if done == steps {
                    return Ok(());
                }
                // rows r-pin ..= r+pin of x; outside the image: 0 (the naive conv's zero padding)
                for sc in 0..n * COLOURS {
                    for k in 0..kin {
                        let dst = &mut rows[(sc * kin + k) * w..][..w];
                        match (r + k).checked_sub(pin).filter(|&y| y < h) {
                            Some(y) => dst.copy_from_slice(&cv.x[(sc * h + y) * w..][..w]),
                            None => dst.fill(0.0),
                        }
                    }
                }
                re.set_input(ctx, "hr_rows", &rows)?;
                re.run(ctx)?;
                let b = re.read_output(ctx, "b")?; // [n, 768, 1, W]
                cv.draw(&b, LOGITS, 0, w, q, r, q, c);
                done += 1;
                progress(done, total);
            }
        }
    }
    Ok(())
}
