//! Representation metrics (collapse, alignment, uniformity) as pure functions.
pub mod collapse;
pub mod representation;

pub use collapse::{batch_mean_cos, effective_rank, z_std};
pub use representation::RepresentationMetrics;
