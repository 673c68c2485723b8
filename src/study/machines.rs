//! Which machines a study's runs were computed on. libtorch's CPU kernels round differently on
//! different processors, so one config and seed gives another loss curve on another machine
//! (docs/reliability.md): runs of two machines are different draws, not repeats. A paired
//! comparison ([`crate::study::paired`]) pairs the runs of one seed; they should share a machine.
use crate::backend::machine::Machine;
use crate::study::report::RunRow;
use crate::study::seeds::seed_of;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a finished run without a recorded machine (made before runs recorded one) is listed.
pub const NOT_RECORDED: &str = "not recorded";

/// The report's paragraph on machines: one line naming the machine when every finished run
/// records the same one; when they differ, the runs made on each, and the seeds whose runs were
/// made on more than one (their paired differences then compare runs of different machines).
/// None when no finished run records a machine.
pub fn machines_paragraph(rows: &[RunRow]) -> Option<String> {
    let finished: Vec<&RunRow> = rows.iter().filter(|r| r.finished).collect();
    if !finished.iter().any(|r| r.machine.is_some()) {
        return None;
    }
    let label = |r: &RunRow| r.machine.clone().unwrap_or_else(|| NOT_RECORDED.to_string());
    let mut by_machine: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for r in &finished {
        by_machine.entry(label(r)).or_default().push(&r.name);
    }
    if by_machine.len() == 1 {
        let machine = by_machine.keys().next()?;
        let gpu = if Machine::key_names_gpu(machine) { ", and the GPU" } else { "" };
        return Some(format!("Computed on: {machine}: the processor and its CPU kernels{gpu}.\n\n"));
    }
    let gpu = if by_machine.keys().any(|k| Machine::key_names_gpu(k)) { "; the GPU of a GPU run" } else { "" };
    let mut md = format!("Computed on more than one machine (processor and CPU kernels{gpu}). The same config and seed repeat bit for bit only on one kind of processor, so runs of two are different draws, not repeats:\n\n");
    for (machine, names) in &by_machine {
        let _ = writeln!(md, "- {machine}: {} run(s) ({})", names.len(), names.join(", "));
    }
    // keyed as the paired comparisons pair runs: by the `-seedN` suffix, runs without one together
    let mut by_seed: BTreeMap<Option<u64>, Vec<String>> = BTreeMap::new();
    for r in &finished {
        let machines = by_seed.entry(seed_of(&r.name)).or_default();
        if !machines.contains(&label(r)) {
            machines.push(label(r));
        }
    }
    let seed_name = |seed: &Option<u64>| seed.map(|s| format!("seed {s}")).unwrap_or_else(|| "the runs without a -seedN suffix".into());
    let mixed: Vec<String> = by_seed.iter().filter(|(_, m)| m.len() > 1).map(|(seed, m)| format!("{} ({})", seed_name(seed), m.join("; "))).collect();
    if mixed.is_empty() {
        md.push_str("\nNo seed's runs are recorded on more than one machine: each paired difference compares runs of one machine (as far as recorded).\n\n");
    } else {
        let _ = writeln!(md, "\nRuns of one seed on more than one machine — their paired differences compare runs of different machines: {}.\n", mixed.join(", "));
    }
    Some(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, machine: Option<&str>, finished: bool) -> RunRow {
        RunRow { name: name.into(), finished, machine: machine.map(String::from), ..Default::default() }
    }

    #[test]
    fn one_machine_is_named_and_mixed_seeds_are_flagged() {
        let a = Some("AMD EPYC (AVX512)");
        let x = Some("Intel Xeon (AVX2)");
        // no run records a machine: nothing to say
        assert_eq!(machines_paragraph(&[run("a-seed1", None, true)]), None);
        // one machine (an unfinished run does not count)
        let one = machines_paragraph(&[run("a-seed1", a, true), run("b-seed1", a, true), run("b-seed2", x, false)]).unwrap();
        assert_eq!(one, "Computed on: AMD EPYC (AVX512): the processor and its CPU kernels.\n\n");
        // seeds 1-2 on one machine, seed 3 on another: each seed's runs share one
        let rows = [run("a-seed1", x, true), run("b-seed1", x, true), run("a-seed2", x, true), run("b-seed2", x, true), run("a-seed3", a, true), run("b-seed3", a, true)];
        let md = machines_paragraph(&rows).unwrap();
        assert!(md.contains("- AMD EPYC (AVX512): 2 run(s) (a-seed3, b-seed3)") && md.contains("- Intel Xeon (AVX2): 4 run(s) (a-seed1, b-seed1, a-seed2, b-seed2)"), "{md}");
        assert!(md.contains("No seed's runs are recorded on more than one machine") && !md.contains("seed 3 ("), "{md}");
        // seed 2's runs split across machines, one of them not recorded
        let rows = [run("a-seed1", a, true), run("b-seed1", a, true), run("a-seed2", None, true), run("b-seed2", a, true)];
        let md = machines_paragraph(&rows).unwrap();
        assert!(md.contains("- not recorded: 1 run(s) (a-seed2)"), "{md}");
        assert!(md.contains("different machines: seed 2 (not recorded; AMD EPYC (AVX512)).") && !md.contains("seed 1 ("), "{md}");
        // a one-seed study: its runs are paired with each other, so two machines among them count
        let md = machines_paragraph(&[run("default", a, true), run("other", x, true)]).unwrap();
        assert!(md.contains("different machines: the runs without a -seedN suffix (AMD EPYC (AVX512); Intel Xeon (AVX2))."), "{md}");
        assert!(md.starts_with("Computed on more than one machine (processor and CPU kernels). "), "{md}");
        // GPU runs: the GPU is part of what is named
        let g = Machine { cpu: "AMD EPYC".into(), cpu_capability: "AVX512".into(), threads: 16, device: "cuda:0".into(), gpu: Some("NVIDIA H200, sm_90, 139 GiB".into()) }.key();
        let one = machines_paragraph(&[run("a", Some(&g), true)]).unwrap();
        assert_eq!(one, "Computed on: AMD EPYC (AVX512), GPU NVIDIA H200, sm_90, 139 GiB: the processor and its CPU kernels, and the GPU.\n\n");
        let md = machines_paragraph(&[run("a-seed1", Some(&g), true), run("a-seed2", a, true)]).unwrap();
        assert!(md.starts_with("Computed on more than one machine (processor and CPU kernels; the GPU of a GPU run). "), "{md}");
    }
}
