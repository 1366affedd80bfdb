//! The plan: one GPU buffer per value, weights uploaded once, one compute pipeline per kernel
//! and one bind group per dispatch, all made at load. A run writes the input, records every
//! dispatch into one compute pass (timestamped where the adapter can), copies the logits to a
//! mappable buffer, submits and waits.

use std::time::Duration;

use mobilebench_models::ir::Activation;
use mobilebench_models::{Layer, Model};
use wgpu::util::DeviceExt;

#[path = "attention.rs"]
mod attention;

const SHADERS: &str = include_str!("shaders.wgsl");
/// Threads per workgroup of the one-dimensional kernels (`@workgroup_size(64)`).
const GROUP: u32 = 64;
/// Output tile of the tiled pointwise kernel (32 × 32).
const TILE: u32 = 32;

/// Which pointwise kernel to plan: the tiled GEMM, or the one-thread-per-output baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointwise {
    Tiled,
    Naive,
}

fn act_code(a: Activation) -> u32 {
    match a {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Relu6 => 2,
        Activation::HardSwish => 3,
        Activation::HardSigmoid => 4,
        Activation::Gelu => 5,
    }
}

pub(crate) struct Dispatch {
    pub(crate) pipeline: usize,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) groups: (u32, u32),
    /// The IR node it computes part or all of (`--profile-ops`).
    pub(crate) node: String,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub timestamps: bool,
}

pub struct Engine {
    pub(crate) gpu: Gpu,
    pub(crate) pipelines: Vec<wgpu::ComputePipeline>,
    pub(crate) dispatches: Vec<Dispatch>,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
    readback: wgpu::Buffer,
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    input_len: usize,
    output_len: usize,
    last_gpu_time: Option<Duration>,
}

/// 1-D dispatch size for `n` threads, split over y beyond the 65535-group limit.
fn groups_1d(n: u32) -> (u32, u32) {
    let groups = n.div_ceil(GROUP);
    if groups <= 65535 {
        (groups, 1)
    } else {
        (65535, groups.div_ceil(65535))
    }
}

struct Builder<'a> {
    device: &'a wgpu::Device,
    layout: wgpu::BindGroupLayout,
    dummy: wgpu::Buffer,
    dispatches: Vec<Dispatch>,
    /// The IR node being planned.
    node: String,
}

impl Builder<'_> {
    fn storage(&self, data: &[f32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::STORAGE,
            })
    }

    fn empty(&self, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (len.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// `out[M × N] = src[M × K] · weight[K × N] + bias` on the planned pointwise kernel.
    fn pointwise(
        &mut self,
        kind: Pointwise,
        src: &wgpu::Buffer,
        (weight, bias): (&wgpu::Buffer, &wgpu::Buffer),
        out: &wgpu::Buffer,
        [m, n, k]: [u32; 3],
        act: u32,
    ) {
        let (pipeline, groups) = match kind {
            Pointwise::Tiled => (POINTWISE_TILED, (n.div_ceil(TILE), m.div_ceil(TILE))),
            Pointwise::Naive => (POINTWISE_NAIVE, groups_1d(m * n)),
        };
        let params = [m, n, k, act];
        self.dispatch(
            pipeline,
            src,
            Some(weight),
            Some(bias),
            out,
            &params,
            groups,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        &mut self,
        pipeline: usize,
        src: &wgpu::Buffer,
        weight: Option<&wgpu::Buffer>,
        bias: Option<&wgpu::Buffer>,
        dst: &wgpu::Buffer,
        params: &[u32],
        groups: (u32, u32),
    ) {
        let params = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(params),
                usage: wgpu::BufferUsages::STORAGE,
            });
        let buffers = [
            src,
            weight.unwrap_or(&self.dummy),
            bias.unwrap_or(&self.dummy),
            dst,
            &params,
        ];
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.layout,
            entries: &entries,
        });
        self.dispatches.push(Dispatch {
            pipeline,
            bind_group,
            groups,
            node: self.node.clone(),
        });
    }
}

// Pipeline indices, in ENTRY_POINTS order.
const CONV: usize = 0;
const POINTWISE_TILED: usize = 1;
const POINTWISE_NAIVE: usize = 2;
const POOL: usize = 3;
const FC: usize = 4;
const SCALE: usize = 5;
const ADD: usize = 6;
const LOGITS: usize = 7;
const SOFTMAX: usize = 8;
pub(crate) const ENTRY_POINTS: [&str; 9] = [
    "conv",
    "pointwise_tiled",
    "pointwise_naive",
    "global_avg_pool",
    "fully_connected",
    "scale_channels",
    "add",
    "attention_logits",
    "softmax_rows",
];

fn layout_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Engine {
    /// Plans `model` on `gpu`, folding any batch norm it still has into the kernels.
    pub fn new(gpu: Gpu, model: &Model, pointwise: Pointwise) -> Engine {
        let folded = model.fold_batch_norm();
        let graph = &folded.graph;
        let device = &gpu.device;
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("mobilebench"),
            entries: &[
                layout_entry(0, true),
                layout_entry(1, true),
                layout_entry(2, true),
                layout_entry(3, false),
                layout_entry(4, true),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("mobilebench kernels"),
            source: wgpu::ShaderSource::Wgsl(SHADERS.into()),
        });
        let pipelines = ENTRY_POINTS
            .iter()
            .map(|entry| {
                device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(entry),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(entry),
                    compilation_options: Default::default(),
                    cache: None,
                })
            })
            .collect();
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let mut b = Builder {
            device,
            layout,
            dummy,
            dispatches: Vec::new(),
            node: String::new(),
        };
        let mut values: Vec<wgpu::Buffer> = vec![b.empty(graph.input.len())];
        for (node, layer) in folded.layers() {
            b.node = node.name.clone();
            let input = graph.value_shape(node.inputs[0]);
            let out = b.empty(node.output.len());
            let src = &values[node.inputs[0]];
            match layer {
                // Folded above: no BN.
                Layer::Conv {
                    conv: c,
                    kernel,
                    bias,
                    ..
                } => {
                    let weight = b.storage(kernel);
                    let bias =
                        b.storage(&bias.map_or_else(|| vec![0.0; c.out_channels], <[f32]>::to_vec));
                    let act = act_code(c.activation);
                    if c.is_pointwise() {
                        let (m, n, k) = (
                            (input.h * input.w) as u32,
                            c.out_channels as u32,
                            c.in_channels as u32,
                        );
                        b.pointwise(pointwise, src, (&weight, &bias), &out, [m, n, k], act);
                    } else {
                        let o = node.output;
                        let params = [
                            input.h,
                            input.w,
                            input.c,
                            o.h,
                            o.w,
                            o.c,
                            c.kernel,
                            c.stride,
                            c.padding.top,
                            c.padding.left,
                            c.groups,
                        ]
                        .map(|v| v as u32);
                        let mut p = params.to_vec();
                        p.push(act);
                        b.dispatch(
                            CONV,
                            src,
                            Some(&weight),
                            Some(&bias),
                            &out,
                            &p,
                            groups_1d(o.len() as u32),
                        );
                    }
                }
                Layer::SqueezeExcite { se, weights: w } => {
                    let (c, s) = (se.channels as u32, se.squeeze as u32);
                    let pooled = b.empty(se.channels);
                    let squeezed = b.empty(se.squeeze);
                    let gate = b.empty(se.channels);
                    let pixels = (input.h * input.w) as u32;
                    b.dispatch(POOL, src, None, None, &pooled, &[pixels, c], groups_1d(c));
                    let (rw, rb) = (b.storage(w.reduce), b.storage(w.reduce_bias));
                    b.dispatch(
                        FC,
                        &pooled,
                        Some(&rw),
                        Some(&rb),
                        &squeezed,
                        &[c, s, act_code(Activation::Relu)],
                        groups_1d(s),
                    );
                    let (ew, eb) = (b.storage(w.expand), b.storage(w.expand_bias));
                    b.dispatch(
                        FC,
                        &squeezed,
                        Some(&ew),
                        Some(&eb),
                        &gate,
                        &[s, c, act_code(Activation::HardSigmoid)],
                        groups_1d(c),
                    );
                    let len = input.len() as u32;
                    b.dispatch(
                        SCALE,
                        src,
                        Some(&gate),
                        None,
                        &out,
                        &[len, c],
                        groups_1d(len),
                    );
                }
                Layer::GlobalAvgPool => {
                    let c = input.c as u32;
                    b.dispatch(
                        POOL,
                        src,
                        None,
                        None,
                        &out,
                        &[(input.h * input.w) as u32, c],
                        groups_1d(c),
                    );
                }
                Layer::FullyConnected { fc, weight, bias } => {
                    let (i, o) = (fc.in_features as u32, fc.out_features as u32);
                    let (w, bb) = (b.storage(weight), b.storage(bias));
                    b.dispatch(
                        FC,
                        src,
                        Some(&w),
                        Some(&bb),
                        &out,
                        &[i, o, act_code(fc.activation)],
                        groups_1d(o),
                    );
                }
                Layer::Add => {
                    let len = node.output.len() as u32;
                    let other = &values[node.inputs[1]];
                    b.dispatch(ADD, src, Some(other), None, &out, &[len], groups_1d(len));
                }
                Layer::Attention { attn, weights } => {
                    b.attention(pointwise, src, &out, attn, weights, input)
                }
            }
            values.push(out);
        }
        let output_len = graph.output().len();
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("logits readback"),
            size: (output_len * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let queries = gpu.timestamps.then(|| {
            let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: None,
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            });
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        let dispatches = std::mem::take(&mut b.dispatches);
        let output = values.pop().expect("a graph has nodes");
        let input = values.swap_remove(0);
        Engine {
            gpu,
            pipelines,
            dispatches,
            input,
            output,
            readback,
            queries,
            input_len: graph.input.len(),
            output_len,
            last_gpu_time: None,
        }
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }
    pub fn input_len(&self) -> usize {
        self.input_len
    }
    pub fn output_len(&self) -> usize {
        self.output_len
    }
    /// GPU time of the last run's compute pass, from timestamp queries.
    pub fn last_gpu_time(&self) -> Option<Duration> {
        self.last_gpu_time
    }

    /// Uploads the input and waits until it is on the device.
    pub fn set_input(&mut self, input: &[f32]) -> Result<(), String> {
        self.gpu
            .queue
            .write_buffer(&self.input, 0, bytemuck::cast_slice(input));
        self.gpu.queue.submit([]);
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the input upload failed: {e}"))?;
        Ok(())
    }

    /// One inference on the uploaded input: every step dispatched in one compute pass, the
    /// logits copied into the readback buffer on the device, and a wait for the GPU. With
    /// timestamp queries, their 16 bytes are read back too (the GPU time of the pass).
    pub fn infer(&mut self) -> Result<(), String> {
        let (device, queue) = (&self.gpu.device, &self.gpu.queue);
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let timestamp_writes =
                self.queries
                    .as_ref()
                    .map(|(set, _, _)| wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            });
            for d in &self.dispatches {
                pass.set_pipeline(&self.pipelines[d.pipeline]);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups.0, d.groups.1, 1);
            }
        }
        let bytes = (self.output_len * 4) as u64;
        encoder.copy_buffer_to_buffer(&self.output, 0, &self.readback, 0, bytes);
        if let Some((set, resolve, read)) = &self.queries {
            encoder.resolve_query_set(set, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        queue.submit([encoder.finish()]);
        if let Some((_, _, read)) = &self.queries {
            read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the GPU failed: {e}"))?;
        if let Some((_, _, read)) = &self.queries {
            let ticks: [u64; 2] = {
                let data = read
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| format!("reading the timestamps failed: {e}"))?;
                let t: &[u64] = bytemuck::cast_slice(&data);
                [t[0], t[1]]
            };
            read.unmap();
            let period = f64::from(queue.get_timestamp_period());
            let ns = ticks[1].saturating_sub(ticks[0]) as f64 * period;
            self.last_gpu_time = Some(Duration::from_nanos(ns as u64));
        }
        Ok(())
    }

    /// Maps the readback buffer (the last inference's logits) and copies it out.
    pub fn read_output(&mut self, output: &mut [f32]) -> Result<(), String> {
        self.readback
            .slice(..)
            .map_async(wgpu::MapMode::Read, |_| {});
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| format!("waiting for the logits failed: {e}"))?;
        {
            let data = self
                .readback
                .slice(..)
                .get_mapped_range()
                .map_err(|e| format!("reading the logits back failed: {e}"))?;
            output.copy_from_slice(bytemuck::cast_slice(&data));
        }
        self.readback.unmap();
        Ok(())
    }

    /// Upload, inference, read back: for tests and examples.
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), String> {
        self.set_input(input)?;
        self.infer()?;
        self.read_output(output)
    }
}
