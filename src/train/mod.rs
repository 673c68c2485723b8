//! The training loop, checkpoints, metrics logs and signal handling.
pub mod checkpoint;
pub mod graph;
pub mod lock;
pub mod metrics;
pub mod nonfinite;
pub mod signals;
pub mod step;
pub mod trainer;
pub mod update_norms;

pub use trainer::{train, TrainOptions, TrainSummary};
