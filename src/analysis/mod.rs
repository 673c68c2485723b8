//! Representation metrics (collapse, alignment, uniformity) as pure functions, and `analyze`.
pub mod analyze;
pub mod collapse;
pub mod representation;

pub use analyze::{analyze, AnalyzeOptions, Space};
pub use collapse::{batch_mean_cos, effective_rank, z_std};
pub use representation::{PredictorMetrics, RepresentationMetrics};
