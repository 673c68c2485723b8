//! Learning curves of a study's runs, read from their metrics logs: a value at each held-out
//! evaluation against the epoch or against the update step, and for a study over seeds each
//! configuration's mean ± sample standard deviation over its seeds at each evaluation.
//!
//! The step axis matters when the runs' epochs hold different numbers of updates (a batch-size
//! study at equal updates: 276 steps are 3 epochs at batch 32 and 24 at batch 256) — against the
//! epoch their curves do not line up, against the step they do.
use crate::study::report::RunRow;
use crate::study::seeds::{finished_by_configuration, Spread};
use serde_json::Value;

/// What a curve is drawn against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    Epoch,
    Step,
}

impl Axis {
    /// The metrics-log field holding the x value (and the axis's label).
    pub fn key(self) -> &'static str {
        match self {
            Axis::Epoch => "epoch",
            Axis::Step => "step",
        }
    }

    /// [`Axis::Step`] when the finished runs' epochs hold different numbers of updates (by more
    /// than 1%), else [`Axis::Epoch`]. An unfinished run's count is an estimate from its log (off
    /// in the middle of an epoch), so it does not decide.
    pub fn for_runs(rows: &[RunRow]) -> Axis {
        let (lo, hi) = rows.iter().filter(|r| r.finished).map(|r| r.steps_per_epoch).fold((f64::INFINITY, 0.0f64), |(lo, hi), s| (lo.min(s), hi.max(s)));
        if hi > lo * 1.01 {
            Axis::Step
        } else {
            Axis::Epoch
        }
    }
}

/// The value of `key` at each of a run's evaluations, against `axis`, in log order. The record
/// written at the end of training repeats the last evaluation's epoch and step; it is kept once.
pub fn at_evaluations(r: &RunRow, key: &str, axis: Axis) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = r.lines.iter().filter_map(|l: &Value| Some((l[axis.key()].as_f64()?, l[key].as_f64()?))).collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    pts
}

/// A run's kNN top-1 at each evaluation against `axis`, with the random-init encoder's at x = 0
/// when the run measured it (`eval.compare_random`).
pub fn knn_curve(r: &RunRow, axis: Axis) -> Vec<(f64, f64)> {
    let mut pts = at_evaluations(r, "knn_top1", axis);
    if let Some(random) = r.get("knn_random_top1") {
        pts.insert(0, (0.0, random));
    }
    pts
}

/// One configuration's curve over its seeds.
#[derive(Clone, Debug)]
pub struct MeanCurve {
    /// The configuration's name (the runs' names without `-seedN`).
    pub name: String,
    /// How many finished runs the points average.
    pub runs: usize,
    /// (x, spread over the runs) at every x each of the runs has a value at.
    pub points: Vec<(f64, Spread)>,
}

/// Each configuration's mean curve over its finished runs (first-seen order), `curve` giving one
/// run's points. Only the x values every run of the configuration has are kept, so a point never
/// averages a different set of seeds than its neighbours.
pub fn mean_curves(rows: &[RunRow], curve: impl Fn(&RunRow) -> Vec<(f64, f64)>) -> Vec<MeanCurve> {
    finished_by_configuration(rows)
        .into_iter()
        .map(|(name, runs)| {
            let curves: Vec<Vec<(f64, f64)>> = runs.into_iter().map(&curve).collect();
            let value_at = |c: &[(f64, f64)], x: f64| c.iter().find(|p| p.0 == x).map(|p| p.1);
            let points = curves[0]
                .iter()
                .filter_map(|&(x, _)| {
                    let values: Option<Vec<f64>> = curves.iter().map(|c| value_at(c, x)).collect();
                    Some((x, Spread::of(values?.into_iter().map(Some))?))
                })
                .collect();
            MeanCurve { name: name.to_string(), runs: curves.len(), points }
        })
        .collect()
}

/// The mean curves as CSV: `configuration,seeds,<x>,<value>_mean,<value>_sd`, one line per point.
pub fn mean_curves_csv(curves: &[MeanCurve], axis: Axis, value: &str) -> String {
    let mut csv = format!("configuration,seeds,{},{value}_mean,{value}_sd\n", axis.key());
    for c in curves {
        for (x, s) in &c.points {
            csv += &format!("{},{},{x},{},{}\n", crate::study::report::quoted(&c.name), c.runs, s.mean, s.sd);
        }
    }
    csv
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(name: &str, steps_per_epoch: f64, random: f64, evals: &[(f64, f64)]) -> RunRow {
        let mut lines: Vec<Value> = evals.iter().map(|&(epoch, knn)| json!({"epoch": epoch, "step": epoch * steps_per_epoch, "knn_top1": knn})).collect();
        // training lines carry no kNN; the final record repeats the last evaluation
        lines.insert(0, json!({"epoch": 1.0, "step": 1.0, "loss": 0.5}));
        lines.push(lines.last().unwrap().clone());
        RunRow { name: name.into(), finished: true, steps_per_epoch, values: [("knn_random_top1", random)].into(), lines, ..Default::default() }
    }

    #[test]
    fn a_knn_curve_starts_at_random_init_and_keeps_each_evaluation_once() {
        let r = run("a", 10.0, 0.25, &[(2.0, 0.3), (4.0, 0.4)]);
        assert_eq!(knn_curve(&r, Axis::Epoch), [(0.0, 0.25), (2.0, 0.3), (4.0, 0.4)]);
        assert_eq!(knn_curve(&r, Axis::Step), [(0.0, 0.25), (20.0, 0.3), (40.0, 0.4)]);
    }

    #[test]
    fn the_step_axis_is_chosen_when_epochs_hold_different_updates() {
        let same = [run("a", 46.0, 0.2, &[]), run("b", 46.2, 0.2, &[])];
        let differ = [run("a", 92.0, 0.2, &[]), run("b", 11.0, 0.2, &[])];
        assert_eq!(Axis::for_runs(&same), Axis::Epoch);
        assert_eq!(Axis::for_runs(&differ), Axis::Step);
        let running = [run("a", 46.0, 0.2, &[]), RunRow { finished: false, ..run("b", 30.7, 0.2, &[]) }];
        assert_eq!(Axis::for_runs(&running), Axis::Epoch, "an unfinished run's estimate does not decide");
        assert_eq!(Axis::for_runs(&[]), Axis::Epoch);
    }

    #[test]
    fn mean_curves_average_the_seeds_at_shared_points_only() {
        let rows = [
            run("a-seed1", 10.0, 0.20, &[(1.0, 0.30), (2.0, 0.40)]),
            run("b-seed1", 5.0, 0.10, &[(1.0, 0.5)]),
            run("a-seed2", 10.0, 0.30, &[(1.0, 0.20), (2.0, 0.60), (3.0, 0.9)]),
            RunRow { finished: false, ..run("a-seed3", 10.0, 0.9, &[(1.0, 0.9)]) },
        ];
        let c = mean_curves(&rows, |r| knn_curve(r, Axis::Step));
        assert_eq!(c.iter().map(|c| (c.name.as_str(), c.runs)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);
        // a: step 0 (0.2, 0.3), step 10 (0.3, 0.2), step 20 (0.4, 0.6); step 30 only in seed 2
        let expect = [(0.0, 0.25, 0.05), (10.0, 0.25, 0.05), (20.0, 0.5, 0.1)];
        assert_eq!(c[0].points.len(), expect.len(), "{:?}", c[0].points);
        for ((x, s), (ex, em, e_half_range)) in c[0].points.iter().zip(expect) {
            // two values: sample sd = |a − b| / √2 = half-range · √2
            assert!(*x == ex && (s.mean - em).abs() < 1e-12 && (s.sd - e_half_range * 2f64.sqrt()).abs() < 1e-12, "{x} {s:?}");
        }
        assert_eq!(c[1].points.iter().map(|p| (p.0, p.1.mean)).collect::<Vec<_>>(), [(0.0, 0.1), (5.0, 0.5)]);
        let csv = mean_curves_csv(&c, Axis::Step, "knn_top1");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "configuration,seeds,step,knn_top1_mean,knn_top1_sd");
        assert_eq!(lines.len(), 1 + 3 + 2, "{csv}");
        assert!(lines[3].starts_with("\"a\",2,20,0.5,"), "{csv}");
    }
}
