//! Losses as pure functions over tensors. Stop-gradients are applied at the call site, never here.
pub mod byol;

pub use byol::regression_loss;

/// L2-normalises rows: `x / max(‖x‖₂, 1e-12)` (as `torch.nn.functional.normalize`).
pub fn l2_normalize(x: &tch::Tensor) -> tch::Tensor {
    let norm = x.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-12);
    x / norm
}
