//! Data-parallel processes on torch's c10d (TCPStore rendezvous + Gloo process group) through
//! `shim/dist.cpp`. A process learns its place from the environment set by `selfsup launch`:
//! `SELFSUP_RANK`, `SELFSUP_WORLD_SIZE`, `SELFSUP_MASTER` (host:port). Without them it is rank 0 of
//! 1 and every collective is the identity, so single-process code paths need no branches.
use crate::backend::shim::check;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;
use tch::Tensor;

extern "C" {
    fn selfsup_dist_available() -> c_int;
    fn selfsup_dist_init(rank: c_int, world: c_int, host: *const c_char, port: c_int, timeout_ms: i64) -> c_int;
    fn selfsup_dist_destroy() -> c_int;
    fn selfsup_dist_all_reduce_sum_(t: *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_all_reduce_sum_autograd(x: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_all_gather_autograd(x: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_all_gather(x: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_broadcast_(t: *mut torch_sys::C_tensor, root: c_int) -> c_int;
    fn selfsup_dist_barrier() -> c_int;
}

pub const ENV_RANK: &str = "SELFSUP_RANK";
pub const ENV_WORLD: &str = "SELFSUP_WORLD_SIZE";
pub const ENV_MASTER: &str = "SELFSUP_MASTER";
pub const ENV_TIMEOUT: &str = "SELFSUP_DIST_TIMEOUT_S";

/// This process's place in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub rank: usize,
    pub world: usize,
}

impl Place {
    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
    pub fn distributed(&self) -> bool {
        self.world > 1
    }
}

static PLACE: OnceLock<Place> = OnceLock::new();

/// Whether this binary was built with the Gloo process group.
pub fn available() -> bool {
    unsafe { selfsup_dist_available() != 0 }
}

/// The place set by [`init_from_env`] (rank 0 of 1 before or without it).
pub fn place() -> Place {
    *PLACE.get().unwrap_or(&Place { rank: 0, world: 1 })
}

fn env_usize(key: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(key) {
        Ok(v) => Ok(Some(v.parse().map_err(|_| crate::Error::usage(format!("{key}={v} is not a non-negative integer")))?)),
        Err(_) => Ok(None),
    }
}

/// Joins the job described by the environment (once per process); a no-op for a single process.
pub fn init_from_env() -> anyhow::Result<Place> {
    if let Some(p) = PLACE.get() {
        return Ok(*p);
    }
    let (Some(rank), Some(world)) = (env_usize(ENV_RANK)?, env_usize(ENV_WORLD)?) else {
        return Ok(*PLACE.get_or_init(|| Place { rank: 0, world: 1 }));
    };
    anyhow::ensure!(world >= 1 && rank < world, "{ENV_RANK}={rank} must be below {ENV_WORLD}={world}");
    if world > 1 {
        anyhow::ensure!(available(), "distributed training needs gloo's headers at build time: apt-get install libgloo-dev, then rebuild");
        let master = std::env::var(ENV_MASTER).unwrap_or_else(|_| "127.0.0.1:29500".into());
        let (host, port) = master.rsplit_once(':').ok_or_else(|| crate::Error::usage(format!("{ENV_MASTER}={master}: expected HOST:PORT")))?;
        let port: u16 = port.parse().map_err(|_| crate::Error::usage(format!("{ENV_MASTER}={master}: bad port")))?;
        let timeout_s = env_usize(ENV_TIMEOUT)?.unwrap_or(1800);
        let host_c = CString::new(host)?;
        check(unsafe { selfsup_dist_init(rank as c_int, world as c_int, host_c.as_ptr(), port as c_int, timeout_s as i64 * 1000) }).map_err(|e| e.context(format!("rank {rank}/{world}: joining the process group at {master}")))?;
    }
    Ok(*PLACE.get_or_init(|| Place { rank, world }))
}

/// Leaves the process group (before exit, not in a static destructor).
pub fn shutdown() {
    if place().distributed() {
        let _ = check(unsafe { selfsup_dist_destroy() });
    }
}

fn adopt(out: *mut torch_sys::C_tensor) -> Tensor {
    unsafe { Tensor::from_ptr(out) }
}

/// In place: `t ← Σ_ranks t` (no autograd). `t` must be contiguous.
pub fn all_reduce_sum_(t: &Tensor) -> anyhow::Result<()> {
    if !place().distributed() {
        return Ok(());
    }
    check(unsafe { selfsup_dist_all_reduce_sum_(t.as_ptr() as *mut _) }).map_err(|e| e.context(format!("rank {}: all-reduce", place().rank)))
}

/// `Σ_ranks x` with a gradient (backward all-reduces the incoming gradient).
pub fn all_reduce_sum(x: &Tensor) -> anyhow::Result<Tensor> {
    if !place().distributed() {
        return Ok(x.shallow_clone());
    }
    let mut out = std::ptr::null_mut();
    check(unsafe { selfsup_dist_all_reduce_sum_autograd(x.as_ptr() as *mut _, &mut out) }).map_err(|e| e.context(format!("rank {}: all-reduce", place().rank)))?;
    Ok(adopt(out))
}

/// Rows of every rank concatenated in rank order, with a gradient for the local rows (backward
/// sums the gradient over ranks and keeps this rank's slice). Every rank must pass the same shape.
pub fn all_gather(x: &Tensor) -> anyhow::Result<Tensor> {
    if !place().distributed() {
        return Ok(x.shallow_clone());
    }
    let mut out = std::ptr::null_mut();
    check(unsafe { selfsup_dist_all_gather_autograd(x.as_ptr() as *mut _, &mut out) }).map_err(|e| e.context(format!("rank {}: all-gather", place().rank)))?;
    Ok(adopt(out))
}

/// Rows of every rank concatenated in rank order, detached.
pub fn all_gather_detached(x: &Tensor) -> anyhow::Result<Tensor> {
    if !place().distributed() {
        return Ok(x.detach());
    }
    let mut out = std::ptr::null_mut();
    check(unsafe { selfsup_dist_all_gather(x.as_ptr() as *mut _, &mut out) }).map_err(|e| e.context(format!("rank {}: all-gather", place().rank)))?;
    Ok(adopt(out))
}

/// In place: every rank receives `root`'s values.
pub fn broadcast_(t: &Tensor, root: usize) -> anyhow::Result<()> {
    if !place().distributed() {
        return Ok(());
    }
    check(unsafe { selfsup_dist_broadcast_(t.as_ptr() as *mut _, root as c_int) }).map_err(|e| e.context(format!("rank {}: broadcast", place().rank)))
}

pub fn barrier() -> anyhow::Result<()> {
    if !place().distributed() {
        return Ok(());
    }
    check(unsafe { selfsup_dist_barrier() }).map_err(|e| e.context(format!("rank {}: barrier", place().rank)))
}

/// Averages gradients over ranks: the gradients of `params` are flattened into buckets of about
/// `bucket_bytes`, each all-reduced once and divided by the world size.
pub fn average_gradients(params: &[Tensor], bucket_bytes: usize) -> anyhow::Result<()> {
    let world = place().world;
    if world <= 1 {
        return Ok(());
    }
    let _g = tch::no_grad_guard();
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    let mut start = 0;
    while start < grads.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < grads.len() && (end == start || bytes + grads[end].numel() * 4 <= bucket_bytes) {
            bytes += grads[end].numel() * 4;
            end += 1;
        }
        let flat = Tensor::cat(&grads[start..end].iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0);
        all_reduce_sum_(&flat)?;
        let flat = flat / world as f64;
        let mut offset = 0;
        for g in &grads[start..end] {
            let n = g.numel() as i64;
            g.shallow_clone().copy_(&flat.narrow(0, offset, n).view_as(g));
            offset += n;
        }
        start = end;
    }
    Ok(())
}

/// Broadcasts every tensor from rank 0 (identical starting weights and buffers on every rank).
pub fn broadcast_all(tensors: &[Tensor]) -> anyhow::Result<()> {
    let _g = tch::no_grad_guard();
    for t in tensors {
        broadcast_(t, 0)?;
    }
    Ok(())
}
