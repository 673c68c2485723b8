//! Safe wrappers over `shim/shim.cpp`. Every call returns a `Result` carrying the C++ message.
use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use tch::Tensor;

extern "C" {
    fn selfsup_last_error() -> *const c_char;
    fn selfsup_autocast_enter(prev: *mut c_int) -> c_int;
    fn selfsup_autocast_exit(prev: c_int) -> c_int;
    fn selfsup_autocast_is_enabled(out: *mut c_int) -> c_int;
    fn selfsup_set_tf32(enabled: c_int) -> c_int;
    fn selfsup_get_tf32(out: *mut c_int) -> c_int;
    fn selfsup_manual_seed(seed: u64) -> c_int;
    fn selfsup_foreach_lerp(targets: *const *mut torch_sys::C_tensor, sources: *const *mut torch_sys::C_tensor, n: i64, weight: f64) -> c_int;
    fn selfsup_foreach_sgd(params: *const *mut torch_sys::C_tensor, grads: *const *mut torch_sys::C_tensor, moms: *const *mut torch_sys::C_tensor, n: i64, lr: f64, weight_decay: f64, momentum: f64, trust: f64) -> c_int;
    fn selfsup_cuda_peak_bytes(device: c_int, out: *mut i64) -> c_int;
    fn selfsup_cpu_capability(buf: *mut c_char, len: i64) -> c_int;
    fn selfsup_cuda_device_name(device: c_int, buf: *mut c_char, len: i64) -> c_int;
    fn selfsup_channels_last(t: *mut torch_sys::C_tensor, in_place: c_int, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_is_channels_last(t: *mut torch_sys::C_tensor, out: *mut c_int) -> c_int;
    fn selfsup_pin_memory(t: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_graph_new(device: c_int, out: *mut *mut c_void) -> c_int;
    fn selfsup_graph_enter(g: *mut c_void) -> c_int;
    fn selfsup_graph_exit(g: *mut c_void) -> c_int;
    fn selfsup_graph_capture_begin(g: *mut c_void) -> c_int;
    fn selfsup_graph_capture_end(g: *mut c_void) -> c_int;
    fn selfsup_graph_replay(g: *mut c_void) -> c_int;
    fn selfsup_graph_free(g: *mut c_void) -> c_int;
    fn selfsup_grads_to_none(ts: *const *mut torch_sys::C_tensor, n: i64) -> c_int;
    fn selfsup_op_count_start(handle: *mut u64) -> c_int;
    fn selfsup_op_count_stop(handle: u64, out: *mut i64) -> c_int;
    fn selfsup_foreach_adamw(params: *const *mut torch_sys::C_tensor, grads: *const *mut torch_sys::C_tensor, exp_avg: *const *mut torch_sys::C_tensor, exp_avg_sq: *const *mut torch_sys::C_tensor, n: i64, lr: f64, weight_decay: f64, beta1: f64, beta2: f64, eps: f64, bias1: f64, bias2: f64) -> c_int;
    fn selfsup_cuda_sync_debug(mode: c_int) -> c_int;
    fn selfsup_foreach_all_finite(ts: *const *mut torch_sys::C_tensor, n: i64, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_side_stream_enter(device: c_int, guard: *mut *mut c_void) -> c_int;
    fn selfsup_side_stream_exit(guard: *mut c_void) -> c_int;
    fn selfsup_event_record(device: c_int, event: *mut *mut c_void) -> c_int;
    fn selfsup_event_wait(event: *mut c_void, device: c_int, ts: *const *mut torch_sys::C_tensor, n: i64) -> c_int;
    fn selfsup_event_free(event: *mut c_void) -> c_int;
}


pub(crate) fn check(rc: c_int) -> anyhow::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        let msg = unsafe { CStr::from_ptr(selfsup_last_error()) }.to_string_lossy().into_owned();
        Err(anyhow::anyhow!("libtorch: {msg}"))
    }
}

/// bf16 autocast on CUDA for the lifetime of the guard (nests; restores the previous state).
pub struct AutocastGuard {
    prev: c_int,
}

impl AutocastGuard {
    pub fn bf16() -> anyhow::Result<Self> {
        let mut prev = 0;
        check(unsafe { selfsup_autocast_enter(&mut prev) })?;
        Ok(AutocastGuard { prev })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        let _ = check(unsafe { selfsup_autocast_exit(self.prev) });
    }
}

pub fn autocast_enabled() -> anyhow::Result<bool> {
    let mut out = 0;
    check(unsafe { selfsup_autocast_is_enabled(&mut out) })?;
    Ok(out != 0)
}

/// Allows TF32 tensor cores for float32 matmuls and convolutions.
pub fn set_tf32(enabled: bool) -> anyhow::Result<()> {
    check(unsafe { selfsup_set_tf32(enabled as c_int) })
}

pub fn tf32_enabled() -> anyhow::Result<bool> {
    let mut out = 0;
    check(unsafe { selfsup_get_tf32(&mut out) })?;
    Ok(out != 0)
}

/// Seeds the default generators of every device.
pub fn manual_seed(seed: u64) -> anyhow::Result<()> {
    check(unsafe { selfsup_manual_seed(seed) })
}

/// `targets[i] += weight * (sources[i] - targets[i])` in one multi-tensor launch (no grad).
pub fn foreach_lerp(targets: &[Tensor], sources: &[Tensor], weight: f64) -> anyhow::Result<()> {
    anyhow::ensure!(targets.len() == sources.len(), "foreach_lerp: {} targets vs {} sources", targets.len(), sources.len());
    let (t, s) = (ptrs(targets), ptrs(sources));
    check(unsafe { selfsup_foreach_lerp(t.as_ptr(), s.as_ptr(), t.len() as i64, weight) })
}

fn ptrs(ts: &[Tensor]) -> Vec<*mut torch_sys::C_tensor> {
    ts.iter().map(|x| x.as_ptr() as *mut torch_sys::C_tensor).collect()
}

/// One SGD-momentum update (`trust` = 0) or LARS update (`trust` = η > 0) of a parameter group
/// sharing `lr` and `weight_decay`, in multi-tensor operations (see [`crate::optim::Optimizer`]
/// for the equations): `params` and `moms` are updated in place, `grads` only read.
pub fn foreach_sgd(params: &[Tensor], grads: &[Tensor], moms: &[Tensor], lr: f64, weight_decay: f64, momentum: f64, trust: f64) -> anyhow::Result<()> {
    anyhow::ensure!(params.len() == grads.len() && params.len() == moms.len(), "foreach_sgd: {} params, {} grads, {} momentum buffers", params.len(), grads.len(), moms.len());
    let (p, g, m) = (ptrs(params), ptrs(grads), ptrs(moms));
    check(unsafe { selfsup_foreach_sgd(p.as_ptr(), g.as_ptr(), m.as_ptr(), p.len() as i64, lr, weight_decay, momentum, trust) })
}

/// One AdamW update of a parameter group sharing `lr` and `weight_decay`, in multi-tensor
/// operations; `bias1`/`bias2` are the bias corrections `1 − β^t` (see [`crate::optim::Optimizer`]).
#[allow(clippy::too_many_arguments)]
pub fn foreach_adamw(params: &[Tensor], grads: &[Tensor], exp_avg: &[Tensor], exp_avg_sq: &[Tensor], lr: f64, weight_decay: f64, beta1: f64, beta2: f64, eps: f64, bias1: f64, bias2: f64) -> anyhow::Result<()> {
    let n = params.len();
    anyhow::ensure!(grads.len() == n && exp_avg.len() == n && exp_avg_sq.len() == n, "foreach_adamw: {n} params, {} grads, {}/{} moment buffers", grads.len(), exp_avg.len(), exp_avg_sq.len());
    let (p, g, m, v) = (ptrs(params), ptrs(grads), ptrs(exp_avg), ptrs(exp_avg_sq));
    check(unsafe { selfsup_foreach_adamw(p.as_ptr(), g.as_ptr(), m.as_ptr(), v.as_ptr(), n as i64, lr, weight_decay, beta1, beta2, eps, bias1, bias2) })
}

/// Whether every value of every tensor in `ts` is finite, as a boolean scalar on `device` (the
/// tensors' device), computed there without reading anything back: one multi-tensor norm launch
/// accumulated in float64, so huge finite float32 values do not overflow into a false alarm.
pub fn foreach_all_finite(ts: &[Tensor], device: tch::Device) -> anyhow::Result<Tensor> {
    if ts.is_empty() {
        return Ok(Tensor::ones([], (tch::Kind::Bool, device)));
    }
    let p = ptrs(ts);
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    check(unsafe { selfsup_foreach_all_finite(p.as_ptr(), p.len() as i64, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// torch's CUDA sync debug mode: with `error`, every operation that makes the host wait for
/// the device (reading a value, a copy from pageable memory, a synchronize) fails with torch's
/// "called a synchronizing CUDA operation" error; `false` turns it off.
pub fn cuda_sync_debug(error: bool) -> anyhow::Result<()> {
    check(unsafe { selfsup_cuda_sync_debug(if error { 2 } else { 0 }) })
}

/// Turns torch's CUDA sync debug mode to "error" while alive (see [`cuda_sync_debug`]); off
/// again when dropped, also while a panic unwinds.
pub struct SyncDebugGuard;

impl SyncDebugGuard {
    pub fn on() -> anyhow::Result<Self> {
        cuda_sync_debug(true)?;
        Ok(SyncDebugGuard)
    }
}

impl Drop for SyncDebugGuard {
    fn drop(&mut self) {
        let _ = cuda_sync_debug(false);
    }
}

/// While alive, the calling thread's current stream on CUDA device `device` is its own side
/// stream from torch's pool (the same one every time on this thread), so asynchronous copies
/// queued meanwhile overlap the work of the device's default stream. End with [`SideStream::done`].
pub struct SideStream {
    guard: *mut c_void,
    device: usize,
}

impl SideStream {
    pub fn enter(device: usize) -> anyhow::Result<Self> {
        let mut guard = std::ptr::null_mut();
        check(unsafe { selfsup_side_stream_enter(device as c_int, &mut guard) })?;
        Ok(SideStream { guard, device })
    }

    /// Records an event after the work queued on the side stream and restores the thread's
    /// previous stream; [`CopyDone::wait`] orders a consumer's stream after that work.
    pub fn done(self) -> anyhow::Result<CopyDone> {
        let mut event = std::ptr::null_mut();
        check(unsafe { selfsup_event_record(self.device as c_int, &mut event) })?;
        Ok(CopyDone { event, device: self.device })
    }
}

impl Drop for SideStream {
    fn drop(&mut self) {
        let _ = check(unsafe { selfsup_side_stream_exit(self.guard) });
    }
}

/// A CUDA graph (torch.cuda.CUDAGraph) and the stream it is captured on. Between
/// [`CudaGraph::capture`]'s start and end the queued work is recorded, not run (nothing may wait
/// for the device or copy from pageable memory then); [`CudaGraph::replay`] then launches all of it
/// with one call, on the same memory. Warm-up iterations (cuDNN's algorithm search, lazy
/// allocations) belong on the graph's stream too, inside [`CudaGraph::enter`].
pub struct CudaGraph {
    ptr: *mut c_void,
    entered: bool,
}

impl CudaGraph {
    pub fn new(device: usize) -> anyhow::Result<Self> {
        let mut ptr = std::ptr::null_mut();
        check(unsafe { selfsup_graph_new(device as c_int, &mut ptr) })?;
        Ok(CudaGraph { ptr, entered: false })
    }

    /// Makes the graph's stream the current one (after the work queued on the previous one).
    pub fn enter(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.entered, "CUDA graph: stream entered twice");
        check(unsafe { selfsup_graph_enter(self.ptr) })?;
        self.entered = true;
        Ok(())
    }

    /// Restores the previous stream, ordered after the work queued on the graph's stream.
    pub fn exit(&mut self) -> anyhow::Result<()> {
        if self.entered {
            self.entered = false;
            check(unsafe { selfsup_graph_exit(self.ptr) })?;
        }
        Ok(())
    }

    /// Records what `work` queues (on the graph's stream, entered if it was not) and returns its
    /// result: the tensors it returns live in the graph's memory and are rewritten by each replay.
    pub fn capture<T>(&mut self, work: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
        if !self.entered {
            self.enter()?;
        }
        check(unsafe { selfsup_graph_capture_begin(self.ptr) })?;
        let out = work();
        // end the capture even when `work` failed, so the stream is usable again
        let ended = check(unsafe { selfsup_graph_capture_end(self.ptr) });
        let out = out?;
        ended?;
        Ok(out)
    }

    /// Launches the captured work on the calling thread's current stream.
    pub fn replay(&self) -> anyhow::Result<()> {
        check(unsafe { selfsup_graph_replay(self.ptr) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        let _ = self.exit();
        let _ = check(unsafe { selfsup_graph_free(self.ptr) });
    }
}

/// Counts the ATen operators dispatched on every thread while it runs (torch.profiler's
/// function-scope events named `aten::*`): each is a host dispatch, launched kernel or not, so
/// the count per step is what bounds a small model's step on a GPU. One counter at a time.
pub struct OpCounter {
    handle: Option<u64>,
}

impl OpCounter {
    pub fn start() -> anyhow::Result<Self> {
        let mut handle = 0u64;
        check(unsafe { selfsup_op_count_start(&mut handle) })?;
        Ok(OpCounter { handle: Some(handle) })
    }

    /// The number of operators dispatched since [`OpCounter::start`].
    pub fn stop(mut self) -> anyhow::Result<i64> {
        let mut n = 0i64;
        check(unsafe { selfsup_op_count_stop(self.handle.take().unwrap_or_default(), &mut n) })?;
        Ok(n)
    }
}

impl Drop for OpCounter {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let mut n = 0i64;
            let _ = check(unsafe { selfsup_op_count_stop(h, &mut n) });
        }
    }
}

/// The completion of copies queued on a [`SideStream`] (a CUDA event), handed with the copied
/// tensors to whichever thread uses them.
pub struct CopyDone {
    event: *mut c_void,
    device: usize,
}

// SAFETY: a CUDA event may be waited on and destroyed from any host thread; the handle is owned
// (freed once, in Drop) and only read by `wait`.
unsafe impl Send for CopyDone {}

impl CopyDone {
    /// Makes the calling thread's current stream wait on the device (no host synchronisation)
    /// for the copies, and marks `tensors` as used by that stream, so their memory is not reused
    /// by the side stream before the current stream's work on them has finished.
    pub fn wait(&self, tensors: &[&Tensor]) -> anyhow::Result<()> {
        let p: Vec<_> = tensors.iter().map(|x| x.as_ptr() as *mut torch_sys::C_tensor).collect();
        check(unsafe { selfsup_event_wait(self.event, self.device as c_int, p.as_ptr(), p.len() as i64) })
    }
}

impl Drop for CopyDone {
    fn drop(&mut self) {
        let _ = check(unsafe { selfsup_event_free(self.event) });
    }
}

/// Peak bytes allocated on CUDA device `device` (0 without CUDA).
pub fn cuda_peak_bytes(device: usize) -> anyhow::Result<i64> {
    let mut out = 0;
    check(unsafe { selfsup_cuda_peak_bytes(device as c_int, &mut out) })?;
    Ok(out)
}

/// The CPU kernels ATen dispatches to on this processor: "AVX512", "AVX2", "DEFAULT" (x86), as
/// `torch.backends.cpu.get_cpu_capability()` reports it.
pub fn cpu_capability() -> anyhow::Result<String> {
    string_from_shim(64, |buf, len| unsafe { selfsup_cpu_capability(buf, len) })
}

/// CUDA device `device` in words, as `torch.cuda.get_device_properties` gives it: name, compute
/// capability and memory ("NVIDIA H200, sm_90, 139 GiB"). An error without CUDA.
pub fn cuda_device_name(device: usize) -> anyhow::Result<String> {
    string_from_shim(256, |buf, len| unsafe { selfsup_cuda_device_name(device as c_int, buf, len) })
}

/// The text a shim function writes, NUL-terminated, into a buffer of `len` bytes it is given.
fn string_from_shim(len: usize, write: impl FnOnce(*mut c_char, i64) -> c_int) -> anyhow::Result<String> {
    let mut buf = vec![0 as c_char; len];
    check(write(buf.as_mut_ptr(), len as i64))?;
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// A channels-last (NHWC) copy of a 4-D tensor (other ranks are returned unchanged).
pub fn to_channels_last(t: &Tensor) -> anyhow::Result<Tensor> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    check(unsafe { selfsup_channels_last(t.as_ptr() as *mut _, 0, &mut out) })?;
    if out.is_null() {
        return Ok(t.shallow_clone());
    }
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Drops the gradients of `params` (torch's `zero_grad(set_to_none=True)`): no kernel per
/// tensor, and the next backward hands its gradient over instead of adding it to zeros.
pub fn grads_to_none(params: &[Tensor]) -> anyhow::Result<()> {
    let p = ptrs(params);
    check(unsafe { selfsup_grads_to_none(p.as_ptr(), p.len() as i64) })
}

/// A page-locked (pinned) copy of a CPU tensor, for asynchronous copies to the GPU. Unlike tch's
/// `Tensor::pin_memory(device)` it passes no device, which torch 2.11 deprecates with a warning
/// on every call.
pub fn pin_memory(t: &Tensor) -> anyhow::Result<Tensor> {
    let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
    check(unsafe { selfsup_pin_memory(t.as_ptr() as *mut _, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Re-lays every 4-D parameter (conv weights) as channels-last in place.
pub fn params_to_channels_last(params: &[Tensor]) -> anyhow::Result<()> {
    for p in params {
        let mut out: *mut torch_sys::C_tensor = std::ptr::null_mut();
        check(unsafe { selfsup_channels_last(p.as_ptr() as *mut _, 1, &mut out) })?;
    }
    Ok(())
}

pub fn is_channels_last(t: &Tensor) -> anyhow::Result<bool> {
    let mut out = 0;
    check(unsafe { selfsup_is_channels_last(t.as_ptr() as *mut _, &mut out) })?;
    Ok(out != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a GPU: the pinned copy holds the same values in page-locked memory. Without one there
    /// is no pinned allocator: an error carrying libtorch's message, not a panic.
    #[test]
    fn pin_memory_copies_into_page_locked_memory_or_says_why_not() {
        let t = Tensor::arange(12, (tch::Kind::Float, tch::Device::Cpu)).view([3, 4]);
        match pin_memory(&t) {
            Ok(p) => {
                assert!(tch::Cuda::is_available(), "pinned memory without an accelerator");
                assert!(p.is_pinned(tch::Device::Cuda(0)));
                assert!(!t.is_pinned(tch::Device::Cuda(0)));
                assert_eq!(p.size(), t.size());
                assert_eq!((&p - &t).abs().max().double_value(&[]), 0.0);
            }
            Err(e) => {
                assert!(!tch::Cuda::is_available(), "pinning failed with a GPU present: {e}");
                assert!(e.to_string().starts_with("libtorch: "), "{e}");
            }
        }
    }
}
