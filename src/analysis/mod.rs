//! Representation metrics (collapse, alignment, uniformity) as pure functions.
pub mod collapse;

pub use collapse::z_std;
