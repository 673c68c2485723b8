//! BYOL's regression loss. Grill et al., "Bootstrap Your Own Latent", 2020, arXiv:2006.07733,
//! Eq. 2: with q̄ = q/‖q‖ and z̄' = z'/‖z'‖,
//! `L = ‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖)`, averaged over the batch.
//! The full objective (Eq. 3) is the *sum* of this loss for both view orders.
use super::l2_normalize;
use tch::Tensor;

/// `p: [N, D]` online predictions, `z: [N, D]` targets (detach them at the call site).
/// Returns the scalar mean of `2 − 2 cos(p_i, z_i)`. Computed in float32.
pub fn regression_loss(p: &Tensor, z: &Tensor) -> Tensor {
    assert_eq!(p.size(), z.size(), "BYOL loss: prediction and target shapes differ");
    let p = l2_normalize(&p.to_kind(tch::Kind::Float));
    let z = l2_normalize(&z.to_kind(tch::Kind::Float));
    // [N]
    let cos = (p * z).sum_dim_intlist([-1i64].as_slice(), false, tch::Kind::Float);
    let per_sample: Tensor = 2.0 - cos * 2.0;
    per_sample.mean(tch::Kind::Float)
}
