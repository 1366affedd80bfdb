//! The part of LiteRT's C API (`libLiteRt.so`, ai-edge-litert 2.3.0) that mobilebench uses,
//! declared by hand (the wheel ships no headers; signatures follow the public
//! google-ai-edge/LiteRT `litert/c/*.h`) and resolved with libloading at run time.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use libloading::Library;

pub type Status = c_int;
pub const STATUS_OK: Status = 0;

pub type Handle = *mut c_void;
pub type ParamIndex = usize;

pub const HW_CPU: c_int = 1;
pub const HW_GPU: c_int = 2;
/// What `LiteRtLockTensorBuffer` returns when a GPU buffer is not ready in time.
pub const STATUS_TIMEOUT: Status = 7;
pub const LOCK_READ: c_int = 0;
pub const LOCK_WRITE: c_int = 1;
pub const ELEMENT_FLOAT32: c_int = 1;

/// `LiteRtAny`: a type tag, then an 8-byte union at offset 8.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Any {
    pub kind: c_int,
    pub value: u64,
}

pub const ANY_INT: c_int = 2;
/// A `const char*` in the union.
pub const ANY_STRING: c_int = 8;

/// `LiteRtEnvOption`: a tag, then a `LiteRtAny` at offset 8 (24 bytes in all).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvOption {
    pub tag: c_int,
    pub value: Any,
}

/// The folder the accelerator libraries (`libLiteRtWebGpuAccelerator.so`) are looked up in.
pub const ENV_RUNTIME_LIBRARY_DIR: c_int = 22;
pub const ENV_AUTO_REGISTER_ACCELERATORS: c_int = 24;
pub const ENV_MIN_LOG_SEVERITY: c_int = 25;
/// LiteRT log severities: verbose, info, warning, error, silent.
pub const LOG_ERROR: u64 = 3;

/// `LiteRtRankedTensorType`: element type, then the layout (rank in the low 7 bits of the
/// first word, 8 dims, 8 strides): 72 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RankedTensorType {
    pub element_type: c_int,
    pub rank_bits: u32,
    pub dims: [i32; 8],
    pub strides: [u32; 8],
}

impl RankedTensorType {
    pub fn zeroed() -> Self {
        RankedTensorType {
            element_type: 0,
            rank_bits: 0,
            dims: [0; 8],
            strides: [0; 8],
        }
    }
    pub fn rank(&self) -> usize {
        (self.rank_bits & 0x7f) as usize
    }
    pub fn shape(&self) -> Vec<i64> {
        self.dims[..self.rank().min(8)]
            .iter()
            .map(|&d| i64::from(d))
            .collect()
    }
}

/// `ProfiledEventData` (`litert/c/litert_profiler_event.h`): 104 bytes on LP64 targets.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ProfiledEvent {
    /// The event's name; points into the profiler's buffer: copy it before the next start.
    pub tag: *const c_char,
    pub event_type: u32,
    pub start_us: u64,
    pub elapsed_us: u64,
    pub begin_mem: [usize; 3],
    pub end_mem: [usize; 3],
    /// The TFLite op index, or the operator's index inside its XNNPACK partition.
    pub metadata1: u64,
    /// The subgraph index.
    pub metadata2: u64,
    pub source: u32,
}

impl ProfiledEvent {
    pub fn zeroed() -> Self {
        ProfiledEvent {
            tag: std::ptr::null(),
            event_type: 0,
            start_us: 0,
            elapsed_us: 0,
            begin_mem: [0; 3],
            end_mem: [0; 3],
            metadata1: 0,
            metadata2: 0,
            source: 0,
        }
    }
}

/// `LiteRtProfilerEventType` values the harness reads.
pub const EVENT_DEFAULT: u32 = 1;
pub const EVENT_OPERATOR: u32 = 2;
pub const EVENT_DELEGATE_PROFILED_OPERATOR: u32 = 8;

const _: () = assert!(std::mem::size_of::<ProfiledEvent>() == 104);
const _: () = assert!(std::mem::size_of::<EnvOption>() == 24);
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);

macro_rules! api {
    ($api:ident; $( $field:ident : $sym:literal => fn($($arg:ty),*) $(-> $ret:ty)? ;)*) => {
        /// Function pointers resolved from the library, which stays loaded as long as this.
        pub struct $api {
            $( pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
            _lib: Library,
        }

        impl $api {
            pub fn load(path: &Path) -> Result<$api, String> {
                // SAFETY: loading LiteRT runs only its library initialisers.
                let lib = unsafe { Library::new(path) }
                    .map_err(|e| format!("{} does not load: {e}", path.display()))?;
                // SAFETY: each symbol is declared with the signature of LiteRT 2.3.0's C API.
                unsafe {
                    Ok($api {
                        $( $field: *lib.get($sym).map_err(|e| format!(
                            "{}: missing {}: {e}", path.display(), String::from_utf8_lossy($sym)))?, )*
                        _lib: lib,
                    })
                }
            }
        }
    };
}

api! {
    Api;
    create_environment: b"LiteRtCreateEnvironment" => fn(c_int, *const EnvOption, *mut Handle) -> Status;
    destroy_environment: b"LiteRtDestroyEnvironment" => fn(Handle);
    create_model_from_file: b"LiteRtCreateModelFromFile" => fn(Handle, *const c_char, *mut Handle) -> Status;
    destroy_model: b"LiteRtDestroyModel" => fn(Handle);
    get_model_signature: b"LiteRtGetModelSignature" => fn(Handle, ParamIndex, *mut Handle) -> Status;
    get_num_signature_inputs: b"LiteRtGetNumSignatureInputs" => fn(Handle, *mut ParamIndex) -> Status;
    get_num_signature_outputs: b"LiteRtGetNumSignatureOutputs" => fn(Handle, *mut ParamIndex) -> Status;
    get_signature_input: b"LiteRtGetSignatureInputTensorByIndex" => fn(Handle, ParamIndex, *mut Handle) -> Status;
    get_signature_output: b"LiteRtGetSignatureOutputTensorByIndex" => fn(Handle, ParamIndex, *mut Handle) -> Status;
    get_ranked_tensor_type: b"LiteRtGetRankedTensorType" => fn(Handle, *mut RankedTensorType) -> Status;
    create_options: b"LiteRtCreateOptions" => fn(*mut Handle) -> Status;
    destroy_options: b"LiteRtDestroyOptions" => fn(Handle);
    set_hardware_accelerators: b"LiteRtSetOptionsHardwareAccelerators" => fn(Handle, c_int) -> Status;
    create_opaque_options: b"LiteRtCreateOpaqueOptions" => fn(*const c_char, *mut c_void, Option<unsafe extern "C" fn(*mut c_void)>, *mut Handle) -> Status;
    add_opaque_options: b"LiteRtAddOpaqueOptions" => fn(Handle, Handle) -> Status;
    create_compiled_model: b"LiteRtCreateCompiledModel" => fn(Handle, Handle, Handle, *mut Handle) -> Status;
    destroy_compiled_model: b"LiteRtDestroyCompiledModel" => fn(Handle);
    is_fully_accelerated: b"LiteRtCompiledModelIsFullyAccelerated" => fn(Handle, *mut bool) -> Status;
    input_requirements: b"LiteRtGetCompiledModelInputBufferRequirements" => fn(Handle, ParamIndex, ParamIndex, *mut Handle) -> Status;
    output_requirements: b"LiteRtGetCompiledModelOutputBufferRequirements" => fn(Handle, ParamIndex, ParamIndex, *mut Handle) -> Status;
    create_managed_buffer: b"LiteRtCreateManagedTensorBufferFromRequirements" => fn(Handle, *const RankedTensorType, Handle, *mut Handle) -> Status;
    destroy_buffer: b"LiteRtDestroyTensorBuffer" => fn(Handle);
    lock_buffer: b"LiteRtLockTensorBuffer" => fn(Handle, *mut *mut c_void, c_int) -> Status;
    unlock_buffer: b"LiteRtUnlockTensorBuffer" => fn(Handle) -> Status;
    run_compiled_model: b"LiteRtRunCompiledModel" => fn(Handle, ParamIndex, usize, *mut Handle, usize, *mut Handle) -> Status;
}

// The profiler, loaded apart (only `--profile-ops` needs it): a build of the library without
// these symbols still runs every backend.
api! {
    ProfilerApi;
    compiled_model_profiler: b"LiteRtCompiledModelGetProfiler" => fn(Handle, *mut Handle) -> Status;
    start_profiler: b"LiteRtStartProfiler" => fn(Handle) -> Status;
    stop_profiler: b"LiteRtStopProfiler" => fn(Handle) -> Status;
    num_profiler_events: b"LiteRtGetNumProfilerEvents" => fn(Handle, *mut c_int) -> Status;
    profiler_events: b"LiteRtGetProfilerEvents" => fn(Handle, c_int, *mut ProfiledEvent) -> Status;
}
