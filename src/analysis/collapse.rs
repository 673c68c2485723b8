//! Collapse metrics.
use crate::losses::l2_normalize;
use tch::{Kind, Tensor};

/// Mean over dimensions of the per-dimension standard deviation of L2-normalised outputs
/// `z: [N, D]` (BYOL/SimSiam collapse monitor, SimSiam arXiv:2011.10566 §4.1): 0 when every output
/// is the same vector, about `1/√D` for outputs spread uniformly on the sphere.
pub fn z_std(z: &Tensor) -> f64 {
    let z = l2_normalize(&z.to_kind(Kind::Float));
    z.std_dim(0, true, false).mean(Kind::Float).double_value(&[])
}

/// Effective rank (Roy & Vetterli 2007; RankMe, Garrido et al. 2023, arXiv:2210.02885, Eq. 1) of
/// `z: [N, D]`: `exp(−Σ_k p_k log p_k)` with `p_k = σ_k / Σσ` the normalised singular values. 1 for a
/// collapsed (rank-1) set, D for a set with equal singular values.
pub fn effective_rank(z: &Tensor) -> f64 {
    let (_, s, _) = z.to_kind(Kind::Double).svd(true, false);
    let total = s.sum(Kind::Double);
    let p = &s / total.clamp_min(1e-300);
    // 0·log 0 = 0
    let plogp = (&p * p.clamp_min(1e-300).log()).sum(Kind::Double);
    (-plogp).exp().double_value(&[])
}

/// Mean cosine between each L2-normalised embedding and the batch mean of the normalised
/// embeddings (the "batch mean acts as a negative" hypothesis: BN pushes samples away from it).
/// 1 for a collapsed batch, 0 for a batch whose mean is 0. An all-zero output (normalised to 0)
/// and an all-zero mean count as the same point, cosine 1 — all-zero outputs are one point, as
/// `uniformity` reads them, not an undefined cosine read as 0 ("spread"): for unit-or-zero vectors
/// `ẑ_i·m̂ + (1 − ‖ẑ_i‖²)(1 − ‖m̂‖²)`.
pub fn batch_mean_cos(z: &Tensor) -> f64 {
    let z = l2_normalize(&z.to_kind(Kind::Float));
    let m = l2_normalize(&z.mean_dim([0i64].as_slice(), true, Kind::Float));
    let row_sq = |t: &Tensor| t.square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let both_zero: Tensor = (1.0 - row_sq(&z)) * (1.0 - row_sq(&m));
    ((&z * &m).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) + both_zero).mean(Kind::Float).double_value(&[])
}
