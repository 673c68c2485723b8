//! Losses as pure functions over tensors. Stop-gradients are applied at the call site, never here.
pub mod alignment_uniformity;
pub mod byol;
pub mod contrastive;
pub mod simsiam;

pub use alignment_uniformity::{alignment, uniformity};
pub use byol::{byol_negatives_term, normalised_regression_loss, regression_loss, LossNorm};
pub use contrastive::{info_nce, info_nce_batch_keys, info_nce_logits, nt_xent, sup_con, sup_con_views};
pub use simsiam::negative_cosine;

/// L2-normalises rows: `x / max(‖x‖₂, 1e-12)` (as `torch.nn.functional.normalize`).
pub fn l2_normalize(x: &tch::Tensor) -> tch::Tensor {
    let norm = x.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-12);
    x / norm
}

/// The kind losses and metrics compute in: float64 for float64 inputs (numerical checks with
/// `train.precision = "f64"`), float32 otherwise (also under bf16 autocast).
pub fn compute_kind(k: tch::Kind) -> tch::Kind {
    if k == tch::Kind::Double {
        tch::Kind::Double
    } else {
        tch::Kind::Float
    }
}
