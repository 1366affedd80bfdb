//! `wgpu`: mobilebench's GPU engine. The zoo IR (BN folded) as WGSL compute kernels — direct
//! convolution for the stem and depthwise layers, a workgroup-tiled GEMM for pointwise
//! layers, squeeze-excite, pooling, FC, residual add — run through wgpu on Vulkan. Weights
//! are uploaded once at load; an iteration uploads the input, dispatches every kernel in one
//! compute pass and reads the logits back. GPU time comes from timestamp queries where the
//! adapter has them. libvulkan is loaded at run time: the binary builds without a driver.

mod engine;
mod profile;

use std::sync::OnceLock;
use std::time::Duration;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    ModelSource, OpTiming, Session, SourceKind, Workload,
};

pub use engine::{Engine, Gpu, Pointwise};

/// The adapter wgpu picks here: Vulkan, high performance preferred.
fn adapter() -> Result<&'static wgpu::Adapter, String> {
    static ADAPTER: OnceLock<Result<wgpu::Adapter, String>> = OnceLock::new();
    ADAPTER
        .get_or_init(|| {
            mobilebench_backend::prepare_vulkan_environment();
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends: wgpu::Backends::VULKAN,
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            }))
            .map_err(|e| {
                format!("no Vulkan adapter ({e}): install a GPU driver, or for software Vulkan on Debian 12 mesa-vulkan-drivers from bookworm-backports")
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`, for listings and the CSV.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// A device and queue on the adapter, with timestamp queries when it has them.
pub fn open() -> Result<Gpu, String> {
    let adapter = adapter()?;
    let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
    let required_features = if timestamps {
        wgpu::Features::TIMESTAMP_QUERY
    } else {
        wgpu::Features::empty()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("mobilebench"),
        required_features,
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| format!("cannot open the adapter: {e}"))?;
    Ok(Gpu {
        device,
        queue,
        info: adapter.get_info(),
        timestamps,
    })
}

pub struct WgpuBackend;

impl Backend for WgpuBackend {
    fn name(&self) -> &'static str {
        "wgpu"
    }
    fn engine(&self) -> &'static str {
        "wgpu"
    }
    fn description(&self) -> &'static str {
        "mobilebench's WGSL engine through wgpu on Vulkan (tiled pointwise GEMM, BN folded, fp32)"
    }
    fn availability(&self) -> Availability {
        match adapter() {
            Ok(a) => Availability::Available {
                detail: format!("wgpu 30, {}", describe(&a.get_info())),
            },
            Err(reason) => Availability::Unavailable { reason },
        }
    }
    fn runs_threads(&self, threads: u32) -> Result<(), String> {
        if threads == 1 {
            return Ok(());
        }
        Err(
            "wgpu computes on the GPU: it has no CPU thread count (its rows are at --threads 1)"
                .into(),
        )
    }
    fn software_adapter(&self) -> Option<String> {
        let info = adapter().ok()?.get_info();
        (info.device_type == wgpu::DeviceType::Cpu).then_some(info.name)
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::Zoo
    }
    fn load(
        &self,
        source: &ModelSource,
        _workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let model = source.require_zoo(self.name())?;
        if model.has_batch_norm() {
            return Err(BackendError::Unsupported {
                backend: self.name().into(),
                source_desc: source.describe(),
                why: "the wgpu engine folds batch norm into its kernels; --bn separate applies to native, tch and the exported files".into(),
            });
        }
        let gpu = open().map_err(|reason| BackendError::Unavailable {
            backend: self.name().into(),
            reason,
        })?;
        Ok(Box::new(WgpuSession {
            engine: Engine::new(gpu, model, Pointwise::Tiled),
            input_shape: model.graph.input.nhwc().to_vec(),
        }))
    }
}

struct WgpuSession {
    engine: Engine,
    input_shape: Vec<usize>,
}

fn fail(why: String) -> BackendError {
    BackendError::Run {
        backend: "wgpu".into(),
        why,
    }
}

impl Session for WgpuSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }
    fn output_len(&self) -> usize {
        self.engine.output_len()
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.engine.input_len())?;
        self.engine.set_input(input).map_err(fail)
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        self.engine.infer().map_err(fail)
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.engine.output_len())?;
        self.engine.read_output(output).map_err(fail)
    }
    fn settings(&self) -> BackendSettings {
        let gpu = self.engine.gpu();
        BackendSettings {
            library_version: "wgpu 30".into(),
            threads: 1,
            precision: "fp32".into(),
            adapter: describe(&gpu.info),
            settings: format!(
                "bn=folded;pointwise=tiled-32x32;timestamps={};driver={}",
                gpu.timestamps,
                gpu.info.driver_info.replace(';', ",")
            ),
        }
    }
    fn last_device_time(&self) -> Option<Duration> {
        self.engine.last_gpu_time()
    }
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        Some(self.engine.time_dispatches(runs).map_err(fail))
    }
}

#[cfg(test)]
mod tests;
