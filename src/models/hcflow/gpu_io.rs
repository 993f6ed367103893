//! HCFlow with GPU tensors in and out, for callers whose image already lives
//! on the device (`wgsr::texture`): the LR is copied into the graph's input
//! on the GPU and the reverse pass is submitted without waiting.

use super::{graph, HcFlow, Pass};
use crate::{Error, GpuContext, Result, Tensor};

impl HcFlow {
    /// Submit the reverse pass on an LR tensor `[1, 3, h, w]` in [0, 1] and
    /// return the HR tensor `[1, 3, h*s, w*s]` (clamped to [0, 1]; valid
    /// until the next call on this model). Latents are the same seeded draw
    /// as [`HcFlow::upscale`], so both give the same image. Nothing waits:
    /// the work is ordered on the queue, and faults surface at the next wait.
    pub fn upscale_tensor(&mut self, ctx: &GpuContext, lr: &Tensor, heat: Option<f32>, seed: u64) -> Result<&Tensor> {
        let shape = lr.shape();
        self.check_lr(shape)?;
        if shape.n() != 1 {
            return Err(Error::InvalidArgument(format!("HCFlow upscale_tensor takes one image, got {shape}")));
        }
        let heat = heat.unwrap_or(self.cfg.default_heat);
        if !heat.is_finite() || heat < 0.0 {
            return Err(Error::InvalidArgument(format!("HCFlow: heat (temperature) must be >= 0, got {heat}")));
        }
        let eps = self.sample_eps(shape, seed);
        let ex = self.executor(ctx, Pass::Reverse, shape, false)?;
        let input = ex.input_tensor("lr")?;
        if lr.dtype() == input.dtype() {
            let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("lr -> graph input") });
            enc.copy_buffer_to_buffer(lr.buffer(), 0, input.buffer(), 0, lr.padded_bytes());
            ctx.queue.submit([enc.finish()]);
        } else {
            // An f32 texture into an f16 graph (or back): one converting copy.
            ctx.submit(&[crate::ops::elementwise::affine(ctx, lr, input, 1.0, 0.0)?]);
        }
        for (l, e) in eps.iter().enumerate() {
            ex.set_input(ctx, &graph::eps_name(l), e)?;
        }
        ex.set_param(graph::HEAT, heat as f64)?;
        ex.submit(ctx)?;
        ex.output("hr")
    }
}
