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
