//! Device selection, done once at the edge (CLI/config).
use crate::error::Error;
use tch::Device;

/// Parses `cpu`, `cuda` or `cuda:N`; asking for CUDA where none is available is an error.
pub fn parse_device(s: &str) -> Result<Device, Error> {
    let d = match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(i) => Device::Cuda(i),
            None => return Err(Error::config("train.device", s, "expected cpu, cuda or cuda:N")),
        },
    };
    if let Device::Cuda(i) = d {
        let n = tch::Cuda::device_count() as usize;
        if i >= n {
            return Err(Error::config("train.device", s, format!("CUDA device {i} not available ({n} visible)")));
        }
    }
    Ok(d)
}
