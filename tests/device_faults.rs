//! Device faults are errors, never panics or hangs (issue 15): what lavapipe
//! lets us provoke. A rejected GPU command (here: a buffer far over the
//! device's limits) and a lost device (here: destroyed under a model) each
//! surface as `Error::Device` from the next wait, and later work on a healthy
//! context is unaffected.

use std::path::PathBuf;

use wgsr::models::registry;
use wgsr::weights::ModelDir;
use wgsr::{Error, GpuContext, Shape, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn a_rejected_command_is_a_device_error_and_the_context_recovers() {
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let huge = ctx.info().limits.max_buffer_size.saturating_mul(4);
    // Straight through the public device: wgpu's default handler would panic here.
    let _b = ctx.device.create_buffer(&wgpu::BufferDescriptor { label: Some("too big"), size: huge, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    let e = ctx.sync().unwrap_err();
    assert!(matches!(e, Error::Device(_)), "{e:?}");
    assert!(e.to_string().contains("rejected") || e.to_string().contains("memory"), "{e}");
    // Reported once; the context still works.
    ctx.sync().unwrap();
    let t = Tensor::from_slice(&ctx, Shape::new(1, 1, 1, 3), &[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(t.to_vec(&ctx).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_lost_device_is_an_error_for_every_later_run() {
    let ctx = GpuContext::new().unwrap_or_else(|e| panic!("{e}"));
    let mut m = registry::load(&ctx, ModelDir::load(fixture("hcflow_sr_x4_tiny")).unwrap()).unwrap();
    let lr = wgsr::image_io::RgbImage::new(3, 2, vec![0.25; 18]).unwrap();
    m.upscale(&ctx, &lr, &Default::default(), &mut |_| {}).unwrap();
    ctx.device.destroy();
    for _ in 0..2 {
        let e = m.upscale(&ctx, &lr, &Default::default(), &mut |_| {}).err().expect("a destroyed device must fail");
        assert!(matches!(e, Error::Device(_)), "{e:?}");
        assert!(e.to_string().contains("lost"), "{e}");
    }
}
