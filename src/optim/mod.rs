//! Optimisers (LARS, SGD with momentum, AdamW), learning-rate and EMA schedules, EMA updates.
pub mod ema;
pub mod optimizer;
pub mod schedule;

pub use optimizer::{LearningRate, LrRule, OptimConfig, Optimizer};
