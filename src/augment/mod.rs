//! Augmentation: small, separately tested ops ([`ops`]) composed into one pipeline per view
//! ([`pipeline`]) from recipes that are plain data ([`recipe`]).
pub mod batched;
pub mod ops;
pub mod pipeline;
pub mod recipe;
pub mod rng;

pub use pipeline::{MultiView, ViewPipeline};
pub use recipe::{Recipe, RecipeParams, ViewConfig};
