//! BYOL's regression loss. Grill et al., "Bootstrap Your Own Latent", 2020, arXiv:2006.07733,
//! Eq. 2: with q̄ = q/‖q‖ and z̄' = z'/‖z'‖,
//! `L = ‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖)`, averaged over the batch.
//! The full objective (Eq. 3) is the *sum* of this loss for both view orders.
use super::l2_normalize;
use tch::Tensor;

/// `p: [N, D]` online predictions, `z: [N, D]` targets (detach them at the call site).
/// Returns the scalar mean of `2 − 2 cos(p_i, z_i)`. Computed in float32.
pub fn regression_loss(p: &Tensor, z: &Tensor) -> Tensor {
    let kd = super::compute_kind(p.kind());
    assert_eq!(p.size(), z.size(), "BYOL loss: prediction and target shapes differ");
    let p = l2_normalize(&p.to_kind(kd));
    let z = l2_normalize(&z.to_kind(kd));
    // [N]
    let cos = (p * z).sum_dim_intlist([-1i64].as_slice(), false, kd);
    let per_sample: Tensor = 2.0 - cos * 2.0;
    per_sample.mean(kd)
}

/// BYOL's "adding negatives" term (arXiv:2006.07733, Appendix F.4, the generalised
/// InfoNCE_{α,β}, whose β = 0 case is BYOL): the part to *add* to the loss, before the weight β,
/// `2α · (1/B) Σ_i log( Σ_{j≠i} exp(S(v_i, v_j)/α) + Σ_j exp(S(v_i, v'_j)/α) )`
/// with `S(u, w) = cos(online prediction of u, target projection of w)`.
/// `p: [B, D]` online predictions of view v, `t_same: [B, D]` target projections of the same
/// view (v_j, j ≠ i are negatives), `t_other: [B, D]` target projections of the other view v'
/// (v'_i is the positive, kept in the sum as in the paper). Targets are detached by the caller.
pub fn byol_negatives_term(p: &Tensor, t_same: &Tensor, t_other: &Tensor, alpha: f64) -> Tensor {
    let kd = super::compute_kind(p.kind());
    let b = p.size()[0];
    let p = l2_normalize(&p.to_kind(kd));
    let same = p.matmul(&l2_normalize(&t_same.to_kind(kd)).tr()) / alpha;
    let other = p.matmul(&l2_normalize(&t_other.to_kind(kd)).tr()) / alpha;
    let eye = Tensor::eye(b, (tch::Kind::Bool, p.device()));
    let same = same.masked_fill(&eye, f64::NEG_INFINITY);
    let lse = Tensor::cat(&[same, other], 1).logsumexp([1i64].as_slice(), false);
    lse.mean(kd) * (2.0 * alpha)
}
