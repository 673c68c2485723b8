//! Alignment and uniformity: Wang & Isola, "Understanding Contrastive Representation Learning
//! through Alignment and Uniformity on the Hypersphere", ICML 2020, arXiv:2005.10242, Eq. 4–5,
//! on L2-normalised features:
//! `align = E_{(x,y) positive} ‖f(x) − f(y)‖₂^α` (α = 2) and
//! `uniform = log E_{x≠y} exp(−t‖f(x) − f(y)‖²)` (t = 2), the expectation over distinct pairs.
//! Both are differentiable, so the uniformity term doubles as a loss (BYOL + λ·uniformity).
use super::l2_normalize;
use tch::{Kind, Tensor};

/// `E‖x̄_i − ȳ_i‖^α` over the rows of two `[N, D]` views.
pub fn alignment(x: &Tensor, y: &Tensor, alpha: f64) -> Tensor {
    let kd = super::compute_kind(x.kind());
    let x = l2_normalize(&x.to_kind(kd));
    let y = l2_normalize(&y.to_kind(kd));
    (x - y).norm_scalaropt_dim(2, [1i64].as_slice(), false).pow_tensor_scalar(alpha).mean(kd)
}

/// `log E_{i<j} exp(−t‖x̄_i − x̄_j‖²)` over the rows of `[N, D]` (N ≥ 2).
pub fn uniformity(x: &Tensor, t: f64) -> Tensor {
    let kd = super::compute_kind(x.kind());
    let x = l2_normalize(&x.to_kind(kd));
    // ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b (differentiable everywhere, unlike pdist at 0); the norms are
    // 1 on the sphere and 0 for an all-zero row (a dead network's output, which normalises to
    // the origin: all such rows are one point, not mutually orthogonal unit vectors)
    let norms = x.square().sum_dim_intlist([1i64].as_slice(), true, kd);
    let sq: Tensor = (x.matmul(&x.tr()) * -2.0 + &norms + norms.tr()).clamp_min(0.0);
    let n = x.size()[0];
    // the pairs i < j: the rest of the matrix is filled with −∞, which adds exp(−∞) = 0 to the
    // sum and no gradient (a mask of fixed shape: no host read of how many were selected, so
    // the step stays free of synchronisation and can be captured in a CUDA graph)
    let not_upper = Tensor::ones([n, n], (Kind::Bool, x.device())).triu(1).logical_not();
    let exponents = (sq * -t).masked_fill(&not_upper, f64::NEG_INFINITY);
    // log mean exp, stably
    exponents.logsumexp([0i64, 1].as_slice(), false) - ((n * (n - 1) / 2) as f64).ln()
}
