//! What a run was computed on, recorded in its `summary.json`. On the CPU libtorch picks its
//! kernels by the processor's instruction set (ATen's CPU capability: AVX512, AVX2 or DEFAULT),
//! the kernels round differently, and training amplifies the difference: the same config and seed
//! repeat bit for bit on one machine and not across two (docs/reliability.md). A study report
//! reads this to say when one seed's runs were made on different processors, which leaves that
//! seed's paired differences comparing runs of two machines.
use serde::{Deserialize, Serialize};
use tch::Device;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// The processor's model name (`/proc/cpuinfo`; "unknown" where it cannot be read).
    pub cpu: String,
    /// The CPU kernels ATen dispatches to ([`crate::backend::shim::cpu_capability`]).
    pub cpu_capability: String,
    /// Torch's intra-op threads.
    pub threads: usize,
    /// Where the step ran: "cpu" or "cuda:<index>".
    pub device: String,
    /// On a GPU, the device in words ([`crate::backend::shim::cuda_device_name`]: "NVIDIA H200,
    /// sm_90, 139 GiB"); absent on the CPU and in summaries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}

impl Machine {
    /// This process's machine, as it runs on `device`.
    pub fn this(device: Device) -> Machine {
        let cpu = cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        let cpu_capability = crate::backend::shim::cpu_capability().unwrap_or_else(|e| format!("unknown ({e})"));
        let (device, gpu) = match device {
            Device::Cuda(i) => (format!("cuda:{i}"), Some(crate::backend::shim::cuda_device_name(i).unwrap_or_else(|e| format!("unknown ({e})")))),
            _ => ("cpu".into(), None),
        };
        Machine { cpu, cpu_capability, threads: tch::get_num_threads().max(0) as usize, device, gpu }
    }

    /// What decides the kernels' rounding, in one line: "AMD EPYC (AVX512)" on the CPU, with the
    /// GPU after it for a GPU run ("AMD EPYC (AVX512), GPU NVIDIA H200, sm_90, 139 GiB"). Runs
    /// whose keys differ were computed with different kernels.
    pub fn key(&self) -> String {
        match &self.gpu {
            Some(gpu) => format!("{} ({}){GPU_IN_KEY}{gpu}", self.cpu, self.cpu_capability),
            None => format!("{} ({})", self.cpu, self.cpu_capability),
        }
    }

    /// Whether a [`Machine::key`] names a GPU.
    pub fn key_names_gpu(key: &str) -> bool {
        key.contains(GPU_IN_KEY)
    }
}

/// What separates the processor from the GPU in [`Machine::key`].
const GPU_IN_KEY: &str = ", GPU ";

/// The first processor's model name in the text of `/proc/cpuinfo` ("unknown" when absent).
pub fn cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == "model name")
        .map(|(_, v)| v.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::{cpu_model, Machine};

    #[test]
    fn a_gpu_run_is_keyed_by_its_gpu_too_and_old_summaries_still_read() {
        let cpu = Machine { cpu: "AMD EPYC".into(), cpu_capability: "AVX512".into(), threads: 2, device: "cpu".into(), gpu: None };
        assert_eq!(cpu.key(), "AMD EPYC (AVX512)");
        let json = serde_json::to_value(&cpu).unwrap();
        assert!(json.get("gpu").is_none(), "{json}");
        let gpu = Machine { device: "cuda:0".into(), gpu: Some("NVIDIA H200, sm_90, 139 GiB".into()), ..cpu.clone() };
        assert_eq!(gpu.key(), "AMD EPYC (AVX512), GPU NVIDIA H200, sm_90, 139 GiB");
        assert!(Machine::key_names_gpu(&gpu.key()) && !Machine::key_names_gpu(&cpu.key()));
        let xeon = Machine { cpu: "Intel(R) Xeon(R) CPU @ 2.20GHz".into(), cpu_capability: "AVX512".into(), ..cpu.clone() };
        assert!(!Machine::key_names_gpu(&xeon.key()));
        // a summary written before the GPU was recorded
        let old: Machine = serde_json::from_str(r#"{"cpu":"AMD EPYC","cpu_capability":"AVX512","threads":2,"device":"cpu"}"#).unwrap();
        assert_eq!(old, cpu);
    }

    #[test]
    fn naming_a_cuda_device_is_an_error_where_there_is_none() {
        if tch::Cuda::device_count() == 0 {
            let e = crate::backend::shim::cuda_device_name(0).unwrap_err().to_string();
            assert!(e.contains("CUDA"), "{e}");
        } else {
            let name = crate::backend::shim::cuda_device_name(0).unwrap();
            assert!(name.contains(", sm_") && name.ends_with(" GiB"), "{name}");
            assert!(crate::backend::shim::cuda_device_name(tch::Cuda::device_count() as usize).is_err());
        }
    }

    #[test]
    fn the_first_processors_model_name() {
        let two = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(two), "AMD EPYC");
        assert_eq!(cpu_model("model name : Intel(R) Xeon(R) CPU @ 2.20GHz\n"), "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert_eq!(cpu_model("model name\t:\n"), "unknown");
        assert_eq!(cpu_model(""), "unknown");
    }
}
