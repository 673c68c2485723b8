//! Evaluation of frozen encoders on L2-normalised features: weighted kNN and a linear probe; and
//! the online linear probe trained alongside a method.
pub mod features;
pub mod knn;
pub mod linear;
pub mod neighbours;
pub mod online_probe;
pub mod probe_selection;

pub use features::{extract_features, extract_view_features, train_test_features};
pub use knn::{knn_accuracy, KnnResult};
pub use linear::{linear_probe, linear_probe_epochs, train_linear_probe, LinearProbeConfig, ProbeOptimizer, ProbeSchedule, TrainedProbe};
pub use online_probe::OnlineProbe;
