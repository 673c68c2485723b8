//! SimSiam's loss. Chen & He, "Exploring Simple Siamese Representation Learning", 2020,
//! arXiv:2011.10566, Eq. 1: `D(p, z) = −(p/‖p‖₂)·(z/‖z‖₂)`, averaged over the batch; the method
//! uses `L = D(p₁, stopgrad(z₂))/2 + D(p₂, stopgrad(z₁))/2` (Eq. 3–4, stop-gradient at the call site).
use super::l2_normalize;
use tch::Tensor;

/// Mean negative cosine similarity of the rows of `p` and `z` (`[N, D]`).
pub fn negative_cosine(p: &Tensor, z: &Tensor) -> Tensor {
    let kd = super::compute_kind(p.kind());
    assert_eq!(p.size(), z.size(), "SimSiam loss: prediction and target shapes differ");
    let p = l2_normalize(&p.to_kind(kd));
    let z = l2_normalize(&z.to_kind(kd));
    -(p * z).sum_dim_intlist([-1i64].as_slice(), false, kd).mean(kd)
}
