//! Representation metrics (collapse, alignment, uniformity, the covariance spectrum) as pure
//! functions, `analyze`, and tile sheets of images.
pub mod analyze;
pub mod collapse;
pub mod representation;
pub mod spectrum;
pub mod tiles;

pub use analyze::{analyze, Analysis, AnalyzeOptions, Space};
pub use collapse::{batch_mean_cos, effective_rank, z_std};
pub use representation::{PredictorMetrics, RepresentationMetrics};
pub use spectrum::{covariance_spectrum, dims_for_variance};
