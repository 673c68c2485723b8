//! Runs that differ only in their seed, summarised together: a study with `seeds = [1, 2, 3]` runs
//! each configuration once per seed (names ending in `-seedN`, see [`crate::study::plan`]); the
//! report then gives, per configuration, the mean and the sample standard deviation over its seeds,
//! so a difference between configurations can be read against the spread within one.
use crate::study::report::{RunRow, METRICS};

/// Mean and sample standard deviation (n − 1 in the denominator; 0 for a single value) of the
/// values present, and how many there were.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Option<Spread> {
        let v: Vec<f64> = values.into_iter().flatten().collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 { (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Some(Spread { mean, sd, n })
    }

    /// `mean ± sd`, each with `digits` decimals; a single value (a metric only some of the seeds'
    /// runs recorded) as `value (1 run)`, not as a spread of 0.
    pub fn show(s: Option<Spread>, digits: usize) -> String {
        match s {
            Some(s) if s.n == 1 => format!("{:.digits$} (1 run)", s.mean),
            Some(s) => format!("{:.digits$} ± {:.digits$}", s.mean, s.sd),
            None => "–".into(),
        }
    }
}

/// One configuration's runs over its seeds.
#[derive(Clone, Debug)]
pub struct SeedGroup {
    /// The run name without its `-seedN` suffix.
    pub name: String,
    /// Finished runs in the group.
    pub runs: usize,
    /// The spread of each of the report's [`METRICS`], in its order.
    pub spreads: Vec<Option<Spread>>,
    /// How many of the runs collapsed.
    pub collapsed: usize,
}

impl SeedGroup {
    /// The spread of the metric with CSV key `key`.
    pub fn spread(&self, key: &str) -> Option<Spread> {
        METRICS.iter().position(|m| m.key == key).and_then(|i| self.spreads[i])
    }
}

/// The name a seed's run shares with the other seeds of its configuration: `name` without a
/// trailing `-seed<digits>`.
pub fn configuration_name(name: &str) -> &str {
    match name.rfind("-seed") {
        Some(i) if i + 5 < name.len() && name[i + 5..].bytes().all(|b| b.is_ascii_digit()) => &name[..i],
        _ => name,
    }
}

/// The items whose run name (`name`) is in `only` — a run's name, or its configuration's (the name
/// without `-seedN`) — in their order; all of them when `only` is empty. A name that matches no
/// item is an error that lists the configurations (`what` says whose: `--only`).
pub fn select_by_name<'a, T>(items: &'a [T], name: impl Fn(&T) -> &str, only: &[String], what: &str) -> Result<Vec<&'a T>, String> {
    let asked = |t: &T, o: &String| name(t) == o || configuration_name(name(t)) == o;
    for o in only {
        if !items.iter().any(|t| asked(t, o)) {
            let known = configurations(items.iter().map(&name));
            return Err(format!("{what} {o}: no run or configuration of this study has that name (configurations: {})", known.join(", ")));
        }
    }
    Ok(items.iter().filter(|t| only.is_empty() || only.iter().any(|o| asked(t, o))).collect())
}

/// A list of seeds as a person writes it: comma-separated seeds and inclusive ranges, `1,2,5-9`
/// (the command line's `--seeds`). Repeats are dropped, the first place kept.
pub fn parse_seed_list(list: &str) -> Result<Vec<u64>, String> {
    const MOST_IN_A_RANGE: u64 = 1000;
    let mut seeds = Vec::new();
    for item in list.split(',').map(str::trim) {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("`{item}` in the seeds `{list}`: expected a seed (3) or a range (1-10)"));
        let (from, to) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if to < from {
            return Err(format!("`{item}` in the seeds `{list}`: the range ends before it starts"));
        }
        if to - from >= MOST_IN_A_RANGE {
            return Err(format!("`{item}` in the seeds `{list}`: more than {MOST_IN_A_RANGE} seeds in one range"));
        }
        for s in from..=to {
            if !seeds.contains(&s) {
                seeds.push(s);
            }
        }
    }
    Ok(seeds)
}

/// A list of seeds written back as [`parse_seed_list`] reads it, three or more consecutive seeds
/// as a range: `[1, 2, 5, 6, 7, 8, 9]` → `1,2,5-9`.
pub fn format_seed_list(seeds: &[u64]) -> String {
    let mut items: Vec<String> = Vec::new();
    let mut i = 0;
    while i < seeds.len() {
        let mut j = i;
        while j + 1 < seeds.len() && seeds[j + 1] == seeds[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            items.push(format!("{}-{}", seeds[i], seeds[j]));
        } else {
            items.extend(seeds[i..=j].iter().map(u64::to_string));
        }
        i = j + 1;
    }
    items.join(",")
}

/// The configurations of the runs named `names`, without repeats, in first-seen order.
pub fn configurations<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut configurations = Vec::new();
    for c in names.into_iter().map(configuration_name) {
        if !configurations.contains(&c) {
            configurations.push(c);
        }
    }
    configurations
}

/// Whether `baseline` is the configuration of one of the runs named `names`; if not, the error
/// message, listing the configurations.
pub fn check_baseline<'a>(baseline: &str, names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    is_configuration(baseline, &configurations(names)).map_err(|e| format!("baseline {e}"))
}

/// Whether both sides of a `compare` pair (`[configuration, reference]`) are configurations of
/// the runs named `names`, and two different ones; if not, the error message.
pub fn check_pair<'a>(pair: &[String; 2], names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
    let shown = format!("compare [\"{}\", \"{}\"]", pair[0], pair[1]);
    if pair[0] == pair[1] {
        return Err(format!("{shown}: a configuration compared with itself"));
    }
    let configurations = configurations(names);
    pair.iter().try_for_each(|c| is_configuration(c, &configurations)).map_err(|e| format!("{shown}: {e}"))
}

/// Whether `name` is one of `configurations`; if not, the error's text, listing them.
fn is_configuration(name: &str, configurations: &[&str]) -> Result<(), String> {
    match configurations.contains(&name) {
        true => Ok(()),
        false => Err(format!("`{name}` is not a configuration of this study (configurations: {})", configurations.join(", "))),
    }
}

/// The seed in a run's `-seed<digits>` suffix, if it has one.
pub fn seed_of(name: &str) -> Option<u64> {
    let config = configuration_name(name);
    (config.len() < name.len()).then(|| name[config.len() + 5..].parse().ok()).flatten()
}

/// The finished runs of each configuration, configurations in first-seen order.
pub fn finished_by_configuration(rows: &[RunRow]) -> Vec<(&str, Vec<&RunRow>)> {
    let mut groups: Vec<(&str, Vec<&RunRow>)> = Vec::new();
    for r in rows.iter().filter(|r| r.finished) {
        let c = configuration_name(&r.name);
        match groups.iter_mut().find(|g| g.0 == c) {
            Some(g) => g.1.push(r),
            None => groups.push((c, vec![r])),
        }
    }
    groups
}

/// Finished runs grouped by configuration, in first-seen order; `None` when no configuration has
/// more than one finished run (a single-seed study: the per-run table says everything).
pub fn group_by_configuration(rows: &[RunRow]) -> Option<Vec<SeedGroup>> {
    let groups: Vec<SeedGroup> = finished_by_configuration(rows)
        .into_iter()
        .map(|(name, runs)| SeedGroup {
            name: name.to_string(),
            runs: runs.len(),
            spreads: METRICS.iter().map(|m| Spread::of(runs.iter().map(|r| r.get(m.key)))).collect(),
            collapsed: runs.iter().filter(|r| r.collapsed() == Some(true)).count(),
        })
        .collect();
    groups.iter().any(|g| g.runs > 1).then_some(groups)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seed_lists_take_ranges_and_refuse_what_is_not_one() {
        use super::parse_seed_list;
        assert_eq!(parse_seed_list("3").unwrap(), [3]);
        assert_eq!(parse_seed_list("1,2,5-9").unwrap(), [1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(parse_seed_list("8-10,1, 9").unwrap(), [8, 9, 10, 1], "order kept, repeats dropped");
        assert_eq!(parse_seed_list("4-4").unwrap(), [4]);
        for (seeds, written) in [(vec![1, 2, 5, 6, 7, 8, 9], "1,2,5-9"), (vec![8, 9, 10, 11, 12, 13, 14], "8-14"), (vec![3], "3"), (vec![7, 1, 2, 3], "7,1-3"), (vec![], "")] {
            assert_eq!(super::format_seed_list(&seeds), written);
            if !seeds.is_empty() {
                assert_eq!(parse_seed_list(written).unwrap(), seeds, "{written} reads back");
            }
        }
        for (bad, needle) in [("9-5", "ends before it starts"), ("a", "expected a seed"), ("1,", "expected a seed"), ("1-", "expected a seed"), ("-3", "expected a seed"), ("1-5000", "more than 1000")] {
            let e = parse_seed_list(bad).unwrap_err();
            assert!(e.contains(needle) && e.contains(&format!("`{bad}`")), "{bad}: {e}");
        }
    }

    use super::*;

    #[test]
    fn seed_suffix_is_removed_only_when_it_is_a_number() {
        assert_eq!(configuration_name("default-seed1"), "default");
        assert_eq!(configuration_name("batch=64-seed12"), "batch=64");
        assert_eq!(configuration_name("no-seed"), "no-seed");
        assert_eq!(configuration_name("x-seed"), "x-seed");
        assert_eq!(configuration_name("x-seedy"), "x-seedy");
        assert_eq!(configuration_name("plain"), "plain");
        assert_eq!((seed_of("default-seed1"), seed_of("batch=64-seed12")), (Some(1), Some(12)));
        assert_eq!((seed_of("x-seedy"), seed_of("plain"), seed_of("x-seed")), (None, None, None));
    }

    #[test]
    fn spread_is_the_mean_and_sample_deviation() {
        // 0.2, 0.4: mean 0.3, sample variance ((0.1)² + (0.1)²) / 1 = 0.02
        let s = Spread::of([Some(0.2), None, Some(0.4)]).unwrap();
        assert!((s.mean - 0.3).abs() < 1e-12 && (s.sd - 0.02f64.sqrt()).abs() < 1e-12, "{s:?}");
        // 1, 2, 3, 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
        let s = Spread::of([1.0, 2.0, 3.0, 4.0].map(Some)).unwrap();
        assert!((s.mean - 2.5).abs() < 1e-12 && (s.sd - (5.0f64 / 3.0).sqrt()).abs() < 1e-12, "{s:?}");
        assert_eq!(Spread::of([Some(0.7)]).unwrap().sd, 0.0);
        assert!(Spread::of([None, None]).is_none());
        // shown as a spread only when there is one: a value one run of two recorded is not "± 0"
        assert_eq!(Spread::show(Spread::of([Some(36.0), None]), 0), "36 (1 run)");
        assert_eq!(Spread::show(Spread::of([Some(0.25), Some(0.35)]), 2), "0.30 ± 0.07");
        assert_eq!(Spread::show(None, 2), "–");
    }

    fn row(name: &str, knn: f64, z: f64, finished: bool) -> RunRow {
        RunRow { name: name.into(), finished, values: [("knn_top1", knn), ("z_std", z)].into(), dim: 100, ..Default::default() }
    }

    #[test]
    fn runs_group_by_configuration_and_unfinished_runs_are_left_out() {
        let rows = [
            row("a-seed1", 0.30, 0.08, true),
            row("b-seed1", 0.20, 0.001, true),
            row("a-seed2", 0.34, 0.09, true),
            row("b-seed2", 0.50, 0.002, true),
            row("a-seed3", 0.90, 0.09, false),
        ];
        let g = group_by_configuration(&rows).unwrap();
        assert_eq!(g.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(g[0].runs, 2);
        assert!((g[0].spread("knn_top1").unwrap().mean - 0.32).abs() < 1e-12);
        assert!((g[1].spread("z_std").unwrap().mean - 0.0015).abs() < 1e-12 && g[0].spread("linear_top1").is_none());
        // b's z-std 0.001 and 0.002 are under 0.1/√100 = 0.01: both collapsed; a's are not
        assert_eq!((g[0].collapsed, g[1].collapsed), (0, 2));
        // one run per configuration: no seed table
        assert!(group_by_configuration(&rows[..2]).is_none());
    }
}
