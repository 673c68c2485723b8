//! Data-parallel processes on torch's c10d (TCPStore rendezvous, a Gloo process group and, for
//! CUDA tensors, an NCCL one) through `shim/dist.cpp`. A process learns its place from the
//! environment set by `selfsup launch`: `SELFSUP_RANK`, `SELFSUP_WORLD_SIZE`, `SELFSUP_MASTER`
//! (host:port), `SELFSUP_DIST_BACKEND` (auto | gloo | nccl). Without them it is rank 0 of 1 and
//! every collective is the identity, so single-process code paths need no branches.
use crate::backend::shim::check;
use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::OnceLock;
use tch::Tensor;

extern "C" {
    fn selfsup_dist_available() -> c_int;
    fn selfsup_dist_nccl_available() -> c_int;
    fn selfsup_dist_init(rank: c_int, world: c_int, host: *const c_char, port: c_int, timeout_ms: i64, nccl: c_int) -> c_int;
    fn selfsup_dist_destroy() -> c_int;
    fn selfsup_dist_all_reduce_sum_(t: *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_all_gather_autograd(x: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_all_gather(x: *mut torch_sys::C_tensor, out: *mut *mut torch_sys::C_tensor) -> c_int;
    fn selfsup_dist_broadcast_(t: *mut torch_sys::C_tensor, root: c_int) -> c_int;
    fn selfsup_dist_barrier() -> c_int;
    fn selfsup_dist_reducer_new(params: *const *mut torch_sys::C_tensor, n: i64, bucket_bytes: i64) -> c_int;
    fn selfsup_dist_reducer_prepare() -> c_int;
    fn selfsup_dist_reducer_free() -> c_int;
}

pub const ENV_RANK: &str = "SELFSUP_RANK";
pub const ENV_WORLD: &str = "SELFSUP_WORLD_SIZE";
pub const ENV_MASTER: &str = "SELFSUP_MASTER";
pub const ENV_TIMEOUT: &str = "SELFSUP_DIST_TIMEOUT_S";
pub const ENV_BACKEND: &str = "SELFSUP_DIST_BACKEND";

/// Which process group carries the collectives on CUDA tensors (CPU tensors always go to Gloo).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// NCCL when training on a GPU and this build has it, else Gloo.
    Auto,
    Gloo,
    Nccl,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Backend, crate::Error> {
        match s {
            "auto" => Ok(Backend::Auto),
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            _ => Err(crate::Error::usage(format!("{ENV_BACKEND}={s}: expected auto, gloo or nccl"))),
        }
    }
}

/// This process's place in the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub rank: usize,
    pub world: usize,
    /// In a process group: always with several processes; with one only when a backend was named
    /// (`selfsup launch --nproc 1 --backend nccl` checks a machine's setup before a larger job).
    pub group: bool,
    /// CUDA tensors' collectives go to NCCL (CPU tensors' to Gloo).
    pub nccl: bool,
}

impl Place {
    pub const ALONE: Place = Place { rank: 0, world: 1, group: false, nccl: false };

    pub fn is_main(&self) -> bool {
        self.rank == 0
    }
    /// Whether collectives run (in a process group, even of one).
    pub fn distributed(&self) -> bool {
        self.group
    }
    /// The process group's name for reports: `gloo` or `nccl` (GPU tensors), none when alone.
    pub fn backend_name(&self) -> Option<&'static str> {
        self.group.then_some(if self.nccl { "nccl" } else { "gloo" })
    }
}

static PLACE: OnceLock<Place> = OnceLock::new();

/// Whether this binary was built with the Gloo process group.
pub fn available() -> bool {
    unsafe { selfsup_dist_available() != 0 }
}

/// Whether this binary was built with the NCCL process group.
pub fn nccl_available() -> bool {
    unsafe { selfsup_dist_nccl_available() != 0 }
}

/// The place set by [`init_from_env`] (rank 0 of 1 before or without it).
pub fn place() -> Place {
    *PLACE.get().unwrap_or(&Place::ALONE)
}

fn env_usize(key: &str) -> anyhow::Result<Option<usize>> {
    match std::env::var(key) {
        Ok(v) => Ok(Some(v.parse().map_err(|_| crate::Error::usage(format!("{key}={v} is not a non-negative integer")))?)),
        Err(_) => Ok(None),
    }
}

/// Whether CUDA collectives of a job on `device` go to NCCL: `auto` picks it on a GPU when this
/// build has it; naming it where it cannot work is an error that says why.
fn use_nccl(backend: Backend, device: tch::Device) -> anyhow::Result<bool> {
    match backend {
        Backend::Gloo => Ok(false),
        Backend::Auto => Ok(device.is_cuda() && nccl_available()),
        Backend::Nccl => {
            anyhow::ensure!(device.is_cuda(), crate::Error::usage(format!("{ENV_BACKEND}=nccl needs --device cuda (NCCL reduces GPU tensors); use gloo on the CPU")));
            anyhow::ensure!(nccl_available(), "{ENV_BACKEND}=nccl: this binary was built without NCCL (build.rs found no NCCL or CUDA headers; `make setup` installs them), use gloo");
            Ok(true)
        }
    }
}

/// Joins the job described by the environment (once per process), training on `device`; a no-op
/// for a single process unless a backend was named.
pub fn init_from_env(device: tch::Device) -> anyhow::Result<Place> {
    if let Some(p) = PLACE.get() {
        return Ok(*p);
    }
    let (Some(rank), Some(world)) = (env_usize(ENV_RANK)?, env_usize(ENV_WORLD)?) else {
        return Ok(*PLACE.get_or_init(|| Place::ALONE));
    };
    anyhow::ensure!(world >= 1 && rank < world, "{ENV_RANK}={rank} must be below {ENV_WORLD}={world}");
    let named = std::env::var(ENV_BACKEND).ok().filter(|b| !b.is_empty());
    let backend = named.as_deref().map(Backend::parse).transpose()?.unwrap_or(Backend::Auto);
    let group = world > 1 || backend != Backend::Auto;
    let nccl = group && use_nccl(backend, device)?;
    if group {
        anyhow::ensure!(available(), "distributed training needs gloo's headers at build time: apt-get install libgloo-dev, then rebuild");
        let master = std::env::var(ENV_MASTER).unwrap_or_else(|_| "127.0.0.1:29500".into());
        let (host, port) = master.rsplit_once(':').ok_or_else(|| crate::Error::usage(format!("{ENV_MASTER}={master}: expected HOST:PORT")))?;
        let port: u16 = port.parse().map_err(|_| crate::Error::usage(format!("{ENV_MASTER}={master}: bad port")))?;
        let timeout_s = env_usize(ENV_TIMEOUT)?.unwrap_or(1800);
        let host_c = CString::new(host)?;
        check(unsafe { selfsup_dist_init(rank as c_int, world as c_int, host_c.as_ptr(), port as c_int, timeout_s as i64 * 1000, nccl as c_int) }).map_err(|e| e.context(format!("rank {rank}/{world}: joining the process group at {master}")))?;
        tracing::info!("rank {rank}/{world}: joined the process group at {master} ({})", if nccl { "NCCL for GPU tensors, Gloo for CPU tensors" } else { "Gloo" });
    }
    Ok(*PLACE.get_or_init(|| Place { rank, world, group, nccl }))
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

/// Several `[B, …]` tensors of the same shape from every rank in one collective: stacked to
/// `[B, n, …]`, gathered to `[ranks·B, n, …]` and split again, so a step pays one all-gather
/// (and, with `grad`, one all-reduce in backward: [`all_gather`]) however many tensors it sends.
/// One process: the tensors themselves (detached without `grad`), with no copy.
pub fn all_gather_each(xs: &[Tensor], grad: bool) -> anyhow::Result<Vec<Tensor>> {
    if !place().distributed() {
        return Ok(xs.iter().map(|x| if grad { x.shallow_clone() } else { x.detach() }).collect());
    }
    let stacked = Tensor::stack(xs, 1);
    let every = if grad { all_gather(&stacked)? } else { all_gather_detached(&stacked)? };
    Ok(every.unbind(1))
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
    if !place().distributed() {
        return Ok(());
    }
    let world = place().world;
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

/// Gradient buckets' size (as DDP's default, 25 MB).
pub const BUCKET_BYTES: usize = 25 << 20;

/// How a step's gradients are averaged over ranks (`train.grad_sync`).
pub enum GradSync {
    /// One process: nothing to average.
    Alone,
    /// After backward: buckets all-reduced one after another ([`average_gradients`]).
    After,
    /// While backward runs: c10d's Reducer (the engine of PyTorch's DDP) starts each bucket's
    /// all-reduce as soon as autograd has produced its gradients. It needs the parameters that get
    /// a gradient in every step, so the first step is averaged after backward and builds the
    /// reducer over the parameters whose gradients it saw (`built` from then on).
    Overlap { built: bool },
}

impl GradSync {
    /// For this process's place: `overlap` (the Reducer) or after backward.
    pub fn new(overlap: bool) -> GradSync {
        match (place().distributed(), overlap) {
            (false, _) => GradSync::Alone,
            (true, false) => GradSync::After,
            (true, true) => GradSync::Overlap { built: false },
        }
    }

    /// Before `backward()`: the reducer expects the coming gradients (every rank, every step
    /// whose gradients are averaged).
    pub fn before_backward(&mut self) -> anyhow::Result<()> {
        if let GradSync::Overlap { built: true } = self {
            check(unsafe { selfsup_dist_reducer_prepare() }).map_err(|e| e.context(format!("rank {}: gradient reducer", place().rank)))?;
        }
        Ok(())
    }

    /// After `backward()`: every gradient of the optimised parameters (which `params` lists, asked
    /// for only when they are needed here) is the average over ranks.
    pub fn after_backward(&mut self, params: impl FnOnce() -> Vec<Tensor>) -> anyhow::Result<()> {
        match self {
            GradSync::Alone | GradSync::Overlap { built: true } => Ok(()),
            GradSync::After => average_gradients(&params(), BUCKET_BYTES),
            GradSync::Overlap { built } => {
                let params = params();
                average_gradients(&params, BUCKET_BYTES)?;
                let with_grad: Vec<Tensor> = params.iter().filter(|p| p.grad().defined()).map(|p| p.shallow_clone()).collect();
                let ptrs: Vec<*mut torch_sys::C_tensor> = with_grad.iter().map(|t| t.as_ptr() as *mut _).collect();
                check(unsafe { selfsup_dist_reducer_new(ptrs.as_ptr(), ptrs.len() as i64, BUCKET_BYTES as i64) }).map_err(|e| e.context(format!("rank {}: building the gradient reducer", place().rank)))?;
                *built = true;
                Ok(())
            }
        }
    }
}

impl Drop for GradSync {
    fn drop(&mut self) {
        if let GradSync::Overlap { built: true } = self {
            let _ = check(unsafe { selfsup_dist_reducer_free() });
        }
    }
}

/// Broadcasts every tensor from rank 0 (identical starting weights and buffers on every rank).
pub fn broadcast_all(tensors: &[Tensor]) -> anyhow::Result<()> {
    let _g = tch::no_grad_guard();
    for t in tensors {
        broadcast_(t, 0)?;
    }
    Ok(())
}
