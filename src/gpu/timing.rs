//! Timing of dispatch segments: GPU timestamp queries around one compute pass
//! per segment where the device supports them, otherwise wall-clock time
//! with a full sync after each segment (includes submit overhead).

use std::time::Instant;

use crate::gpu::{Dispatch, GpuContext};
use crate::{Error, Result};

/// How segment times were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingSource {
    GpuTimestamps,
    WallClock,
}

impl std::fmt::Display for TimingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimingSource::GpuTimestamps => "GPU timestamp queries",
            TimingSource::WallClock => "wall clock (no timestamp queries on this device)",
        })
    }
}

impl GpuContext {
    pub fn timing_source(&self) -> TimingSource {
        if self.info().features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            TimingSource::GpuTimestamps
        } else {
            TimingSource::WallClock
        }
    }

    /// Run each segment once, in order, and return its time in milliseconds.
    pub fn time_segments(&self, segments: &[&[Dispatch]]) -> Result<Vec<f64>> {
        match self.timing_source() {
            TimingSource::WallClock => segments
                .iter()
                .map(|seg| {
                    let t0 = Instant::now();
                    self.run(seg)?;
                    Ok(t0.elapsed().as_secs_f64() * 1e3)
                })
                .collect(),
            TimingSource::GpuTimestamps => {
                let mut out = Vec::with_capacity(segments.len());
                // A query set holds at most 4096 timestamps: two per segment.
                for chunk in segments.chunks((wgpu::QUERY_SET_MAX_QUERIES / 2) as usize) {
                    out.extend(self.time_chunk(chunk)?);
                }
                Ok(out)
            }
        }
    }

    fn time_chunk(&self, segments: &[&[Dispatch]]) -> Result<Vec<f64>> {
        let count = 2 * segments.len() as u32;
        let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("wgsr timing"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = count as u64 * 8;
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("timing") });
        for (i, seg) in segments.iter().enumerate() {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timed"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &qs,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            for d in seg.iter() {
                d.encode(&mut pass);
            }
        }
        enc.resolve_query_set(&qs, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        readback.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.sync()?;
        rx.recv()
            .map_err(|_| Error::Device("timestamp readback never completed".into()))?
            .map_err(|e| Error::Device(format!("timestamp readback failed: {e}")))?;
        let ticks: Vec<u64> = {
            let view = readback.get_mapped_range(..).map_err(|e| Error::Device(format!("timestamp map failed: {e}")))?;
            bytemuck::cast_slice::<u8, u64>(&view).to_vec()
        };
        readback.unmap();
        let period_ns = self.queue.get_timestamp_period() as f64;
        Ok(ticks.chunks_exact(2).map(|p| p[1].saturating_sub(p[0]) as f64 * period_ns * 1e-6).collect())
    }
}
