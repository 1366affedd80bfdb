//! `--profile-ops` for the wgpu engine: GPU time per dispatch from timestamp queries. The
//! profiled inference puts each dispatch in a compute pass of its own, timestamped at its
//! beginning and end (the adapter's `TIMESTAMP_QUERY`), so a dispatch's time is the GPU's,
//! not the host's; the passes' boundaries add a little time that the timed runs, one pass
//! for all, do not have. On a software adapter (llvmpipe) the "GPU" is the CPU rasteriser.

use mobilebench_backend::OpTiming;

use crate::engine::{Engine, ENTRY_POINTS};

impl Engine {
    /// Runs the uploaded input `runs` times, one timestamped pass per dispatch; the median
    /// GPU time of every dispatch, named after its IR node and kernel.
    pub fn time_dispatches(&mut self, runs: u32) -> Result<Vec<OpTiming>, String> {
        if !self.gpu.timestamps {
            return Err(format!(
                "the adapter ({}) has no timestamp queries, so no GPU time per dispatch",
                self.gpu.info.name
            ));
        }
        let (device, queue) = (&self.gpu.device, &self.gpu.queue);
        let n = self.dispatches.len();
        let count = (2 * n) as u32;
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("per-dispatch timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = 8 * u64::from(count);
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let period = f64::from(queue.get_timestamp_period());
        let mut per_dispatch: Vec<Vec<u64>> = vec![Vec::with_capacity(runs as usize); n];
        for _ in 0..runs.max(1) {
            let mut encoder = device.create_command_encoder(&Default::default());
            for (i, d) in self.dispatches.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &set,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    }),
                });
                pass.set_pipeline(&self.pipelines[d.pipeline]);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups.0, d.groups.1, 1);
            }
            encoder.resolve_query_set(&set, 0..count, &resolve, 0);
            encoder.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
            queue.submit([encoder.finish()]);
            read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
            device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
            {
                let data = read
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| format!("reading the timestamps failed: {e}"))?;
                let ticks: &[u64] = bytemuck::cast_slice(&data);
                for (i, times) in per_dispatch.iter_mut().enumerate() {
                    let t = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period;
                    times.push(t as u64);
                }
            }
            read.unmap();
        }
        Ok(self
            .dispatches
            .iter()
            .zip(per_dispatch)
            .map(|(d, ns)| {
                let kernel = ENTRY_POINTS[d.pipeline];
                OpTiming::from_runs(
                    format!("{} ({kernel})", d.node),
                    kernel.to_string(),
                    String::new(),
                    String::new(),
                    0,
                    ns,
                )
                .tied_to(d.node.clone(), "IR node")
            })
            .collect())
    }
}
