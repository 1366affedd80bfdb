//! `tch`, `tch-channels-last` and `tch-cuda`: libtorch through the tch crate, the model built
//! directly from the zoo IR and its weights (no Python, no TorchScript). Inference, or with
//! `--mode train` a training step (forward, cross-entropy, backward, SGD) on any batch size.
//!
//! libtorch is linked at build time (tch compiles a C++ wrapper against it); `scripts/setup`
//! provides a CPU-only libtorch 2.11. `tch-cuda` runs where a CUDA libtorch 2.11 is found
//! first on the library path at run time (a Python venv's `torch/lib`).

mod net;

use std::sync::Once;
use std::time::Instant;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings, Mode,
    ModelSource, OpTiming, Session, SourceKind, Workload,
};
use tch::{Device, Kind, Tensor};

pub use net::Layout;
use net::{fill, Net};

/// The libtorch version tch 0.24 is written for (checked when tch is built).
pub const LIBTORCH_VERSION: &str = "2.11.0";
/// SGD learning rate of the training step. Small, so a thousand steps on one synthetic
/// batch stay finite; its value does not change the work done.
pub const LEARNING_RATE: f64 = 1e-3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// CPU, contiguous NCHW tensors.
    Cpu,
    /// CPU, channels_last tensors.
    CpuChannelsLast,
    /// CUDA device 0, contiguous NCHW.
    Cuda,
}

pub struct TchBackend {
    pub variant: Variant,
}

impl TchBackend {
    pub fn all() -> [TchBackend; 3] {
        [Variant::Cpu, Variant::CpuChannelsLast, Variant::Cuda]
            .map(|variant| TchBackend { variant })
    }

    fn device(&self) -> Device {
        match self.variant {
            Variant::Cuda => Device::Cuda(0),
            _ => Device::Cpu,
        }
    }

    fn layout(&self) -> Layout {
        match self.variant {
            Variant::CpuChannelsLast => Layout::ChannelsLast,
            _ => Layout::Contiguous,
        }
    }
}

/// The libtorch file this process loaded, from the dynamic linker's map.
pub fn loaded_library(name: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next() == Some(name))
        .map(str::to_string)
}

/// `threads` intra-op threads (libtorch's own default is one per physical core) and one
/// inter-op thread, set once per process (libtorch refuses a second inter-op setting). The
/// threads inherit the cores the harness confined the worker to.
fn set_threads(threads: u32) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| tch::set_num_interop_threads(1));
    tch::set_num_threads(threads.max(1) as i32);
}

impl Backend for TchBackend {
    fn name(&self) -> &'static str {
        match self.variant {
            Variant::Cpu => "tch",
            Variant::CpuChannelsLast => "tch-channels-last",
            Variant::Cuda => "tch-cuda",
        }
    }
    fn engine(&self) -> &'static str {
        "tch"
    }
    fn description(&self) -> &'static str {
        match self.variant {
            Variant::Cpu => {
                "libtorch 2.11 via tch, built from the zoo IR (CPU, NCHW contiguous, --threads intra-op threads)"
            }
            Variant::CpuChannelsLast => {
                "libtorch 2.11 via tch, built from the zoo IR (CPU, channels_last, --threads intra-op threads)"
            }
            Variant::Cuda => {
                "libtorch 2.11 via tch on CUDA device 0 (needs a CUDA libtorch on the library path)"
            }
        }
    }
    fn availability(&self) -> Availability {
        let cpu = loaded_library("libtorch_cpu.so").unwrap_or_else(|| "libtorch_cpu.so".into());
        if self.variant != Variant::Cuda {
            return Availability::Available {
                detail: format!("libtorch {LIBTORCH_VERSION} ({cpu})"),
            };
        }
        if tch::Cuda::is_available() {
            return Availability::Available {
                detail: format!(
                    "libtorch {LIBTORCH_VERSION} CUDA, {} device(s), cuDNN {}",
                    tch::Cuda::device_count(),
                    if tch::Cuda::cudnn_is_available() {
                        "yes"
                    } else {
                        "no"
                    }
                ),
            };
        }
        let reason = match loaded_library("libtorch_cuda.so") {
            Some(cuda) => format!(
                "libtorch's CUDA library is loaded ({cuda}) but CUDA reports no usable device: check the NVIDIA driver (nvidia-smi)"
            ),
            None => format!(
                "the libtorch loaded is CPU-only ({cpu}); to time CUDA, run bench with LD_LIBRARY_PATH=<venv>/lib/python3.X/site-packages/torch/lib of a CUDA torch {LIBTORCH_VERSION} install on a machine with an NVIDIA GPU"
            ),
        };
        Availability::Unavailable { reason }
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::Zoo
    }
    fn runs_threads(&self, threads: u32) -> Result<(), String> {
        if self.variant == Variant::Cuda && threads > 1 {
            return Err("tch-cuda computes on the GPU: it has no CPU thread count (its rows are at --threads 1)".into());
        }
        Ok(())
    }
    fn supports(&self, workload: &Workload) -> Result<(), String> {
        if workload.batch == 0 {
            return Err("batch 0 has nothing to run".into());
        }
        Ok(())
    }
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let model = source.require_zoo(self.name())?;
        if let Err(why) = self.supports(workload) {
            return Err(BackendError::Unsupported {
                backend: self.name().into(),
                source_desc: source.describe(),
                why,
            });
        }
        if let Availability::Unavailable { reason } = self.availability() {
            return Err(BackendError::Unavailable {
                backend: self.name().into(),
                reason,
            });
        }
        set_threads(workload.threads);
        let device = self.device();
        let mut net = Net::new(model, self.layout(), device);
        let shape = model.graph.input;
        let batch = workload.batch;
        let classes = model.graph.output().len();
        let train = workload.mode == Mode::Train;
        let targets = train.then(|| {
            // Fixed, spread-out labels: the loss is a real cross-entropy, not a constant.
            let labels: Vec<i64> = (0..batch as i64)
                .map(|i| (i * 389 + 7) % classes as i64)
                .collect();
            Tensor::from_slice(&labels).to_device(device)
        });
        if train {
            for p in net.parameters() {
                let _ = p.set_requires_grad(true);
            }
        }
        Ok(Box::new(TchSession {
            name: self.name(),
            net,
            device,
            host_input: Tensor::zeros(
                [batch as i64, shape.h as i64, shape.w as i64, shape.c as i64],
                (Kind::Float, Device::Cpu),
            ),
            input: None,
            logits: None,
            input_shape: vec![batch, shape.h, shape.w, shape.c],
            output_len: batch * classes,
            targets,
            steps: 0,
            bn_separate: model.has_batch_norm(),
        }))
    }
}

struct TchSession {
    name: &'static str,
    net: Net,
    device: Device,
    /// NHWC on the host, filled from the caller's buffer by `set_input`.
    host_input: Tensor,
    /// The network's input: NCHW-shaped on the session's device in its layout, made by
    /// `set_input` (the transpose and the upload are input placement, not inference).
    input: Option<Tensor>,
    /// The last iteration's logits, on the device.
    logits: Option<Tensor>,
    input_shape: Vec<usize>,
    output_len: usize,
    /// Labels of the training step; `None` for inference.
    targets: Option<Tensor>,
    /// Training steps taken, for messages.
    steps: u64,
    bn_separate: bool,
}

impl TchSession {
    /// The NCHW-shaped input on the session's device, in its layout.
    fn device_input(&self) -> Tensor {
        // NHWC memory viewed as NCHW is exactly channels_last; contiguous NCHW is a copy.
        let nchw = self.host_input.permute([0, 3, 1, 2]);
        let on_device = match self.net.layout() {
            Layout::ChannelsLast => nchw,
            Layout::Contiguous => nchw.contiguous(),
        };
        on_device.to_device(self.device)
    }

    fn train_step(&mut self, input: &Tensor, targets: &Tensor) -> Result<Tensor, BackendError> {
        let logits = self.net.forward(input, true);
        let loss = logits.cross_entropy_for_logits(targets);
        // A diverged step computes on infinities and NaNs: not a timing of training.
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(BackendError::Run {
                backend: self.name.into(),
                why: format!(
                    "training diverged (loss {value}) at step {}: this model's logits are too large for SGD at lr {LEARNING_RATE}; try a larger resolution",
                    self.steps
                ),
            });
        }
        self.steps += 1;
        loss.backward();
        let _guard = tch::no_grad_guard();
        for p in self.net.parameters() {
            let step = p.grad() * LEARNING_RATE;
            let _ = p.g_sub_(&step);
            p.zero_grad();
        }
        Ok(logits.detach())
    }
}

impl TchSession {
    fn fail(&self, why: String) -> BackendError {
        BackendError::Run {
            backend: self.name.into(),
            why,
        }
    }

    fn synchronize(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

impl Session for TchSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.host_input.numel())?;
        fill(&mut self.host_input, input);
        self.input = Some(self.device_input());
        self.synchronize();
        Ok(())
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        let Some(input) = self.input.take() else {
            return Err(self.fail("no input: infer before set_input".into()));
        };
        // The labels are taken out for the step (it borrows the session) and put back.
        let logits = match self.targets.take() {
            Some(targets) => {
                let step = self.train_step(&input, &targets);
                self.targets = Some(targets);
                step
            }
            None => {
                let _guard = tch::no_grad_guard();
                Ok(self.net.forward(&input, false))
            }
        };
        self.input = Some(input);
        self.logits = Some(logits?);
        // CUDA launches return before the work is done: wait for it.
        self.synchronize();
        Ok(())
    }
    /// Times every layer of the network as it runs (tch reaches no libtorch profiler): an
    /// inference at a time, the clock read after each IR layer has been issued (and, on
    /// CUDA, finished), so the layers' times add up to the forward pass.
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        if self.targets.is_some() {
            return Some(Err(self.fail(
                "--profile-ops times inference; a training step is not split by layer".into(),
            )));
        }
        let Some(input) = self.input.take() else {
            return Some(Err(self.fail("no input: profile before set_input".into())));
        };
        let layers = self.net.layer_names().len();
        let mut per_layer: Vec<Vec<u64>> = vec![Vec::with_capacity(runs as usize); layers];
        let device = self.device;
        for _ in 0..runs.max(1) {
            let _guard = tch::no_grad_guard();
            let mut last = Instant::now();
            let logits = self.net.forward_observed(&input, false, &mut |i| {
                if let Device::Cuda(d) = device {
                    tch::Cuda::synchronize(d as i64);
                }
                let now = Instant::now();
                per_layer[i].push((now - last).as_nanos() as u64);
                last = now;
            });
            self.logits = Some(logits);
        }
        self.input = Some(input);
        let kind = |i: usize| self.net.layer_kind(i);
        Some(Ok(per_layer
            .into_iter()
            .enumerate()
            .map(|(i, ns)| {
                let name = self.net.layer_names()[i].clone();
                OpTiming::from_runs(name.clone(), kind(i), String::new(), String::new(), 0, ns)
                    .tied_to(name, "IR node")
            })
            .collect()))
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output_len)?;
        let Some(logits) = &self.logits else {
            return Err(self.fail("no output: read before the first inference".into()));
        };
        logits
            .to_device(Device::Cpu)
            .f_copy_data(output, self.output_len)
            .map_err(|e| self.fail(e.to_string()))
    }
    fn settings(&self) -> BackendSettings {
        let layout = match self.net.layout() {
            Layout::Contiguous => "contiguous",
            Layout::ChannelsLast => "channels_last",
        };
        let mode = match &self.targets {
            Some(_) => format!("train(cross_entropy,sgd lr={LEARNING_RATE})"),
            None => "inference(no_grad)".into(),
        };
        let bn = if self.bn_separate {
            "separate"
        } else {
            "folded"
        };
        BackendSettings {
            library_version: format!("libtorch {LIBTORCH_VERSION} (tch 0.24.0)"),
            threads: tch::get_num_threads() as u32,
            precision: "fp32".into(),
            adapter: match self.device {
                Device::Cuda(i) => format!("cuda:{i}"),
                _ => "cpu".into(),
            },
            settings: format!("memory_format={layout};bn={bn};step={mode}"),
        }
    }
}

#[cfg(test)]
mod tests;
