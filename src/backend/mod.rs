//! Devices and the C++ shim for what tch lacks (bf16 autocast, TF32, multi-tensor updates,
//! seeding every device, GPU memory statistics, c10d process groups).
pub mod device;
pub mod dist;
pub mod machine;
pub mod shim;

pub use device::parse_device;
