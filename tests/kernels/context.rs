//! GPU context and tensor plumbing: adapter selection errors, host-owned
//! devices, binding limits, uploads.

use crate::common::*;
use wgsr::gpu::{ContextOptions, GpuContext};
use wgsr::ops::{eager, elementwise};
use wgsr::{Error, Shape, Tensor};

#[test]
fn unknown_backend_is_a_clear_error() {
    let err = GpuContext::with_options(&ContextOptions { backend: Some("glide".into()), adapter: None }).err().unwrap();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("glide"), "{err}");
}

#[test]
fn unmatched_adapter_lists_the_available_ones() {
    let err = GpuContext::with_options(&ContextOptions { backend: None, adapter: Some("no-such-gpu-xyz".into()) })
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::NoAdapter(_)), "{msg}");
    assert!(msg.contains("no-such-gpu-xyz") && msg.contains("[0]"), "{msg}");
}

#[test]
fn host_owned_device_is_used_as_is() {
    // A host application creates its own device; wgsr must run on it.
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let host = GpuContext::from_device(device.clone(), queue, None);
    assert_eq!(host.info().name, "host-provided device");
    let s = Shape::new(1, 2, 3, 5);
    let mut rng = Rng::new(7);
    let av = rng.vec(s.numel(), -1.0, 1.0);
    let bv = rng.vec(s.numel(), -1.0, 1.0);
    let a = Tensor::from_slice(&host, s, &av).unwrap();
    let b = Tensor::from_slice(&host, s, &bv).unwrap();
    let out = eager(&host, s, |o| elementwise::add(&host, &a, &b, o)).unwrap();
    let got = out.to_vec(&host).unwrap();
    let want: Vec<f64> = av.iter().zip(&bv).map(|(x, y)| *x as f64 + *y as f64).collect();
    assert_close("context.host_device_add", &got, &want, 1e-6, 1e-6);
}

#[test]
fn tensor_over_binding_limit_is_refused() {
    let c = ctx();
    let limit = c.max_binding_bytes();
    let too_many = (limit / 4 + 1) as usize;
    let err = Tensor::empty(c, Shape::new(1, 1, 1, too_many)).unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
    assert!(err.to_string().contains("MiB"), "{err}");
}

#[test]
fn upload_errors_and_f16() {
    let c = ctx();
    let s = Shape::new(2, 1, 2, 2);
    assert!(matches!(Tensor::from_slice(c, s, &[1.0; 7]), Err(Error::Shape(_))));
    assert!(matches!(Tensor::empty(c, Shape::new(0, 1, 1, 1)), Err(Error::Shape(_))));
    let t = Tensor::from_slice(c, s, &[1.0; 8]).unwrap();
    assert!(t.reshape(Shape::new(1, 1, 1, 7)).is_err());
    let vals: Vec<f32> = (0..8).map(|i| i as f32 * 0.37 - 1.1).collect();
    let h: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
    let t = Tensor::from_f16(c, s, &h).unwrap();
    let got = t.to_vec(c).unwrap();
    let want: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
    assert_exact("tensor.from_f16", &got, &want);
}
