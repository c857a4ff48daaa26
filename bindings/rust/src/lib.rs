//! Safe Rust bindings of clmoe: dynamic Mixture-of-Experts routing and
//! grouped expert compute on OpenCL devices, over libclmoe's C ABI.
//!
//! Every object borrows the [`Context`] it was created from, so it cannot
//! outlive it (the C API requires objects to be destroyed before their
//! context); dropping an object releases it. Errors are [`Error`]s carrying
//! the C status and `clmoe_last_error_detail()`. Thread safety follows the
//! header's rules, stated on each `Send`/`Sync` impl. Training (the
//! backward of every stage, weight updates) is in [`forward_train`] and
//! [`backward`].
//!
//! ```no_run
//! let ctx = clmoe::Context::new().unwrap();
//! let (t, d, e) = (4, 8, 4);
//! let w = vec![0.1f32; d * e];
//! let cfg = clmoe::RouterConfig { policy: clmoe::Policy::TopP, p: 0.5, ..Default::default() };
//! let router = clmoe::Router::new(&ctx, &w, d, e, None, &cfg).unwrap();
//! let x = clmoe::Tensor::from_f32(&ctx, &[t, d], &vec![1.0; t * d]).unwrap();
//! let mut routing = clmoe::Routing::new(&ctx).unwrap();
//! router.route(&x, None, &mut routing).unwrap();
//! println!("{:?}", routing.counts().unwrap());
//! ```

pub mod ffi;
mod train;

pub use train::{backward, forward_train, AuxLosses, ExpertGrads, RouterGrads, TrainConfig};

use std::ffi::{CStr, CString};
use std::fmt;
use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::os::raw::{c_char, c_void};
use std::ptr::{self, NonNull};

/* ---- errors ---- */

/// A clmoe status code (`clmoe_status`); 0 is success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    pub const SUCCESS: Status = Status(0);
    pub const INVALID_ARGUMENT: Status = Status(-1);
    pub const NULL_POINTER: Status = Status(-2);
    pub const INVALID_STRUCT_SIZE: Status = Status(-3);
    pub const SHAPE_MISMATCH: Status = Status(-4);
    pub const DTYPE_MISMATCH: Status = Status(-5);
    pub const DEVICE_NOT_FOUND: Status = Status(-6);
    pub const OPENCL: Status = Status(-7);
    pub const BUILD_FAILED: Status = Status(-8);
    pub const OUT_OF_HOST_MEMORY: Status = Status(-9);
    pub const OUT_OF_DEVICE_MEMORY: Status = Status(-10);
    pub const NONFINITE_INPUT: Status = Status(-11);
    pub const TOO_LARGE: Status = Status(-12);
    pub const UNSUPPORTED: Status = Status(-13);
    pub const CLBLAST: Status = Status(-14);
    pub const CONTEXT_MISMATCH: Status = Status(-15);
    pub const IO: Status = Status(-16);
    pub const BAD_FILE: Status = Status(-17);
    pub const NOT_FOUND: Status = Status(-18);

    /// The status's name ("CLMOE_ERROR_SHAPE_MISMATCH").
    pub fn name(self) -> String {
        unsafe { cstr(ffi::clmoe_status_string(self.0)) }
    }
}

/// A failed clmoe call: its status and the library's detail sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub detail: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.detail)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

unsafe fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

fn check(status: ffi::clmoe_status) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error {
            status: Status(status),
            detail: unsafe { cstr(ffi::clmoe_last_error_detail()) },
        })
    }
}

/// An error raised by the binding itself (before any C call).
fn fail<T>(status: Status, detail: String) -> Result<T> {
    Err(Error { status, detail })
}

fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).or_else(|_| fail(Status::INVALID_ARGUMENT, format!("{} holds a NUL byte", what)))
}

/// A descriptor filled by its `*_init_sized` with this crate's size.
fn init<T>(f: unsafe extern "C" fn(*mut T, usize)) -> T {
    let mut v = MaybeUninit::<T>::zeroed();
    unsafe {
        f(v.as_mut_ptr(), size_of::<T>());
        v.assume_init()
    }
}

fn fixed_str(a: &[c_char]) -> String {
    let bytes: Vec<u8> = a.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/* ---- version, devices, conversions ---- */

/// Version of the loaded libclmoe ("0.5.0").
pub fn version() -> String {
    unsafe { cstr(ffi::clmoe_version_string()) }
}

/// Version of the loaded libclmoe as MAJOR * 10000 + MINOR * 100 + PATCH.
pub fn version_number() -> i32 {
    unsafe { ffi::clmoe_version_number() }
}

/// The device a selector picks (see the C header's selection rules).
#[derive(Clone, Debug)]
pub struct DeviceChoice {
    pub index: i32,
    pub reason: String,
}

/// Applies the device selection rules: "gpu", "cpu", "<n>", a name
/// substring, or None (CLMOE_DEVICE, then the default rule). The error of
/// a selector matching nothing lists every visible device.
pub fn select_device(selector: Option<&str>) -> Result<DeviceChoice> {
    let sel = selector.map(|s| c_string(s, "selector")).transpose()?;
    let mut c: ffi::clmoe_device_choice = unsafe { MaybeUninit::zeroed().assume_init() };
    unsafe { ffi::clmoe_device_choice_init(&mut c) };
    check(unsafe {
        ffi::clmoe_device_select(sel.as_ref().map_or(ptr::null(), |s| s.as_ptr()), &mut c)
    })?;
    Ok(DeviceChoice { index: c.index, reason: fixed_str(&c.reason) })
}

/// Element types (`clmoe_dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32 = 1,
    I32 = 2,
    F16 = 3,
    BF16 = 4,
    /// Quantized expert weights (docs/quantization.md).
    F8E4M3 = 5,
    Mxfp4 = 6,
    I8 = 7,
    I4 = 8,
}

impl Dtype {
    fn from_raw(v: i32) -> Option<Dtype> {
        Some(match v {
            1 => Dtype::F32,
            2 => Dtype::I32,
            3 => Dtype::F16,
            4 => Dtype::BF16,
            5 => Dtype::F8E4M3,
            6 => Dtype::Mxfp4,
            7 => Dtype::I8,
            8 => Dtype::I4,
            _ => return None,
        })
    }
}

fn convert(src: Dtype, srcp: *const c_void, dst: Dtype, dstp: *mut c_void, n: usize) -> Result<()> {
    check(unsafe { ffi::clmoe_convert_ex(src as i32, srcp, dst as i32, dstp, n as i64, 0) })
}

/// float32 values as float16 or bfloat16 bits, rounded to nearest even by
/// the library (a value too large becomes +-Inf).
pub fn to_bits(dtype: Dtype, values: &[f32]) -> Result<Vec<u16>> {
    if dtype != Dtype::F16 && dtype != Dtype::BF16 {
        return fail(Status::INVALID_ARGUMENT, format!("{:?} is not a 16-bit dtype", dtype));
    }
    let mut out = vec![0u16; values.len()];
    convert(Dtype::F32, values.as_ptr() as _, dtype, out.as_mut_ptr() as _, values.len())?;
    Ok(out)
}

/// float16 or bfloat16 bits widened to float32 (exact).
pub fn from_bits(dtype: Dtype, bits: &[u16]) -> Result<Vec<f32>> {
    if dtype != Dtype::F16 && dtype != Dtype::BF16 {
        return fail(Status::INVALID_ARGUMENT, format!("{:?} is not a 16-bit dtype", dtype));
    }
    let mut out = vec![0f32; bits.len()];
    convert(dtype, bits.as_ptr() as _, Dtype::F32, out.as_mut_ptr() as _, bits.len())?;
    Ok(out)
}

/* ---- context ---- */

/// How a [`Context`] is made; `Default` picks the device by the selection
/// rules and uses the default program cache.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Device selector (None: CLMOE_DEVICE, then the default rule).
    pub device: Option<String>,
    /// Program cache directory (None: CLMOE_CACHE_DIR, XDG, HOME).
    pub cache_dir: Option<String>,
    pub no_disk_cache: bool,
    /// An extra device tuning table (tuning/devices.tsv format).
    pub tuning_file: Option<String>,
}

/// A device, its queue and its built programs (`clmoe_context`).
pub struct Context {
    raw: NonNull<ffi::clmoe_context>,
}

// The header: "a context may be shared between threads; it serialises its
// own shared state (program builds, caches)", and it may be moved freely.
unsafe impl Send for Context {}
unsafe impl Sync for Context {}

/// What the context's device is.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub vendor: String,
    pub platform: String,
    pub version: String,
    pub driver_version: String,
    /// 0 other, 1 CPU, 2 GPU, 3 accelerator.
    pub device_type: i32,
    pub compute_units: i32,
    pub global_mem_bytes: u64,
}

impl Context {
    /// A context on the device the selection rules pick.
    pub fn new() -> Result<Context> {
        Context::with_options(&ContextOptions::default())
    }

    pub fn with_options(o: &ContextOptions) -> Result<Context> {
        let device = o.device.as_deref().map(|s| c_string(s, "device")).transpose()?;
        let cache = o.cache_dir.as_deref().map(|s| c_string(s, "cache_dir")).transpose()?;
        let tuning = o.tuning_file.as_deref().map(|s| c_string(s, "tuning_file")).transpose()?;
        let mut d: ffi::clmoe_context_desc = init(ffi::clmoe_context_desc_init_sized);
        d.device = device.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        d.cache_dir = cache.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        d.tuning_file = tuning.as_ref().map_or(ptr::null(), |s| s.as_ptr());
        d.flags = if o.no_disk_cache { 1 } else { 0 };
        Context::create(&d)
    }

    /// A context on the caller's OpenCL objects (`cl_context`, `cl_device_id`
    /// and an in-order `cl_command_queue`, or a null queue): they are
    /// retained, never released beyond that.
    ///
    /// # Safety
    /// The handles must be valid OpenCL objects of one platform.
    pub unsafe fn from_cl(
        cl_context: *mut c_void,
        cl_device: *mut c_void,
        cl_queue: *mut c_void,
    ) -> Result<Context> {
        let mut d: ffi::clmoe_context_desc = init(ffi::clmoe_context_desc_init_sized);
        d.cl_context = cl_context;
        d.cl_device = cl_device;
        d.cl_queue = cl_queue;
        Context::create(&d)
    }

    fn create(d: &ffi::clmoe_context_desc) -> Result<Context> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::clmoe_context_create(d, &mut raw) })?;
        Ok(Context { raw: NonNull::new(raw).expect("clmoe_context_create") })
    }

    fn ptr(&self) -> *mut ffi::clmoe_context {
        self.raw.as_ptr()
    }

    pub fn device_info(&self) -> Result<DeviceInfo> {
        let mut i: ffi::clmoe_device_info = unsafe { MaybeUninit::zeroed().assume_init() };
        unsafe { ffi::clmoe_device_info_init(&mut i) };
        check(unsafe { ffi::clmoe_context_get_device_info(self.ptr(), &mut i) })?;
        Ok(DeviceInfo {
            name: fixed_str(&i.name),
            vendor: fixed_str(&i.vendor),
            platform: fixed_str(&i.platform_name),
            version: fixed_str(&i.version),
            driver_version: fixed_str(&i.driver_version),
            device_type: i.type_,
            compute_units: i.compute_units,
            global_mem_bytes: i.global_mem_bytes,
        })
    }

    /// Builds (or loads from the cache) every kernel program now.
    pub fn build_programs(&self) -> Result<()> {
        check(unsafe { ffi::clmoe_context_build_programs(self.ptr()) })
    }

    /// The context's OpenCL objects (cl_context, cl_device_id,
    /// cl_command_queue), borrowed: for interop, e.g. a second context on
    /// the same cl_context with a queue of its own ([`Context::from_cl`]
    /// with a null queue), whose objects can then share this one's.
    pub fn cl_handles(&self) -> Result<(*mut c_void, *mut c_void, *mut c_void)> {
        let (mut c, mut d, mut q) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
        check(unsafe { ffi::clmoe_context_get_cl(self.ptr(), &mut c, &mut d, &mut q) })?;
        Ok((c, d, q))
    }

    /// Waits for all work enqueued on the context's queue.
    pub fn finish(&self) -> Result<()> {
        check(unsafe { ffi::clmoe_context_finish(self.ptr()) })
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        unsafe { ffi::clmoe_context_destroy(self.raw.as_ptr()) }
    }
}

/* ---- tensors ---- */

/// A device tensor (`clmoe_tensor`), dense and row-major, rank 1 to 4.
pub struct Tensor<'c> {
    raw: NonNull<ffi::clmoe_tensor>,
    owned: bool,
    _ctx: PhantomData<&'c Context>,
}

// The header: tensors "may be read by several threads, but a call that
// writes an object needs exclusive use of it": writes take &mut self.
unsafe impl Send for Tensor<'_> {}
unsafe impl Sync for Tensor<'_> {}

fn dims(shape: &[usize]) -> Result<Vec<i64>> {
    if shape.is_empty() || shape.len() > ffi::CLMOE_MAX_RANK {
        return fail(Status::INVALID_ARGUMENT, format!("rank {} is outside 1..4", shape.len()));
    }
    Ok(shape.iter().map(|&v| v as i64).collect())
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl<'c> Tensor<'c> {
    fn create(ctx: &'c Context, dtype: Dtype, shape: &[usize], data: *const c_void) -> Result<Tensor<'c>> {
        let d = dims(shape)?;
        let mut raw = ptr::null_mut();
        check(unsafe {
            ffi::clmoe_tensor_create(ctx.ptr(), dtype as i32, d.len() as i32, d.as_ptr(), data, &mut raw)
        })?;
        Ok(Tensor { raw: NonNull::new(raw).expect("clmoe_tensor_create"), owned: true, _ctx: PhantomData })
    }

    fn checked_len(shape: &[usize], len: usize) -> Result<()> {
        if numel(shape) != len {
            return fail(
                Status::SHAPE_MISMATCH,
                format!("shape {:?} holds {} elements but the data has {}", shape, numel(shape), len),
            );
        }
        Ok(())
    }

    /// A float32 tensor with a copy of `data`.
    pub fn from_f32(ctx: &'c Context, shape: &[usize], data: &[f32]) -> Result<Tensor<'c>> {
        Tensor::checked_len(shape, data.len())?;
        Tensor::create(ctx, Dtype::F32, shape, data.as_ptr() as _)
    }

    /// An int32 tensor with a copy of `data`.
    pub fn from_i32(ctx: &'c Context, shape: &[usize], data: &[i32]) -> Result<Tensor<'c>> {
        Tensor::checked_len(shape, data.len())?;
        Tensor::create(ctx, Dtype::I32, shape, data.as_ptr() as _)
    }

    /// A float16 or bfloat16 tensor from its bits.
    pub fn from_bits(ctx: &'c Context, dtype: Dtype, shape: &[usize], bits: &[u16]) -> Result<Tensor<'c>> {
        if dtype != Dtype::F16 && dtype != Dtype::BF16 {
            return fail(Status::DTYPE_MISMATCH, format!("{:?} is not a 16-bit dtype", dtype));
        }
        Tensor::checked_len(shape, bits.len())?;
        Tensor::create(ctx, dtype, shape, bits.as_ptr() as _)
    }

    /// A zero-filled tensor of `dtype` (F32, I32, F16 or BF16).
    pub fn zeros(ctx: &'c Context, dtype: Dtype, shape: &[usize]) -> Result<Tensor<'c>> {
        Tensor::create(ctx, dtype, shape, ptr::null())
    }

    fn ptr(&self) -> *mut ffi::clmoe_tensor {
        self.raw.as_ptr()
    }

    pub fn shape(&self) -> Result<Vec<usize>> {
        let mut rank = 0;
        let mut s = [0i64; ffi::CLMOE_MAX_RANK];
        check(unsafe { ffi::clmoe_tensor_get_shape(self.ptr(), &mut rank, s.as_mut_ptr()) })?;
        Ok(s[..rank as usize].iter().map(|&v| v as usize).collect())
    }

    pub fn dtype(&self) -> Result<Dtype> {
        let mut d = 0;
        check(unsafe { ffi::clmoe_tensor_get_dtype(self.ptr(), &mut d) })?;
        Dtype::from_raw(d).ok_or(Error { status: Status::DTYPE_MISMATCH, detail: format!("dtype {}", d) })
    }

    fn read_raw<T: Copy + Default>(&self, want: Dtype) -> Result<Vec<T>> {
        let dt = self.dtype()?;
        if dt != want {
            return fail(Status::DTYPE_MISMATCH, format!("the tensor is {:?}, not {:?}", dt, want));
        }
        let mut out = vec![T::default(); numel(&self.shape()?)];
        check(unsafe {
            ffi::clmoe_tensor_read(self.ptr(), out.as_mut_ptr() as _, out.len() * size_of::<T>())
        })?;
        Ok(out)
    }

    /// The float32 contents (blocks until the queue's work is done).
    pub fn read_f32(&self) -> Result<Vec<f32>> {
        self.read_raw(Dtype::F32)
    }

    pub fn read_i32(&self) -> Result<Vec<i32>> {
        self.read_raw(Dtype::I32)
    }

    /// The bits of a float16 or bfloat16 tensor.
    pub fn read_bits(&self) -> Result<Vec<u16>> {
        let dt = self.dtype()?;
        if dt != Dtype::F16 && dt != Dtype::BF16 {
            return fail(Status::DTYPE_MISMATCH, format!("the tensor is {:?}, not 16-bit", dt));
        }
        self.read_raw(dt)
    }

    /// Overwrites a float32 tensor.
    pub fn write_f32(&mut self, data: &[f32]) -> Result<()> {
        check(unsafe {
            ffi::clmoe_tensor_write(self.ptr(), data.as_ptr() as _, data.len() * size_of::<f32>())
        })
    }
}

impl Drop for Tensor<'_> {
    fn drop(&mut self) {
        if self.owned {
            unsafe { ffi::clmoe_tensor_destroy(self.raw.as_ptr()) }
        }
    }
}

/* ---- router ---- */

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    TopK = 1,
    TopP = 2,
    Importance = 3,
    Resonance = 4,
    ExpertChoice = 5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gates {
    Default = 0,
    Renorm = 1,
    Raw = 2,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    DropLowestGate = 0,
    DropLatestToken = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    Prob = 0,
    Cosine = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    None = 0,
    Top1 = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scoring {
    Softmax = 0,
    Sigmoid = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupScore {
    Top2Sum = 0,
    Max = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatePosition {
    Output = 0,
    Input = 1,
}

/// A routing policy and its parameters (`clmoe_router_desc`); `Default`
/// is the C defaults (TOPK, k 2, p 0.4, softmax, no groups, scale 1).
/// docs/policies.md has the exact semantics.
#[derive(Clone, Debug)]
pub struct RouterConfig {
    pub policy: Policy,
    pub k: i32,
    pub p: f32,
    pub k_min: i32,
    /// 0: every expert (or every expert the kept groups hold).
    pub k_max: i32,
    pub k_mean: f32,
    pub capacity_factor: f32,
    pub overflow: Overflow,
    pub gates: Gates,
    pub affinity: Affinity,
    pub fallback: Fallback,
    pub scoring: Scoring,
    /// [E], steers selection only (DeepSeek-V3's e_score_correction_bias).
    pub selection_bias: Option<Vec<f32>>,
    /// (num_groups, topk_groups) for group-limited routing.
    pub groups: Option<(i32, i32)>,
    pub group_score: GroupScore,
    pub gate_scale: f32,
    pub gate_position: GatePosition,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            policy: Policy::TopK,
            k: 2,
            p: 0.4,
            k_min: 1,
            k_max: 0,
            k_mean: 0.0,
            capacity_factor: 0.0,
            overflow: Overflow::DropLowestGate,
            gates: Gates::Default,
            affinity: Affinity::Prob,
            fallback: Fallback::None,
            scoring: Scoring::Softmax,
            selection_bias: None,
            groups: None,
            group_score: GroupScore::Top2Sum,
            gate_scale: 1.0,
            gate_position: GatePosition::Output,
        }
    }
}

impl RouterConfig {
    /// Fills a C descriptor; the pointers borrow from self.
    fn fill(&self, d: &mut ffi::clmoe_router_desc) {
        d.policy = self.policy as i32;
        d.k = self.k;
        d.p = self.p;
        d.k_min = self.k_min;
        d.k_max = self.k_max;
        d.k_mean = self.k_mean;
        d.capacity_factor = self.capacity_factor;
        d.overflow = self.overflow as i32;
        d.gates = self.gates as i32;
        d.affinity = self.affinity as i32;
        d.fallback = self.fallback as i32;
        d.scoring = self.scoring as i32;
        d.selection_bias_host = self.selection_bias.as_ref().map_or(ptr::null(), |b| b.as_ptr());
        if let Some((g, t)) = self.groups {
            d.num_groups = g;
            d.topk_groups = t;
        }
        d.group_score = self.group_score as i32;
        d.gate_scale = self.gate_scale;
        d.gate_position = self.gate_position as i32;
    }
}

/// A router: weight W_r [d, E] (+ bias) and a policy (`clmoe_router`).
pub struct Router<'c> {
    raw: NonNull<ffi::clmoe_router>,
    _ctx: PhantomData<&'c Context>,
}

// The header: "The router may be shared between threads" (route reads it).
unsafe impl Send for Router<'_> {}
unsafe impl Sync for Router<'_> {}

impl<'c> Router<'c> {
    /// A router over weight [d_model, num_experts] (row-major, float32)
    /// with an optional bias [num_experts].
    pub fn new(
        ctx: &'c Context,
        weight: &[f32],
        d_model: usize,
        num_experts: usize,
        bias: Option<&[f32]>,
        cfg: &RouterConfig,
    ) -> Result<Router<'c>> {
        if weight.len() != d_model * num_experts {
            return fail(
                Status::SHAPE_MISMATCH,
                format!("weight has {} values, not d_model * num_experts = {}", weight.len(), d_model * num_experts),
            );
        }
        if bias.map_or(false, |b| b.len() != num_experts) {
            return fail(Status::SHAPE_MISMATCH, format!("bias must have {} values", num_experts));
        }
        Router::create(ctx, Some(weight), d_model, num_experts, bias, cfg)
    }

    /// A router that only routes given logits (no weight).
    pub fn logits_only(ctx: &'c Context, num_experts: usize, cfg: &RouterConfig) -> Result<Router<'c>> {
        Router::create(ctx, None, 0, num_experts, None, cfg)
    }

    fn create(
        ctx: &'c Context,
        weight: Option<&[f32]>,
        d_model: usize,
        num_experts: usize,
        bias: Option<&[f32]>,
        cfg: &RouterConfig,
    ) -> Result<Router<'c>> {
        if cfg.selection_bias.as_ref().map_or(false, |b| b.len() != num_experts) {
            return fail(Status::SHAPE_MISMATCH, format!("selection_bias must have {} values", num_experts));
        }
        let mut d: ffi::clmoe_router_desc = init(ffi::clmoe_router_desc_init_sized);
        cfg.fill(&mut d);
        d.num_experts = num_experts as i32;
        d.d_model = d_model as i32;
        d.weight_host = weight.map_or(ptr::null(), |w| w.as_ptr());
        d.bias_host = bias.map_or(ptr::null(), |b| b.as_ptr());
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::clmoe_router_create(ctx.ptr(), &d, &mut raw) })?;
        Ok(Router { raw: NonNull::new(raw).expect("clmoe_router_create"), _ctx: PhantomData })
    }

    fn ptr(&self) -> *mut ffi::clmoe_router {
        self.raw.as_ptr()
    }

    /// Routes x [T, d] (float32, float16 or bfloat16); importance [T] for
    /// the importance policy. The routing is complete on return.
    pub fn route(&self, x: &Tensor, importance: Option<&Tensor>, routing: &mut Routing) -> Result<()> {
        check(unsafe {
            ffi::clmoe_route(
                self.ptr(),
                x.ptr(),
                importance.map_or(ptr::null(), |t| t.ptr()),
                routing.ptr(),
                0,
                ptr::null(),
                ptr::null_mut(),
            )
        })
    }

    /// Routes logits [T, E] (float32) given directly.
    pub fn route_logits(&self, logits: &Tensor, importance: Option<&Tensor>, routing: &mut Routing) -> Result<()> {
        check(unsafe {
            ffi::clmoe_route_logits(
                self.ptr(),
                logits.ptr(),
                importance.map_or(ptr::null(), |t| t.ptr()),
                routing.ptr(),
                0,
                ptr::null(),
                ptr::null_mut(),
            )
        })
    }

    /// (num_experts, d_model).
    pub fn shape(&self) -> Result<(usize, usize)> {
        let (mut e, mut d) = (0, 0);
        check(unsafe { ffi::clmoe_router_get_shape(self.ptr(), &mut e, &mut d, ptr::null_mut()) })?;
        Ok((e as usize, d as usize))
    }
}

impl Drop for Router<'_> {
    fn drop(&mut self) {
        unsafe { ffi::clmoe_router_destroy(self.raw.as_ptr()) }
    }
}

/* ---- routing ---- */

/// The routing's statistics, computed on the device.
#[derive(Clone, Debug, Default)]
pub struct RoutingStats {
    pub num_tokens: i64,
    pub num_experts: i64,
    pub num_slots: i64,
    pub dropped: i64,
    pub mean_k: f64,
    pub min_k: i32,
    pub max_k: i32,
    pub balance_loss: f64,
    pub mean_entropy: f64,
    /// Tokens with K = 0 .. E.
    pub k_histogram: Vec<i64>,
    pub expert_load: Vec<f32>,
    pub mean_prob: Vec<f32>,
}

/// A route's result and the layer's workspace (`clmoe_routing`).
pub struct Routing<'c> {
    raw: NonNull<ffi::clmoe_routing>,
    _ctx: PhantomData<&'c Context>,
}

// A routing may move between threads but is written by every route, so it
// is not Sync: "a call that writes an object needs exclusive use of it".
unsafe impl Send for Routing<'_> {}

impl<'c> Routing<'c> {
    pub fn new(ctx: &'c Context) -> Result<Routing<'c>> {
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::clmoe_routing_create(ctx.ptr(), &mut raw) })?;
        Ok(Routing { raw: NonNull::new(raw).expect("clmoe_routing_create"), _ctx: PhantomData })
    }

    fn ptr(&self) -> *mut ffi::clmoe_routing {
        self.raw.as_ptr()
    }

    /// (T, E, N) of the last successful route.
    pub fn sizes(&self) -> Result<(usize, usize, usize)> {
        let (mut t, mut e, mut n) = (0, 0, 0);
        check(unsafe { ffi::clmoe_routing_get_sizes(self.ptr(), &mut t, &mut e, &mut n) })?;
        Ok((t as usize, e as usize, n as usize))
    }

    /// One of the routing's arrays, read through a borrowed tensor view
    /// (owned by the routing: never destroyed here).
    fn view(&self, which: i32) -> Result<Tensor<'_>> {
        let mut view = ptr::null();
        check(unsafe { ffi::clmoe_routing_get_array(self.ptr(), which, &mut view) })?;
        Ok(Tensor { raw: NonNull::new(view as *mut _).expect("routing view"), owned: false, _ctx: PhantomData })
    }

    /// K_t of every token [T].
    pub fn counts(&self) -> Result<Vec<i32>> {
        self.view(0)?.read_i32()
    }
    /// CSR row pointer [T + 1]: token t's slots are offsets[t]..offsets[t+1].
    pub fn token_offsets(&self) -> Result<Vec<i32>> {
        self.view(1)?.read_i32()
    }
    /// Expert of each slot [N].
    pub fn expert_ids(&self) -> Result<Vec<i32>> {
        self.view(2)?.read_i32()
    }
    /// Gate of each slot [N].
    pub fn gates(&self) -> Result<Vec<f32>> {
        self.view(3)?.read_f32()
    }
    /// Expert-major row pointer [E + 1].
    pub fn expert_offsets(&self) -> Result<Vec<i32>> {
        self.view(4)?.read_i32()
    }
    /// Row of each slot in x_sorted [N].
    pub fn slot_rows(&self) -> Result<Vec<i32>> {
        self.view(5)?.read_i32()
    }
    /// Token of each x_sorted row [N].
    pub fn row_tokens(&self) -> Result<Vec<i32>> {
        self.view(6)?.read_i32()
    }

    pub fn stats(&self) -> Result<RoutingStats> {
        let (_, e, _) = self.sizes()?;
        let mut hist = vec![0i64; e + 1];
        let mut load = vec![0f32; e + 1];
        let mut prob = vec![0f32; e + 1];
        let mut s: ffi::clmoe_routing_stats = unsafe { MaybeUninit::zeroed().assume_init() };
        unsafe { ffi::clmoe_routing_stats_init(&mut s) };
        s.k_histogram = hist.as_mut_ptr();
        s.expert_load = load.as_mut_ptr();
        s.mean_prob = prob.as_mut_ptr();
        s.array_capacity = (e + 1) as i64;
        check(unsafe { ffi::clmoe_routing_read_stats(self.ptr(), &mut s) })?;
        load.truncate(e);
        prob.truncate(e);
        Ok(RoutingStats {
            num_tokens: s.num_tokens,
            num_experts: s.num_experts,
            num_slots: s.num_slots,
            dropped: s.dropped,
            mean_k: s.mean_k,
            min_k: s.min_k,
            max_k: s.max_k,
            balance_loss: s.balance_loss,
            mean_entropy: s.mean_entropy,
            k_histogram: hist,
            expert_load: load,
            mean_prob: prob,
        })
    }
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        unsafe { ffi::clmoe_routing_destroy(self.raw.as_ptr()) }
    }
}

/* ---- experts ---- */

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu = 1,
    Gelu = 2,
    Silu = 3,
    Swiglu = 4,
    Geglu = 5,
    /// gpt-oss's clamped SwiGLU (ExpertsConfig's swiglu_limit, swiglu_alpha).
    SwigluOai = 6,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// W1, W3 [E, d, f]; W2 [E, f, d].
    InOut = 0,
    /// W1, W3 [E, f, d]; W2 [E, d, f] (PyTorch).
    OutIn = 1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertsPath {
    Auto = 0,
    Clblast = 1,
    Grouped = 2,
}

/// Expert weights as given on the host: float32, or float16 / bfloat16
/// bits.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [u16]),
    BF16(&'a [u16]),
}

impl Weights<'_> {
    fn parts(&self) -> (Dtype, *const c_void, usize) {
        match self {
            Weights::F32(v) => (Dtype::F32, v.as_ptr() as _, v.len()),
            Weights::F16(v) => (Dtype::F16, v.as_ptr() as _, v.len()),
            Weights::BF16(v) => (Dtype::BF16, v.as_ptr() as _, v.len()),
        }
    }
}

/// Options of an experts object; `Default`: SwiGLU, [E, in, out] layout,
/// the device's path, float32 storage.
#[derive(Clone, Debug)]
pub struct ExpertsConfig {
    pub activation: Activation,
    pub layout: Layout,
    pub path: ExpertsPath,
    /// Device storage: F32, F16, BF16, or a quantized format.
    pub weight_dtype: Dtype,
    pub swiglu_limit: f32,
    pub swiglu_alpha: f32,
}

impl Default for ExpertsConfig {
    fn default() -> Self {
        ExpertsConfig {
            activation: Activation::Swiglu,
            layout: Layout::InOut,
            path: ExpertsPath::Auto,
            weight_dtype: Dtype::F32,
            swiglu_limit: 7.0,
            swiglu_alpha: 1.702,
        }
    }
}

/// Optional biases: b1, b3 [E, f], b2 [E, d].
#[derive(Clone, Copy, Debug, Default)]
pub struct Biases<'a> {
    pub b1: Option<&'a [f32]>,
    pub b3: Option<&'a [f32]>,
    pub b2: Option<&'a [f32]>,
}

/// The descriptor of E experts from host weights (checked against the
/// sizes), shared by `Experts::new` and `Experts::update`.
#[allow(clippy::too_many_arguments)]
fn experts_desc(
    num_experts: usize,
    d_model: usize,
    d_ff: usize,
    w1: Weights,
    w3: Option<Weights>,
    w2: Weights,
    biases: Biases,
    cfg: &ExpertsConfig,
) -> Result<ffi::clmoe_experts_desc> {
    let want = num_experts * d_model * d_ff;
    let (dt1, p1, n1) = w1.parts();
    let (dt2, p2, n2) = w2.parts();
    let m3 = w3.map(|w| w.parts());
    let host = dt1;
    if dt2 != host || m3.map_or(false, |m| m.0 != host) {
        return fail(Status::DTYPE_MISMATCH, "w1, w3 and w2 must share one host dtype".into());
    }
    if n1 != want || n2 != want || m3.map_or(false, |m| m.2 != want) {
        return fail(Status::SHAPE_MISMATCH, format!("each weight must hold E * d * f = {} values", want));
    }
    for (b, n, name) in [
        (biases.b1, num_experts * d_ff, "b1"),
        (biases.b3, num_experts * d_ff, "b3"),
        (biases.b2, num_experts * d_model, "b2"),
    ] {
        if b.map_or(false, |b| b.len() != n) {
            return fail(Status::SHAPE_MISMATCH, format!("{} must hold {} values", name, n));
        }
    }
    let mut d: ffi::clmoe_experts_desc = init(ffi::clmoe_experts_desc_init_sized);
    d.num_experts = num_experts as i32;
    d.d_model = d_model as i32;
    d.d_ff = d_ff as i32;
    d.activation = cfg.activation as i32;
    d.layout = cfg.layout as i32;
    d.path = cfg.path as i32;
    d.weight_dtype = cfg.weight_dtype as i32;
    d.host_dtype = host as i32;
    d.swiglu_limit = cfg.swiglu_limit;
    d.swiglu_alpha = cfg.swiglu_alpha;
    d.w1_host = p1;
    d.w2_host = p2;
    d.w3_host = m3.map_or(ptr::null(), |m| m.1);
    d.b1_host = biases.b1.map_or(ptr::null(), |b| b.as_ptr());
    d.b3_host = biases.b3.map_or(ptr::null(), |b| b.as_ptr());
    d.b2_host = biases.b2.map_or(ptr::null(), |b| b.as_ptr());
    Ok(d)
}

/// E expert FFNs (`clmoe_experts`).
pub struct Experts<'c> {
    raw: NonNull<ffi::clmoe_experts>,
    _ctx: PhantomData<&'c Context>,
}

// The header: "The experts object may be shared by threads" (runs only
// read it).
unsafe impl Send for Experts<'_> {}
unsafe impl Sync for Experts<'_> {}

impl<'c> Experts<'c> {
    /// Experts of sizes (num_experts, d_model, d_ff) from host weights; w3
    /// for the gated activations only.
    pub fn new(
        ctx: &'c Context,
        num_experts: usize,
        d_model: usize,
        d_ff: usize,
        w1: Weights,
        w3: Option<Weights>,
        w2: Weights,
        biases: Biases,
        cfg: &ExpertsConfig,
    ) -> Result<Experts<'c>> {
        let d = experts_desc(num_experts, d_model, d_ff, w1, w3, w2, biases, cfg)?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::clmoe_experts_create(ctx.ptr(), &d, &mut raw) })?;
        Ok(Experts { raw: NonNull::new(raw).expect("clmoe_experts_create"), _ctx: PhantomData })
    }

    fn ptr(&self) -> *mut ffi::clmoe_experts {
        self.raw.as_ptr()
    }

    /// The path the experts run on (never Auto).
    pub fn path(&self) -> Result<ExpertsPath> {
        let mut p = 0;
        check(unsafe { ffi::clmoe_experts_get_path(self.ptr(), &mut p) })?;
        Ok(if p == 1 { ExpertsPath::Clblast } else { ExpertsPath::Grouped })
    }

    /// Device bytes of the weights (codes plus scales when quantized) and of
    /// the biases.
    pub fn bytes(&self) -> Result<(i64, i64)> {
        let (mut w, mut b) = (0, 0);
        check(unsafe { ffi::clmoe_experts_get_bytes(self.ptr(), &mut w, &mut b) })?;
        Ok((w, b))
    }

    pub fn weight_dtype(&self) -> Result<Dtype> {
        let mut d = 0;
        check(unsafe { ffi::clmoe_experts_get_weight_dtype(self.ptr(), &mut d) })?;
        Dtype::from_raw(d).ok_or(Error { status: Status::DTYPE_MISMATCH, detail: format!("dtype {}", d) })
    }

    /// (num_experts, d_model, d_ff).
    pub fn shape(&self) -> Result<(usize, usize, usize)> {
        let (mut e, mut d, mut f) = (0, 0, 0);
        check(unsafe { ffi::clmoe_experts_get_shape(self.ptr(), &mut e, &mut d, &mut f, ptr::null_mut()) })?;
        Ok((e as usize, d as usize, f as usize))
    }
}

impl Drop for Experts<'_> {
    fn drop(&mut self) {
        unsafe { ffi::clmoe_experts_destroy(self.raw.as_ptr()) }
    }
}

/* ---- the layer ---- */

/// The C arguments for optional shared experts and their gate.
fn shared_ptrs(
    shared: Option<(&Experts, Option<&Tensor>)>,
) -> (*mut ffi::clmoe_experts, *const ffi::clmoe_tensor) {
    shared.map_or((ptr::null_mut(), ptr::null()), |(e, g)| {
        (e.ptr(), g.map_or(ptr::null(), |g| g.ptr() as *const _))
    })
}

/// The whole layer: route x [T, d] with `router`, dispatch, run `experts`,
/// combine into y [T, d], plus `shared` experts (one expert) weighted by
/// sigmoid(x . shared_gate) or 1. x and y share a dtype (F32, F16, BF16);
/// `accumulate` adds into y. The routing receives the route.
pub fn forward(
    router: &Router,
    experts: &Experts,
    shared: Option<(&Experts, Option<&Tensor>)>,
    x: &Tensor,
    importance: Option<&Tensor>,
    y: &mut Tensor,
    routing: &mut Routing,
    accumulate: bool,
) -> Result<()> {
    let (sx, sg) = shared_ptrs(shared);
    check(unsafe {
        ffi::clmoe_forward_shared(
            router.ptr(),
            experts.ptr(),
            sx,
            sg,
            x.ptr(),
            importance.map_or(ptr::null(), |t| t.ptr()),
            y.ptr(),
            routing.ptr(),
            if accumulate { 1 } else { 0 },
            0,
            ptr::null(),
            ptr::null_mut(),
        )
    })
}

/* ---- scoring ---- */

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreLayout {
    /// q [H, T, dh], k [H_kv, T, dh].
    Hsd = 0,
    /// q [T, H, dh], k [T, H_kv, dh] (or a padded batch [B, S, H, dh]).
    Shd = 1,
}

/// Options of [`score_attention`]; `Default`: no mask, per-sequence max
/// normalisation, scale 1 / sqrt(dh), HSD layout.
#[derive(Default)]
pub struct ScoreConfig<'a, 'c> {
    pub causal: bool,
    /// No per-sequence scaling to [0, 1].
    pub raw_norm: bool,
    pub scale: f32,
    pub layout: Option<ScoreLayout>,
    pub seq_offsets: Option<&'a Tensor<'c>>,
    pub key_lengths: Option<&'a Tensor<'c>>,
    pub lse: Option<&'a Tensor<'c>>,
    pub check_lse: bool,
}

/// What attention importance is scored from.
pub enum ScoreInput<'a, 'c> {
    /// Attention probabilities [H, T, T] or [B, H, S, S].
    Probs(&'a Tensor<'c>),
    /// q and k, fused (never materialising T x T).
    QK(&'a Tensor<'c>, &'a Tensor<'c>),
}

/// DA-MoE's attention importance of every token into importance [T].
pub fn score_attention(ctx: &Context, cfg: &ScoreConfig, input: ScoreInput, importance: &mut Tensor) -> Result<()> {
    let mut d: ffi::clmoe_score_desc = init(ffi::clmoe_score_desc_init_sized);
    d.mask = if cfg.causal { 1 } else { 0 };
    d.norm = if cfg.raw_norm { 1 } else { 0 };
    d.scale = cfg.scale;
    d.layout = cfg.layout.unwrap_or(ScoreLayout::Hsd) as i32;
    d.seq_offsets = cfg.seq_offsets.map_or(ptr::null(), |t| t.ptr());
    d.key_lengths = cfg.key_lengths.map_or(ptr::null(), |t| t.ptr());
    d.lse = cfg.lse.map_or(ptr::null(), |t| t.ptr());
    d.flags = if cfg.check_lse { 2 } else { 0 };
    let (probs, q, k) = match input {
        ScoreInput::Probs(p) => (p.ptr() as *const _, ptr::null(), ptr::null()),
        ScoreInput::QK(q, k) => (ptr::null(), q.ptr() as *const _, k.ptr() as *const _),
    };
    check(unsafe {
        ffi::clmoe_score_attention(ctx.ptr(), &d, probs, q, k, importance.ptr(), 0, ptr::null(), ptr::null_mut())
    })
}

/* ---- checkpoints ---- */

/// A tensor of a checkpoint: its name, stored dtype ("BF16", "F8_E4M3", ...)
/// and shape.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// A safetensors file or a Hugging Face model directory, memory-mapped
/// (`clmoe_checkpoint`).
pub struct Checkpoint {
    raw: NonNull<ffi::clmoe_checkpoint>,
}

// The header: a checkpoint "may be read from several threads at once (every
// call is thread-safe on one checkpoint except clmoe_checkpoint_close)";
// close happens in Drop, which has exclusive use.
unsafe impl Send for Checkpoint {}
unsafe impl Sync for Checkpoint {}

fn tensor_info(i: &ffi::clmoe_checkpoint_tensor) -> TensorInfo {
    TensorInfo {
        name: unsafe { cstr(i.name) },
        dtype: fixed_str(&i.dtype),
        shape: i.shape[..i.rank as usize].to_vec(),
    }
}

impl Checkpoint {
    pub fn open(path: &str) -> Result<Checkpoint> {
        let p = c_string(path, "path")?;
        let mut raw = ptr::null_mut();
        check(unsafe { ffi::clmoe_checkpoint_open(p.as_ptr(), &mut raw) })?;
        Ok(Checkpoint { raw: NonNull::new(raw).expect("clmoe_checkpoint_open") })
    }

    fn ptr(&self) -> *mut ffi::clmoe_checkpoint {
        self.raw.as_ptr()
    }

    fn blank_info() -> ffi::clmoe_checkpoint_tensor {
        let mut i: ffi::clmoe_checkpoint_tensor = unsafe { MaybeUninit::zeroed().assume_init() };
        unsafe { ffi::clmoe_checkpoint_tensor_init(&mut i) };
        i
    }

    /// Every tensor, in the checkpoint's order.
    pub fn tensors(&self) -> Result<Vec<TensorInfo>> {
        let mut n = 0;
        check(unsafe { ffi::clmoe_checkpoint_get_num_tensors(self.ptr(), &mut n) })?;
        (0..n)
            .map(|i| {
                let mut info = Checkpoint::blank_info();
                check(unsafe { ffi::clmoe_checkpoint_get_tensor(self.ptr(), i, &mut info) })?;
                Ok(tensor_info(&info))
            })
            .collect()
    }

    /// One tensor's description (NOT_FOUND names the nearest name).
    pub fn info(&self, name: &str) -> Result<TensorInfo> {
        let n = c_string(name, "name")?;
        let mut info = Checkpoint::blank_info();
        check(unsafe { ffi::clmoe_checkpoint_find_tensor(self.ptr(), n.as_ptr(), &mut info) })?;
        Ok(tensor_info(&info))
    }

    /// A tensor as float32 (F32, F16 and BF16 widened; F8, I8 and U8 codes
    /// decoded, without scales).
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let count: i64 = self.info(name)?.shape.iter().product();
        let n = c_string(name, "name")?;
        let mut out = vec![0f32; count as usize];
        check(unsafe {
            ffi::clmoe_checkpoint_read(self.ptr(), n.as_ptr(), 1, out.as_mut_ptr() as _, out.len() * 4)
        })?;
        Ok(out)
    }
}

impl Drop for Checkpoint {
    fn drop(&mut self) {
        unsafe { ffi::clmoe_checkpoint_close(self.raw.as_ptr()) }
    }
}

/// Model families clmoe loads (`clmoe_arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Auto = 0,
    Mixtral = 1,
    Olmoe = 2,
    Qwen2Moe = 3,
    Qwen3Moe = 4,
    DeepseekV2 = 6,
    DeepseekV3 = 7,
    Glm4Moe = 8,
    GptOss = 9,
    Llama4 = 10,
}

/// Options of [`load_moe_layer`]; `Default`: the model's own routing and
/// stored weight dtype, the architecture from config.json.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub arch: Arch,
    /// None keeps the stored dtype (FP8 / MXFP4 included).
    pub weight_dtype: Option<Dtype>,
    /// A clmoe policy replacing the model's top-k (over its own scores).
    pub policy: Option<RouterConfig>,
    pub path: ExpertsPath,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { arch: Arch::Auto, weight_dtype: None, policy: None, path: ExpertsPath::Auto }
    }
}

/// A loaded MoE layer: its objects and the model's conventions.
pub struct MoeLayer<'c> {
    pub router: Router<'c>,
    pub experts: Experts<'c>,
    pub shared: Option<Experts<'c>>,
    pub shared_gate: Option<Tensor<'c>>,
    pub num_experts: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub top_k: i32,
    pub renormalize: bool,
    pub scoring: Scoring,
    pub groups: (i32, i32),
    pub gate_scale: f32,
    pub gate_position: GatePosition,
}

impl MoeLayer<'_> {
    /// The layer on x [T, d] into y (a new tensor of x's dtype and shape).
    pub fn forward<'c>(&self, ctx: &'c Context, x: &Tensor, importance: Option<&Tensor>, routing: &mut Routing) -> Result<Tensor<'c>> {
        let shape = x.shape()?;
        let mut y = Tensor::zeros(ctx, x.dtype()?, &shape)?;
        forward(
            &self.router,
            &self.experts,
            self.shared.as_ref().map(|s| (s, self.shared_gate.as_ref())),
            x,
            importance,
            &mut y,
            routing,
            false,
        )?;
        Ok(y)
    }
}

/// Loads MoE layer `layer` of a checkpoint onto ctx.
pub fn load_moe_layer<'c>(ctx: &'c Context, ck: &Checkpoint, layer: i32, o: &LoadOptions) -> Result<MoeLayer<'c>> {
    let mut d: ffi::clmoe_layer_desc = init(ffi::clmoe_layer_desc_init_sized);
    d.layer = layer;
    d.arch = o.arch as i32;
    d.weight_dtype = o.weight_dtype.map_or(0, |t| t as i32);
    d.path = o.path as i32;
    let mut rd: ffi::clmoe_router_desc = init(ffi::clmoe_router_desc_init_sized);
    if let Some(p) = &o.policy {
        p.fill(&mut rd);
        d.policy = &rd;
    }
    let mut out: ffi::clmoe_moe_layer = init(ffi::clmoe_moe_layer_init_sized);
    check(unsafe { ffi::clmoe_checkpoint_load_layer(ctx.ptr(), ck.ptr(), &d, &mut out) })?;
    let adopt_experts = |p: *mut ffi::clmoe_experts| {
        NonNull::new(p).map(|raw| Experts { raw, _ctx: PhantomData })
    };
    Ok(MoeLayer {
        router: Router { raw: NonNull::new(out.router).expect("router"), _ctx: PhantomData },
        experts: adopt_experts(out.experts).expect("experts"),
        shared: adopt_experts(out.shared_experts),
        shared_gate: NonNull::new(out.shared_gate).map(|raw| Tensor { raw, owned: true, _ctx: PhantomData }),
        num_experts: out.num_experts as usize,
        d_model: out.d_model as usize,
        d_ff: out.d_ff as usize,
        top_k: out.top_k,
        renormalize: out.renormalize != 0,
        scoring: if out.scoring == 1 { Scoring::Sigmoid } else { Scoring::Softmax },
        groups: (out.num_groups, out.topk_groups),
        gate_scale: out.gate_scale,
        gate_position: if out.gate_position == 1 { GatePosition::Input } else { GatePosition::Output },
    })
}
