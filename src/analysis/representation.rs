//! The five numbers that describe a representation on a batch of positive pairs: alignment and
//! uniformity (Wang & Isola 2020), z-std, effective rank and batch-mean cosine (collapse); and
//! those of a predictor's outputs.
use crate::analysis::collapse::{batch_mean_cos, effective_rank, z_std};
use crate::losses::{alignment, negative_cosine, uniformity};
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

/// The predictor's outputs on one view (SCIENCE.md hypothesis 4: the predictor is a buffer that
/// lets online features differ from the target's, and must itself stay diverse, a "codebook", not
/// collapse). Logged for the methods with a predictor (BYOL, SimSiam).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PredictorMetrics {
    /// z-std of the L2-normalised predictions (0 = every prediction the same direction).
    pub z_std: f64,
    /// Effective rank of the predictions.
    pub effective_rank: f64,
    /// Mean over the batch of cos(p_i, z_i), each prediction against the projection it was computed
    /// from: 1 when the predictor keeps every direction (the identity, or no predictor); lower the
    /// further it moves the online outputs away from the projector's.
    pub projection_cos: f64,
}

impl PredictorMetrics {
    /// Metrics of predictions `p: [N, D]` computed from projections `z: [N, D]` (row i from row i).
    pub fn of(p: &Tensor, z: &Tensor) -> PredictorMetrics {
        tch::no_grad(|| PredictorMetrics {
            z_std: z_std(p),
            effective_rank: effective_rank(p),
            // SimSiam's D(p, z) is the negated mean cosine of the rows
            projection_cos: -negative_cosine(p, z).double_value(&[]),
        })
    }

    /// As JSON fields for a metrics line.
    pub fn fields(&self) -> [(&'static str, f64); 3] {
        [("pred_z_std", self.z_std), ("pred_effective_rank", self.effective_rank), ("pred_projection_cos", self.projection_cos)]
    }
}
