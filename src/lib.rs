//! selfsup: self-supervised visual representation learning (BYOL and the methods it is compared
//! with) on libtorch through `tch`.
//!
//! One folder per concern: [`data`] (datasets and the loader), [`augment`] (per-view augmentation
//! pipelines), [`models`] (encoders and heads), [`losses`] (pure loss functions), [`methods`]
//! (what each method owns), [`optim`] (optimisers, schedules, EMA), [`train`] (the loop,
//! checkpoints, logs), [`eval`] (kNN, linear probe), [`config`] (typed TOML configuration) and
//! [`backend`] (devices and the C++ shim for what tch lacks).
pub mod analysis;
pub mod augment;
pub mod backend;
pub mod config;
pub mod data;
pub mod error;
pub mod eval;
pub mod losses;
pub mod methods;
pub mod models;
pub mod optim;
pub mod study;
pub mod train;

pub use error::{Error, Result};
