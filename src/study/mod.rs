//! Studies: one base config, a list and/or grid of overrides and seeds, run one after another
//! (or several at once: `--jobs`);
//! a table (CSV + Markdown) and PNG plots built from the finished runs' logs.
pub mod curves;
pub mod jobs;
pub mod machines;
pub mod paired;
pub mod plots;
pub mod report;
pub mod runner;
pub mod seeds;
pub mod spec;

pub use report::{write_report, write_report_of, Comparisons, Selection};
pub use runner::run_study;
pub use spec::{plan, PlannedRun, StudySpec};
