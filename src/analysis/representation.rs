//! The five numbers that describe a representation on a batch of positive pairs: alignment and
//! uniformity (Wang & Isola 2020), z-std, effective rank and batch-mean cosine (collapse).
use crate::analysis::collapse::{batch_mean_cos, effective_rank, z_std};
use crate::losses::{alignment, uniformity};
use serde::{Deserialize, Serialize};
use tch::Tensor;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepresentationMetrics {
    /// E‖z̄₁ − z̄₂‖² over positive pairs (0 = perfectly aligned, 4 = opposite).
    pub alignment: f64,
    /// log E exp(−2‖z̄_i − z̄_j‖²) over distinct pairs of the first view (0 = collapsed; lower = more uniform).
    pub uniformity: f64,
    pub z_std: f64,
    pub effective_rank: f64,
    pub batch_mean_cos: f64,
}

impl RepresentationMetrics {
    /// Metrics of two views' embeddings `[N, D]` (row i of each is a positive pair).
    pub fn of_pair(z1: &Tensor, z2: &Tensor) -> RepresentationMetrics {
        tch::no_grad(|| RepresentationMetrics {
            alignment: alignment(z1, z2, 2.0).double_value(&[]),
            uniformity: uniformity(z1, 2.0).double_value(&[]),
            z_std: z_std(z1),
            effective_rank: effective_rank(z1),
            batch_mean_cos: batch_mean_cos(z1),
        })
    }

    /// As JSON fields for a metrics line.
    pub fn fields(&self) -> [(&'static str, f64); 5] {
        [("alignment", self.alignment), ("uniformity", self.uniformity), ("z_std", self.z_std), ("effective_rank", self.effective_rank), ("batch_mean_cos", self.batch_mean_cos)]
    }
}
