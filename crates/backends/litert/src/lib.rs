//! `litert-builtin`, `litert-xnnpack`, `litert-gpu` and `litert-gpu-fp16`: TensorFlow Lite
//! (LiteRT 2.3.0) through LiteRT's C API in `libLiteRt.so`, loaded at run time from the
//! provisioned PyPI wheel. `builtin` runs TFLite's own kernels (`kernel_mode = "builtin"`) on
//! one thread; `xnnpack` the XNNPACK delegate (LiteRT's default CPU path); the GPU variants
//! LiteRT's WebGPU accelerator (Dawn over Vulkan) at fp32 or at its default fp16 precision.
//! Whether the model was fully delegated is recorded in the settings column.

mod ffi;
mod profile;

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mobilebench_backend::{
    check_input_len, check_output_len, Availability, Backend, BackendError, BackendSettings,
    FileFormat, ModelSource, OpTiming, Session, SourceKind, Workload,
};
use mobilebench_runtimes::{self as runtimes, Installed, Platform, LITERT};

use ffi::{Api, Handle, RankedTensorType, STATUS_OK};

mod vulkan;

/// How many times a timed-out lock of a GPU output is retried (each waits LiteRT's timeout).
const LOCK_RETRIES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// TFLite's builtin kernels, no delegate.
    Builtin,
    /// The XNNPACK delegate.
    Xnnpack,
    /// The WebGPU accelerator, fp32 arithmetic.
    Gpu,
    /// The WebGPU accelerator at its default precision (fp16).
    GpuFp16,
}

impl Accelerator {
    pub const ALL: [Accelerator; 4] = [
        Accelerator::Builtin,
        Accelerator::Xnnpack,
        Accelerator::Gpu,
        Accelerator::GpuFp16,
    ];

    fn is_gpu(self) -> bool {
        matches!(self, Accelerator::Gpu | Accelerator::GpuFp16)
    }

    fn name(self) -> &'static str {
        match self {
            Accelerator::Builtin => "litert-builtin",
            Accelerator::Xnnpack => "litert-xnnpack",
            Accelerator::Gpu => "litert-gpu",
            Accelerator::GpuFp16 => "litert-gpu-fp16",
        }
    }
}

pub struct LiteRtBackend {
    pub accelerator: Accelerator,
}

fn installed() -> Result<Installed, String> {
    let platform = Platform::host().ok_or("no LiteRT wheel for this architecture")?;
    runtimes::locate(&LITERT, platform).ok_or_else(|| {
        format!(
            "LiteRT {} is not provisioned for {}: run `bench setup` (needs python3 with pip and PyPI)",
            LITERT.version,
            platform.name()
        )
    })
}

/// The API, loaded once per process.
fn api() -> Result<&'static Api, String> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(|| Api::load(&installed()?.main_library(&LITERT)))
        .as_ref()
        .map_err(Clone::clone)
}

impl Backend for LiteRtBackend {
    fn name(&self) -> &'static str {
        self.accelerator.name()
    }
    fn engine(&self) -> &'static str {
        "litert"
    }
    fn description(&self) -> &'static str {
        match self.accelerator {
            Accelerator::Builtin => {
                "LiteRT (TFLite) builtin CPU kernels, no delegate, --threads threads"
            }
            Accelerator::Xnnpack => {
                "LiteRT (TFLite) with the XNNPACK delegate, --threads threads (its pool)"
            }
            Accelerator::Gpu => "LiteRT's WebGPU accelerator (Vulkan), fp32 precision",
            Accelerator::GpuFp16 => "LiteRT's WebGPU accelerator (Vulkan), default fp16 precision",
        }
    }
    fn availability(&self) -> Availability {
        let found = installed().and_then(|i| api().map(|_| i));
        let found = match (found, self.accelerator.is_gpu()) {
            (Ok(i), true) => {
                vulkan::adapter().map(|a| format!("{}; {}", i.describe(), a.describe()))
            }
            (found, _) => found.map(|i| i.describe()),
        };
        match found {
            Ok(detail) => Availability::Available { detail },
            Err(reason) => Availability::Unavailable { reason },
        }
    }
    fn software_adapter(&self) -> Option<String> {
        if !self.accelerator.is_gpu() {
            return None;
        }
        vulkan::adapter()
            .ok()
            .filter(|a| a.software)
            .map(|a| a.name)
    }
    fn runtime(&self) -> Option<&'static str> {
        Some(LITERT.name)
    }
    fn emulation_blocker(&self) -> Option<&'static str> {
        Some("LiteRT's CPU kernels read the host's /proc/cpuinfo under qemu-user and crash")
    }
    fn accepts(&self, kind: SourceKind) -> bool {
        kind == SourceKind::File(FileFormat::Tflite)
    }
    fn runs_threads(&self, threads: u32) -> Result<(), String> {
        if self.accelerator.is_gpu() && threads > 1 {
            return Err(format!(
                "{} computes on the GPU: it has no CPU thread count (its rows are at --threads 1)",
                self.name()
            ));
        }
        Ok(())
    }
    fn runs_int8(&self) -> Result<(), String> {
        if self.accelerator.is_gpu() {
            return Err(format!(
                "{}: LiteRT's GPU accelerator computes in floating point; an int8 model would run on it dequantized or fall back to the CPU, which is not an int8 GPU measurement",
                self.name()
            ));
        }
        Ok(())
    }
    fn load(
        &self,
        source: &ModelSource,
        workload: &Workload,
    ) -> Result<Box<dyn Session>, BackendError> {
        let path = source.require_file(self.name(), FileFormat::Tflite)?;
        let api = api().map_err(|reason| BackendError::Unavailable {
            backend: self.name().into(),
            reason,
        })?;
        // LiteRT trusts the flatbuffer and crashes on a damaged one: verify it first.
        let load_error = |why: String| BackendError::Load {
            backend: self.name().into(),
            path: path.to_path_buf(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e| load_error(e.to_string()))?;
        mobilebench_export::tflite_read::validate(&bytes)
            .map_err(|e| load_error(format!("not a valid .tflite file: {e}")))?;
        drop(bytes);
        let installed = installed().map_err(|reason| BackendError::Unavailable {
            backend: self.name().into(),
            reason,
        })?;
        LiteRtSession::new(
            api,
            path,
            self.accelerator,
            &installed,
            workload.threads,
            false,
        )
        .map(|s| Box::new(s) as Box<dyn Session>)
        .map_err(|why| BackendError::Load {
            backend: self.name().into(),
            path: path.to_path_buf(),
            why,
        })
    }
}

fn check(status: ffi::Status, what: &str) -> Result<(), String> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(format!("{what} failed (LiteRT status {status})"))
    }
}

/// Owns every LiteRT object of one loaded model; `Drop` releases them in reverse order.
struct LiteRtSession {
    api: &'static Api,
    env: Handle,
    model: Handle,
    compiled: Handle,
    input: Handle,
    output: Handle,
    input_shape: Vec<usize>,
    input_len: usize,
    output_len: usize,
    accelerator: Accelerator,
    fully_delegated: bool,
    version: String,
    /// Where LiteRT finds its accelerator library (a C string the environment points at).
    library_dir: CString,
    adapter: String,
    /// What a profiled twin of this session is built from (`--profile-ops`).
    path: PathBuf,
    installed: Installed,
    /// Compiled with LiteRT's profiler on (the twin), never the timed session.
    profiling: bool,
    /// CPU threads (`num_threads`: the interpreter's and XNNPACK's pool).
    threads: u32,
}

impl LiteRtSession {
    fn new(
        api: &'static Api,
        path: &Path,
        accelerator: Accelerator,
        installed: &Installed,
        threads: u32,
        profiling: bool,
    ) -> Result<Self, String> {
        let library_dir = CString::new(installed.dir.as_os_str().as_encoded_bytes())
            .map_err(|_| "the runtime folder's path contains a NUL byte")?;
        let adapter = if accelerator.is_gpu() {
            vulkan::adapter()?.describe()
        } else {
            "cpu".into()
        };
        let mut s = LiteRtSession {
            api,
            env: std::ptr::null_mut(),
            model: std::ptr::null_mut(),
            compiled: std::ptr::null_mut(),
            input: std::ptr::null_mut(),
            output: std::ptr::null_mut(),
            input_shape: Vec::new(),
            input_len: 0,
            output_len: 0,
            accelerator,
            fully_delegated: false,
            version: installed.describe(),
            library_dir,
            adapter,
            path: path.to_path_buf(),
            installed: installed.clone(),
            profiling,
            threads: threads.max(1),
        };
        // Everything below is released by Drop on any early return.
        s.build(path)?;
        Ok(s)
    }

    fn build(&mut self, path: &Path) -> Result<(), String> {
        let api = self.api;
        let accelerators = if self.accelerator.is_gpu() {
            ffi::HW_GPU | ffi::HW_CPU
        } else {
            ffi::HW_CPU
        };
        let env_options = [
            // Only the accelerators wanted: do not probe NPU (or, for CPU, GPU) libraries.
            ffi::EnvOption {
                tag: ffi::ENV_AUTO_REGISTER_ACCELERATORS,
                value: ffi::Any {
                    kind: ffi::ANY_INT,
                    value: accelerators as u64,
                },
            },
            ffi::EnvOption {
                tag: ffi::ENV_RUNTIME_LIBRARY_DIR,
                value: ffi::Any {
                    kind: ffi::ANY_STRING,
                    value: self.library_dir.as_ptr() as u64,
                },
            },
            ffi::EnvOption {
                tag: ffi::ENV_MIN_LOG_SEVERITY,
                value: ffi::Any {
                    kind: ffi::ANY_INT,
                    value: ffi::LOG_ERROR,
                },
            },
        ];
        // SAFETY (this block): every call follows LiteRT's C API contract; out-pointers point at
        // live fields; handles are checked for success before use and released in Drop.
        unsafe {
            check(
                (api.create_environment)(
                    env_options.len() as i32,
                    env_options.as_ptr(),
                    &mut self.env,
                ),
                "creating the environment",
            )?;
            let c_path = CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|_| "path contains a NUL byte")?;
            check(
                (api.create_model_from_file)(self.env, c_path.as_ptr(), &mut self.model),
                "reading the model (not a valid .tflite file?)",
            )?;
            let mut signature: Handle = std::ptr::null_mut();
            check(
                (api.get_model_signature)(self.model, 0, &mut signature),
                "reading the model's signature",
            )?;
            let (mut n_in, mut n_out) = (0usize, 0usize);
            check(
                (api.get_num_signature_inputs)(signature, &mut n_in),
                "counting inputs",
            )?;
            check(
                (api.get_num_signature_outputs)(signature, &mut n_out),
                "counting outputs",
            )?;
            if n_in != 1 || n_out < 1 {
                return Err(format!(
                    "expected one input and at least one output, the model has {n_in} and {n_out}"
                ));
            }
            let input_type = self.tensor_type(signature, true)?;
            let output_type = self.tensor_type(signature, false)?;
            self.input_shape = fixed_shape(&input_type, "input")?;
            self.input_len = self.input_shape.iter().product();
            self.output_len = fixed_shape(&output_type, "output")?.iter().product();

            let mut options: Handle = std::ptr::null_mut();
            check((api.create_options)(&mut options), "creating options")?;
            let result = self.compile(options);
            (api.destroy_options)(options);
            result?;

            let mut req: Handle = std::ptr::null_mut();
            check(
                (api.input_requirements)(self.compiled, 0, 0, &mut req),
                "input buffer requirements",
            )?;
            check(
                (api.create_managed_buffer)(self.env, &input_type, req, &mut self.input),
                "allocating the input buffer",
            )?;
            check(
                (api.output_requirements)(self.compiled, 0, 0, &mut req),
                "output buffer requirements",
            )?;
            check(
                (api.create_managed_buffer)(self.env, &output_type, req, &mut self.output),
                "allocating the output buffer",
            )?;
        }
        Ok(())
    }

    /// # Safety
    /// `signature` is a live signature of `self.model`.
    unsafe fn tensor_type(
        &self,
        signature: Handle,
        input: bool,
    ) -> Result<RankedTensorType, String> {
        let mut tensor: Handle = std::ptr::null_mut();
        let get = if input {
            self.api.get_signature_input
        } else {
            self.api.get_signature_output
        };
        check(get(signature, 0, &mut tensor), "reading a signature tensor")?;
        let mut t = RankedTensorType::zeroed();
        check(
            (self.api.get_ranked_tensor_type)(tensor, &mut t),
            "reading a tensor type",
        )?;
        if t.element_type != ffi::ELEMENT_FLOAT32 {
            let what = if input { "input" } else { "output" };
            return Err(format!(
                "the model's {what} is not float32 (element type {})",
                t.element_type
            ));
        }
        Ok(t)
    }

    /// # Safety
    /// `options` is a live options object.
    unsafe fn compile(&mut self, options: Handle) -> Result<(), String> {
        let api = self.api;
        // The thread count is always given: LiteRT's default (-1) leaves it to the runtime.
        let cpu_builtin = format!(
            "num_threads = {}\nkernel_mode = \"builtin\"\n",
            self.threads
        );
        let cpu_xnnpack = format!("num_threads = {}\n", self.threads);
        let (hardware, kind, payload) = match self.accelerator {
            Accelerator::Builtin => (ffi::HW_CPU, c"xnnpack", Some(cpu_builtin.as_str())),
            Accelerator::Xnnpack => (ffi::HW_CPU, c"xnnpack", Some(cpu_xnnpack.as_str())),
            // precision 2 = fp32; the accelerator's default is fp16.
            Accelerator::Gpu => (ffi::HW_GPU, c"gpu_options", Some("precision = 2\n")),
            Accelerator::GpuFp16 => (ffi::HW_GPU, c"gpu_options", None),
        };
        check(
            (api.set_hardware_accelerators)(options, hardware),
            "selecting the accelerator",
        )?;
        if let Some(payload) = payload {
            self.add_options(options, kind, payload)?;
        }
        if self.profiling {
            self.add_options(
                options,
                c"runtime_options_string",
                "enable_profiling = true\n",
            )?;
        }
        check(
            (api.create_compiled_model)(self.env, self.model, options, &mut self.compiled),
            "compiling the model",
        )?;
        let mut full = false;
        if (api.is_fully_accelerated)(self.compiled, &mut full) == STATUS_OK {
            self.fully_delegated = full;
        }
        Ok(())
    }

    /// Adds opaque options of `kind` whose payload is TOML text.
    ///
    /// # Safety
    /// `options` is a live options object.
    unsafe fn add_options(
        &self,
        options: Handle,
        kind: &std::ffi::CStr,
        payload: &str,
    ) -> Result<(), String> {
        let api = self.api;
        // LiteRT frees the payload with the deleter we pass: allocate it with the C allocator.
        let raw = libc::malloc(payload.len() + 1) as *mut u8;
        if raw.is_null() {
            return Err("out of memory".into());
        }
        std::ptr::copy_nonoverlapping(payload.as_ptr(), raw, payload.len());
        *raw.add(payload.len()) = 0;
        let mut opaque: Handle = std::ptr::null_mut();
        let status = (api.create_opaque_options)(
            kind.as_ptr(),
            raw as *mut c_void,
            Some(free_payload),
            &mut opaque,
        );
        if status != STATUS_OK {
            libc::free(raw as *mut c_void);
            return Err(format!(
                "creating {kind:?} options failed (LiteRT status {status})"
            ));
        }
        check(
            (api.add_opaque_options)(options, opaque),
            "adding accelerator options",
        )
    }
}

unsafe extern "C" fn free_payload(p: *mut c_void) {
    // SAFETY: the payload was allocated with libc::malloc in `compile`.
    unsafe { libc::free(p) }
}

fn fixed_shape(t: &RankedTensorType, what: &str) -> Result<Vec<usize>, String> {
    let shape = t.shape();
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("the model's {what} has a dynamic or empty dimension: {shape:?}"))
}

impl LiteRtSession {
    fn fail(&self, why: String) -> BackendError {
        BackendError::Run {
            backend: self.accelerator.name().into(),
            why,
        }
    }

    /// Locks the output for reading: waits for the GPU's work where there is one. A cold
    /// first run (shader compilation) can outlast the lock's timeout, so a timeout is retried.
    ///
    /// # Safety
    /// The session's handles are live; the caller unlocks the buffer.
    unsafe fn lock_output(&mut self) -> Result<*mut c_void, BackendError> {
        let api = self.api;
        let mut p: *mut c_void = std::ptr::null_mut();
        let mut status = (api.lock_buffer)(self.output, &mut p, ffi::LOCK_READ);
        for _ in 0..LOCK_RETRIES {
            if status != ffi::STATUS_TIMEOUT {
                break;
            }
            (api.unlock_buffer)(self.output);
            status = (api.lock_buffer)(self.output, &mut p, ffi::LOCK_READ);
        }
        check(status, "locking the output").map_err(|why| self.fail(why))?;
        Ok(p)
    }
}

impl Session for LiteRtSession {
    fn input_shape(&self) -> Vec<usize> {
        self.input_shape.clone()
    }
    fn output_len(&self) -> usize {
        self.output_len
    }
    fn set_input(&mut self, input: &[f32]) -> Result<(), BackendError> {
        check_input_len(input, self.input_len)?;
        let api = self.api;
        // SAFETY: the input buffer is live, host memory, and input_len floats long (created
        // from the model's own tensor type).
        unsafe {
            let mut p: *mut c_void = std::ptr::null_mut();
            check(
                (api.lock_buffer)(self.input, &mut p, ffi::LOCK_WRITE),
                "locking the input",
            )
            .map_err(|why| self.fail(why))?;
            std::ptr::copy_nonoverlapping(input.as_ptr(), p as *mut f32, input.len());
            check((api.unlock_buffer)(self.input), "unlocking the input")
                .map_err(|why| self.fail(why))
        }
    }
    fn infer(&mut self) -> Result<(), BackendError> {
        let api = self.api;
        // SAFETY: the compiled model and both buffers are live handles owned by the session.
        unsafe {
            check(
                (api.run_compiled_model)(self.compiled, 0, 1, &mut self.input, 1, &mut self.output),
                "running the model",
            )
            .map_err(|why| self.fail(why))?;
            if self.accelerator.is_gpu() {
                // On the GPU, running returns before the work is done: the output lock is
                // the only wait the C API offers, so it completes the inference (and brings
                // the logits to the host).
                self.lock_output()?;
                check((api.unlock_buffer)(self.output), "unlocking the output")
                    .map_err(|why| self.fail(why))?;
            }
        }
        Ok(())
    }
    fn read_output(&mut self, output: &mut [f32]) -> Result<(), BackendError> {
        check_output_len(output, self.output_len)?;
        // SAFETY: the output buffer is live, host memory, output_len floats long.
        unsafe {
            let p = self.lock_output()?;
            std::ptr::copy_nonoverlapping(p as *const f32, output.as_mut_ptr(), output.len());
            check(
                (self.api.unlock_buffer)(self.output),
                "unlocking the output",
            )
            .map_err(|why| self.fail(why))
        }
    }
    fn profile_ops(&mut self, runs: u32) -> Option<Result<Vec<OpTiming>, BackendError>> {
        Some(self.time_ops(runs.max(1)).map_err(|why| self.fail(why)))
    }
    fn settings(&self) -> BackendSettings {
        let threads = self.threads;
        let (mode, precision) = match self.accelerator {
            Accelerator::Builtin => (format!("kernel_mode=builtin;num_threads={threads}"), "fp32"),
            Accelerator::Xnnpack => (format!("delegate=xnnpack;num_threads={threads}"), "fp32"),
            Accelerator::Gpu => ("accelerator=webgpu;precision=fp32".into(), "fp32"),
            Accelerator::GpuFp16 => ("accelerator=webgpu;precision=default".into(), "fp16"),
        };
        BackendSettings {
            library_version: self.version.clone(),
            threads: if self.accelerator.is_gpu() {
                1
            } else {
                threads
            },
            precision: precision.into(),
            adapter: self.adapter.clone(),
            settings: format!("{mode};fully_delegated={}", self.fully_delegated),
        }
    }
}

impl Drop for LiteRtSession {
    fn drop(&mut self) {
        let api = self.api;
        // SAFETY: each handle is either null (never created) or owned by this session.
        unsafe {
            if !self.input.is_null() {
                (api.destroy_buffer)(self.input);
            }
            if !self.output.is_null() {
                (api.destroy_buffer)(self.output);
            }
            if !self.compiled.is_null() {
                (api.destroy_compiled_model)(self.compiled);
            }
            if !self.model.is_null() {
                (api.destroy_model)(self.model);
            }
            if !self.env.is_null() {
                (api.destroy_environment)(self.env);
            }
        }
    }
}
