//! BYOL's regression loss. Grill et al., "Bootstrap Your Own Latent", 2020, arXiv:2006.07733,
//! Eq. 2: with q̄ = q/‖q‖ and z̄' = z'/‖z'‖,
//! `L = ‖q̄ − z̄'‖² = 2 − 2·⟨q, z'⟩ / (‖q‖·‖z'‖)`, averaged over the batch.
//! The full objective (Eq. 3) is the *sum* of this loss for both view orders.
//!
//! The paper's loss-normalisation ablation (ImageNet 300 epochs: ℓ2 72.5, LayerNorm 72.5, none
//! 67.4, BatchNorm 65.3 top-1) replaces the ℓ2 normalisation by another map before the squared
//! error: [`LossNorm`], [`normalised_regression_loss`].
use super::l2_normalize;
use tch::Tensor;

/// The map applied to predictions and targets (each separately) before BYOL's squared error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossNorm {
    /// `x / ‖x‖` (the paper's loss, Eq. 2).
    L2,
    /// Each row standardised over its D features, `(x − mean) / √(var + ε)`, then scaled by
    /// `1/√D` so that every row has unit norm, as under ℓ2: the loss is `2 − 2·corr(p, z)`
    /// (Pearson correlation) up to ε.
    LayerNorm,
    /// Each feature standardised over the batch (batch statistics, biased variance, ε), then
    /// scaled by `1/√D` so that rows have unit norm on average.
    BatchNorm,
    /// The raw outputs: `‖p − z‖²`.
    None,
}

impl LossNorm {
    /// The config names (`byol.loss_norm`), in the order of the paper's table.
    pub const CHOICES: [(&'static str, LossNorm); 4] =
        [("l2", LossNorm::L2), ("layernorm", LossNorm::LayerNorm), ("none", LossNorm::None), ("batchnorm", LossNorm::BatchNorm)];

    /// Applies the map to `x: [N, D]` (already in the compute kind).
    pub fn apply(self, x: &Tensor) -> Tensor {
        const EPS: f64 = 1e-5;
        let d = x.size()[1] as f64;
        let standardise = |dim: i64| {
            let dims = [dim];
            let mean = x.mean_dim(dims.as_slice(), true, x.kind());
            let var = x.var_dim(dims.as_slice(), false, true);
            (x - mean) / (var + EPS).sqrt() / d.sqrt()
        };
        match self {
            LossNorm::L2 => l2_normalize(x),
            LossNorm::LayerNorm => standardise(1),
            LossNorm::BatchNorm => standardise(0),
            LossNorm::None => x.shallow_clone(),
        }
    }
}

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

/// BYOL's loss with `norm` in place of the ℓ2 normalisation: the batch mean of
/// `‖norm(p)_i − norm(z)_i‖²`. With [`LossNorm::L2`] it is exactly [`regression_loss`] (the same
/// computation).
pub fn normalised_regression_loss(p: &Tensor, z: &Tensor, norm: LossNorm) -> Tensor {
    if norm == LossNorm::L2 {
        return regression_loss(p, z);
    }
    let kd = super::compute_kind(p.kind());
    assert_eq!(p.size(), z.size(), "BYOL loss: prediction and target shapes differ");
    let diff = norm.apply(&p.to_kind(kd)) - norm.apply(&z.to_kind(kd));
    diff.square().sum_dim_intlist([-1i64].as_slice(), false, kd).mean(kd)
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
