//! Exponential moving average of weights: `θ_target ← τ·θ_target + (1 − τ)·θ_online`
//! (BYOL, arXiv:2006.07733, Eq. 1), as one multi-tensor `_foreach_lerp_` launch.
use tch::Tensor;

/// Updates every `targets[i]` towards `sources[i]` with decay `tau` (no gradient is recorded).
pub fn ema_update(targets: &[Tensor], sources: &[Tensor], tau: f64) -> anyhow::Result<()> {
    if tau >= 1.0 {
        return Ok(()); // a fixed target
    }
    crate::backend::shim::foreach_lerp(targets, sources, 1.0 - tau)
}
