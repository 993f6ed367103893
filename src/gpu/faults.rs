//! GPU faults become errors, never panics or hangs: on devices wgsr creates,
//! wgpu's uncaptured errors (validation, out of memory) and device loss are
//! recorded instead of hitting wgpu's default handler (which panics), and the
//! next `sync` reports them as `Error::Device`. A device a host application
//! hands in keeps the host's own handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::gpu::GpuContext;
use crate::{Error, Result};

#[derive(Default, Debug)]
pub(crate) struct Faults {
    first: Mutex<Option<String>>,
    lost: AtomicBool,
}

impl Faults {
    fn record(&self, what: String) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(what);
    }

    /// Route the device's errors and loss into `self`.
    pub(crate) fn watch(self: &Arc<Self>, device: &wgpu::Device) {
        let f = self.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let kind = match e {
                wgpu::Error::OutOfMemory { .. } => "out of GPU memory",
                wgpu::Error::Validation { .. } => "a GPU command was rejected",
                _ => "GPU error",
            };
            f.record(format!("{kind}: {e}"));
        }));
        let f = self.clone();
        device.set_device_lost_callback(move |reason, msg| {
            f.lost.store(true, Ordering::SeqCst);
            f.record(format!("the GPU device was lost ({reason:?}): {msg}"));
        });
    }
}

impl GpuContext {
    /// The first recorded fault since the last check, as `Error::Device`.
    /// After a device loss every later call reports it again.
    pub fn check_faults(&self) -> Result<()> {
        let mut first = self.faults.first.lock().unwrap_or_else(|p| p.into_inner());
        let lost = self.faults.lost.load(Ordering::SeqCst);
        match first.take() {
            Some(m) => {
                if lost {
                    *first = Some(m.clone());
                }
                Err(Error::Device(format!("{m} (results of this run are not valid; a lost device needs a new context)")))
            }
            None => Ok(()),
        }
    }
}
