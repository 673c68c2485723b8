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
}

impl Machine {
    /// This process's machine, as it runs on `device`.
    pub fn this(device: Device) -> Machine {
        let cpu = cpu_model(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
        let cpu_capability = crate::backend::shim::cpu_capability().unwrap_or_else(|e| format!("unknown ({e})"));
        let device = match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        };
        Machine { cpu, cpu_capability, threads: tch::get_num_threads().max(0) as usize, device }
    }

    /// What decides the CPU kernels' rounding, in one line: "AMD EPYC (AVX512)". Runs whose keys
    /// differ were computed with different kernels.
    pub fn key(&self) -> String {
        format!("{} ({})", self.cpu, self.cpu_capability)
    }
}

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
    use super::cpu_model;

    #[test]
    fn the_first_processors_model_name() {
        let two = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(cpu_model(two), "AMD EPYC");
        assert_eq!(cpu_model("model name : Intel(R) Xeon(R) CPU @ 2.20GHz\n"), "Intel(R) Xeon(R) CPU @ 2.20GHz");
        assert_eq!(cpu_model("model name\t:\n"), "unknown");
        assert_eq!(cpu_model(""), "unknown");
    }
}
