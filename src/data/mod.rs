//! Datasets and the batch loader.
//!
//! `--data SPEC` names a dataset: `folder:PATH`, `cifar10:PATH`, `cifar100:PATH`, `idx:PATH`,
//! `fashion-mnist`, `synthetic[:N]`, each with an optional `@train`/`@test` split and `?key=value`
//! options (see [`spec`]).
pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod idx;
pub mod image;
pub mod loader;
pub mod spec;
pub mod stats;
pub mod synthetic;

pub use dataset::Dataset;
pub use image::Image;
pub use loader::{AugmentOn, Batch, Loader, LoaderConfig};
pub use spec::{DataSpec, Split};

/// Opens the dataset a spec names.
pub fn open(spec: &str) -> anyhow::Result<Dataset> {
    let spec = DataSpec::parse(spec)?;
    spec.open()
}
