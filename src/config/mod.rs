//! Typed, nested, self-saving configuration (TOML). Defaults live on the fields; `--set a.b=v`
//! overrides any key; unknown keys are errors naming the key (with the closest valid key);
//! validation names the field, its value and the allowed range. The resolved config is written
//! next to every run and checkpoint, so any run can be repeated.
pub mod choice;
pub mod docs;
pub mod overrides;
pub mod schema;

pub use choice::{check_one_of, choose, names_sentence};
pub use overrides::{apply_set, load};
pub use schema::{Config, DataConfig, EvalConfig, TrainConfig};
