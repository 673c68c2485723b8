//! Configurations compared seed by seed. Two runs of one seed share their random initialisation
//! and their data order, so the difference between them leaves out much of the spread that the
//! two configurations' seeds share: "ahead on both seeds by 4 points" can mean something when the
//! seeds themselves differ by 5. Each configuration is compared with the study's `baseline` run of
//! the same seed (its accuracy metrics) and with its own random-init encoder (kNN, and the linear
//! probe when the random init was probed too), and the mean
//! difference gets a 95% confidence interval from Student's t with n − 1 degrees of freedom
//! (the paired t interval, mean Δ ± t₀.₉₇₅,ₙ₋₁ · s_Δ/√n; Student 1908), and the number of seeds that
//! interval would need to exclude 0 with probability 0.8 ([`seeds_for_power`]).
use crate::study::report::RunRow;
use crate::study::seeds::{finished_by_configuration, seed_of, Spread};

/// The metrics compared with the baseline's run of the same seed (those the runs have).
pub const PAIRED_METRICS: [&str; 3] = ["knn_top1", "linear_top1", "online_linear_top1"];

/// What a configuration is compared with when it is compared with its own random init.
pub const RANDOM_INIT: &str = "random init";

/// One configuration against one reference on one metric, over the seeds both have.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedDifference {
    pub configuration: String,
    /// The baseline configuration's name, or [`RANDOM_INIT`] (the same run's random-init encoder).
    pub reference: String,
    /// The metric's key (`knn_top1`, …).
    pub metric: &'static str,
    /// (seed, configuration − reference) per seed, in the configuration's run order; the seed is
    /// `None` for a run without a `-seedN` suffix.
    pub per_seed: Vec<(Option<u64>, f64)>,
    /// Mean and sample standard deviation of the differences.
    pub spread: Spread,
    /// 95% confidence interval of the mean difference (none for a single seed).
    pub ci95: Option<(f64, f64)>,
    /// Seeds with a positive difference.
    pub ahead: usize,
    /// Seeds the comparison would need for its 95% interval to exclude 0 with probability 0.8,
    /// were the measured mean and spread the true ones ([`seeds_for_power`]).
    pub seeds_for_80pct_power: SeedsNeeded,
}

/// The power a study is planned for: the chance that the interval excludes 0.
pub const PLANNED_POWER: f64 = 0.8;

/// The most seeds [`seeds_for_power`] counts to.
pub const MAX_PLANNED_SEEDS: usize = 200;

/// How many seeds a paired comparison needs ([`seeds_for_power`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SeedsNeeded {
    /// One seed, or differences without spread: nothing to plan from.
    Unknown,
    Seeds(usize),
    /// More than [`MAX_PLANNED_SEEDS`].
    Over,
}

impl PairedDifference {
    fn of(configuration: &str, reference: &str, metric: &'static str, per_seed: Vec<(Option<u64>, f64)>) -> Option<Self> {
        let spread = Spread::of(per_seed.iter().map(|p| Some(p.1)))?;
        let ci95 = (spread.n > 1).then(|| {
            let half = student_t_quantile(0.975, (spread.n - 1) as f64) * spread.sd / (spread.n as f64).sqrt();
            (spread.mean - half, spread.mean + half)
        });
        let ahead = per_seed.iter().filter(|p| p.1 > 0.0).count();
        // one seed has sd 0, which seeds_for_power already answers with Unknown
        let seeds_for_80pct_power = seeds_for_power(spread.mean, spread.sd, PLANNED_POWER);
        Some(PairedDifference { configuration: configuration.to_string(), reference: reference.to_string(), metric, per_seed, spread, ci95, ahead, seeds_for_80pct_power })
    }
}

/// Every configuration's finished runs against their random-init encoders (kNN, and the linear
/// probe where the study probed the random init too), and, with a
/// `baseline` configuration, every other configuration against the baseline's run of the same
/// seed on each of [`PAIRED_METRICS`]; a seed only one side finished is left out. In the
/// configurations' order, the random-init comparison first. Then each of `pairs`
/// (`[configuration, reference]`, the study's `compare`) the same way, in their order, unless the
/// baseline comparison already holds it; a pair a side of which has no finished run gives nothing.
pub fn paired_differences(rows: &[RunRow], baseline: Option<&str>, pairs: &[[String; 2]]) -> Vec<PairedDifference> {
    let groups = finished_by_configuration(rows);
    let group = |name: &str| groups.iter().find(|g| g.0 == name);
    let base = baseline.and_then(group);
    let mut out = Vec::new();
    for (name, runs) in &groups {
        for (metric, random) in [("knn_top1", "knn_random_top1"), ("linear_top1", "linear_random_top1")] {
            let gain: Vec<(Option<u64>, f64)> = runs.iter().filter_map(|r| Some((seed_of(&r.name), r.get(metric)? - r.get(random)?))).collect();
            out.extend(PairedDifference::of(name, RANDOM_INIT, metric, gain));
        }
        if let Some((base_name, base)) = base.filter(|b| b.0 != *name) {
            out.extend(against_reference(name, runs, base_name, base));
        }
    }
    for [name, reference] in pairs {
        if baseline == Some(reference.as_str()) || name == reference {
            continue;
        }
        if let (Some((name, runs)), Some((reference, base))) = (group(name), group(reference)) {
            out.extend(against_reference(name, runs, reference, base));
        }
    }
    out
}

/// `runs` (configuration `name`) against `reference`'s run of the same seed, on each of
/// [`PAIRED_METRICS`] the runs have.
fn against_reference(name: &str, runs: &[&RunRow], reference: &str, base: &[&RunRow]) -> Vec<PairedDifference> {
    PAIRED_METRICS
        .iter()
        .filter_map(|&metric| {
            let diffs = runs
                .iter()
                .filter_map(|r| {
                    let seed = seed_of(&r.name);
                    let b = base.iter().find(|b| seed_of(&b.name) == seed)?;
                    Some((seed, r.get(metric)? - b.get(metric)?))
                })
                .collect();
            PairedDifference::of(name, reference, metric, diffs)
        })
        .collect()
}

/// The seeds a paired comparison needs for its two-sided 95% t interval to exclude 0 with
/// probability `power`, if the mean difference and its standard deviation were `mean` and `sd`:
/// the smallest n ≥ 2 with n ≥ ((t₀.₉₇₅,ₙ₋₁ + t_power,ₙ₋₁) · sd/|mean|)². That is the textbook
/// sample-size rule of a one-sample (here: paired) t test, n = ((z₀.₉₇₅ + z_power) · sd/|mean|)²,
/// with Student's quantiles in place of the normal ones, solved for n; it gives the exact
/// noncentral-t sample sizes (effect d = |mean|/sd of 0.5, 0.8, 1 at power 0.8: 34, 15, 10 seeds).
/// A planning figure: `sd` from two or three seeds is itself rough.
pub fn seeds_for_power(mean: f64, sd: f64, power: f64) -> SeedsNeeded {
    if !(sd > 0.0) || !mean.is_finite() || !sd.is_finite() {
        return SeedsNeeded::Unknown;
    }
    let ratio = sd / mean.abs();
    // n − ((t₁ + t₂)·ratio)² grows with n (the quantiles shrink), so bisect on n
    let enough = |n: usize| {
        let df = (n - 1) as f64;
        let t = student_t_quantile(0.975, df) + student_t_quantile(power, df);
        n as f64 >= (t * ratio).powi(2)
    };
    if !enough(MAX_PLANNED_SEEDS) {
        return SeedsNeeded::Over;
    }
    let (mut lo, mut hi) = (1, MAX_PLANNED_SEEDS); // enough(hi); lo is not a candidate (n ≥ 2)
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if enough(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    SeedsNeeded::Seeds(hi)
}

/// The `p`-quantile of Student's t distribution with `df` ≥ 1 (whole) degrees of freedom, by
/// bisection on its distribution function ([`student_t_cdf`]).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while student_t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for Student's t with `df` ≥ 1 whole degrees of freedom, from the finite sums of
/// Abramowitz & Stegun 26.7.3 (odd df) and 26.7.4 (even df) for A(t|ν) = P(|T| ≤ |t|), with
/// θ = atan(t/√ν):
/// - ν odd: A = (2/π)·(θ + sin θ cos θ · (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + … + (2·4…(ν−3))/(1·3…(ν−2)) cos^(ν−3)θ)) (only θ for ν = 1);
/// - ν even: A = sin θ · (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + … + (1·3…(ν−3))/(2·4…(ν−2)) cos^(ν−2)θ).
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let nu = df.round().max(1.0) as u64;
    let theta = (t.abs() / (nu as f64).sqrt()).atan();
    let (s, c2) = (theta.sin(), theta.cos().powi(2));
    let a = if nu % 2 == 1 {
        // 1 + Σ_{k=1}^{(ν−3)/2} Π_{j=1}^{k} (2j)/(2j+1) · cos^{2k}θ
        let (mut sum, mut term) = (1.0, 1.0);
        for k in 1..=(nu.saturating_sub(3) / 2) {
            term *= (2 * k) as f64 / (2 * k + 1) as f64 * c2;
            sum += term;
        }
        let inner = if nu == 1 { 0.0 } else { s * theta.cos() * sum };
        2.0 / std::f64::consts::PI * (theta + inner)
    } else {
        // 1 + Σ_{k=1}^{(ν−2)/2} Π_{j=1}^{k} (2j−1)/(2j) · cos^{2k}θ
        let (mut sum, mut term) = (1.0, 1.0);
        for k in 1..=((nu - 2) / 2) {
            term *= (2 * k - 1) as f64 / (2 * k) as f64 * c2;
            sum += term;
        }
        s * sum
    };
    let half = 0.5 * a.clamp(0.0, 1.0);
    if t >= 0.0 {
        0.5 + half
    } else {
        0.5 - half
    }
}
