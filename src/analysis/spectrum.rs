//! The eigenvalue spectrum of the embeddings' covariance — "dimensional collapse" (Jing et al.,
//! ICLR 2022, arXiv:2110.09348, §3 and Fig. 1): embeddings that span fewer directions than they
//! have show a tail of eigenvalues falling off a cliff on a log scale, even when no single
//! collapse number (z-std, uniformity) flags them.
use tch::{Kind, Tensor};

/// Eigenvalues of the sample covariance `C = 1/N Σ_i (z_i − z̄)(z_i − z̄)ᵀ` of `z: [N, D]`, in
/// descending order (Jing et al. Eq. 1 and Fig. 1), all `D` of them: `C` is formed in float64 and
/// its symmetric eigensolver run (a `D × D` problem, cheap beside the `N × D` product), rounding
/// below zero clamped to 0 (`C` is positive semi-definite). Non-finite embeddings (a diverged
/// network) have no spectrum: `D` NaNs, never a panic.
pub fn covariance_spectrum(z: &Tensor) -> Vec<f64> {
    let d = z.size()[1];
    let eig = covariance(z).and_then(|(_, c)| c.f_linalg_eigvalsh("L").ok()).and_then(|e| Vec::<f64>::try_from(&e.clamp_min(0.0).to_device(tch::Device::Cpu)).ok());
    match eig {
        Some(mut eig) => {
            eig.sort_by(|a, b| b.total_cmp(a));
            eig
        }
        None => vec![f64::NAN; d as usize],
    }
}

/// `z: [N, D]` centred, in float64, and its covariance `1/N Σ_i (z_i − z̄)(z_i − z̄)ᵀ`; None
/// when that is not finite.
fn covariance(z: &Tensor) -> Option<(Tensor, Tensor)> {
    let z = z.to_kind(Kind::Double);
    let n = z.size()[0].max(1);
    let centred = &z - z.mean_dim([0i64].as_slice(), true, Kind::Double);
    let c = centred.transpose(0, 1).matmul(&centred) / n as f64;
    (c.isfinite().all().int64_value(&[]) == 1).then_some((centred, c))
}

/// The coordinates of `z: [N, D]` on its `k` leading principal components — the eigenvectors of
/// the covariance `C` of [`covariance_spectrum`] with the largest eigenvalues — as `[N, k]`
/// float64 (PCA: `(z_i − z̄)ᵀ v_j`), with those eigenvalues. Column j has mean 0 and variance
/// `λ_j`, and the columns are uncorrelated. Each eigenvector's sign is fixed so that its entry of
/// largest magnitude is positive, so the picture does not flip between runs. None for non-finite
/// embeddings or `k > D`.
pub fn principal_components(z: &Tensor, k: usize) -> Option<(Tensor, Vec<f64>)> {
    let d = z.size()[1];
    if k as i64 > d {
        return None;
    }
    let (centred, c) = covariance(z)?;
    // eigenvalues ascending, eigenvectors in the columns
    let (values, vectors) = c.f_linalg_eigh("L").ok()?;
    let top = Tensor::arange_start_step(d - 1, d - 1 - k as i64, -1, (Kind::Int64, c.device()));
    let v = vectors.index_select(1, &top);
    let largest = v.abs().argmax(0, true);
    let sign = v.gather(0, &largest, false).sign();
    let v = &v * sign.where_self(&sign.ne(0.0), &sign.ones_like());
    let eig = Vec::<f64>::try_from(&values.index_select(0, &top).clamp_min(0.0).to_device(tch::Device::Cpu)).ok()?;
    Some((centred.matmul(&v), eig))
}

/// The fewest leading eigenvalues that hold at least `fraction` of the total variance
/// (`eigenvalues` in descending order); 0 when there is no variance.
pub fn dims_for_variance(eigenvalues: &[f64], fraction: f64) -> usize {
    let total: f64 = eigenvalues.iter().sum();
    if !(total > 0.0) {
        return 0;
    }
    let mut held = 0.0;
    for (k, v) in eigenvalues.iter().enumerate() {
        held += v;
        if held >= fraction * total * (1.0 - 1e-12) {
            return k + 1;
        }
    }
    eigenvalues.len()
}

/// Eigenvalues below this fraction of the largest are numerical zeros, left out of the plot (the
/// CSV keeps them).
const PLOT_FLOOR: f64 = 1e-12;

/// Writes the spectra of several networks (`(name, eigenvalues)`, of L2-normalised outputs, so on
/// one scale: they sum to the total variance `1 − ‖z̄‖²`) to `png` — log10 eigenvalue against its
/// rank, one line per network, as Jing et al. draw them: a collapsed network's line lies far below
/// the others — and to the CSV beside it (`png` with the extension `csv`):
/// `network,k,eigenvalue,cumulative_variance` (the cumulative share of the total).
pub fn write_spectra(png: &std::path::Path, title: &str, spectra: &[(String, Vec<f64>)]) -> anyhow::Result<std::path::PathBuf> {
    use std::fmt::Write;
    let mut csv = String::from("network,k,eigenvalue,cumulative_variance\n");
    for (name, eig) in spectra {
        let total: f64 = eig.iter().sum();
        let mut held = 0.0;
        for (k, v) in eig.iter().enumerate() {
            held += v;
            let _ = writeln!(csv, "{},{},{v:e},{:.6}", crate::study::report::quoted(name), k + 1, if total > 0.0 { held / total } else { 0.0 });
        }
    }
    let csv_path = png.with_extension("csv");
    crate::train::checkpoint::write_atomic(&csv_path, csv.as_bytes())?;
    let series: Vec<crate::study::plots::Series> = spectra
        .iter()
        .map(|(name, eig)| {
            let floor = eig.first().copied().unwrap_or(0.0) * PLOT_FLOOR;
            (name.clone(), eig.iter().enumerate().filter(|(_, v)| **v > floor).map(|(k, v)| ((k + 1) as f64, *v)).collect())
        })
        .collect();
    crate::study::plots::line_plot_scaled(png, title, "rank k (eigenvalues sorted, largest first)", "eigenvalue", &series, crate::study::plots::YScale::Log10)?;
    Ok(csv_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The covariance matrix by plain loops over rows (the definition, nothing shared with the eigensolver).
    fn covariance_by_loops(rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let (n, d) = (rows.len(), rows[0].len());
        let mean: Vec<f64> = (0..d).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64).collect();
        let mut c = vec![vec![0.0; d]; d];
        for r in rows {
            for a in 0..d {
                for b in 0..d {
                    c[a][b] += (r[a] - mean[a]) * (r[b] - mean[b]) / n as f64;
                }
            }
        }
        c
    }

    fn tensor(rows: &[Vec<f64>]) -> Tensor {
        let flat: Vec<f64> = rows.iter().flatten().copied().collect();
        Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
    }

    fn pseudo_random(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        (0..n).map(|_| (0..d).map(|_| next()).collect()).collect()
    }

    #[test]
    fn two_dimensions_match_the_closed_form_eigenvalues() {
        // correlated, unequal scales, off-centre: C = [[a, b], [b, c]]
        let rows: Vec<Vec<f64>> = pseudo_random(50, 2, 7).into_iter().map(|r| vec![3.0 * r[0] + 1.0, r[0] + 0.5 * r[1] - 2.0]).collect();
        let c = covariance_by_loops(&rows);
        let (a, b, cc) = (c[0][0], c[0][1], c[1][1]);
        let root = (((a - cc) / 2.0).powi(2) + b * b).sqrt();
        let want = [(a + cc) / 2.0 + root, (a + cc) / 2.0 - root];
        let got = covariance_spectrum(&tensor(&rows));
        assert_eq!(got.len(), 2);
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-10 * want[0], "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn a_two_dimensional_subspace_has_two_eigenvalues_summing_to_the_trace() {
        // 8-D embeddings that only span 2 directions: x W^T with x [N, 2], W [8, 2]
        let x = pseudo_random(40, 2, 3);
        let w = pseudo_random(8, 2, 5);
        let rows: Vec<Vec<f64>> = x.iter().map(|r| w.iter().map(|wj| r[0] * wj[0] + r[1] * wj[1]).collect()).collect();
        let c = covariance_by_loops(&rows);
        let trace: f64 = (0..8).map(|j| c[j][j]).sum();
        let frob2: f64 = c.iter().flatten().map(|v| v * v).sum();
        let got = covariance_spectrum(&tensor(&rows));
        assert_eq!(got.len(), 8);
        assert!(got.windows(2).all(|p| p[0] >= p[1]), "descending: {got:?}");
        assert!(got[1] > 1e-3 * got[0] && got[2] < 1e-12 * got[0], "two directions: {got:?}");
        assert!((got.iter().sum::<f64>() - trace).abs() < 1e-10 * trace, "sum = trace(C)");
        assert!((got.iter().map(|v| v * v).sum::<f64>() - frob2).abs() < 1e-10 * frob2, "sum of squares = ‖C‖_F²");
        assert_eq!(dims_for_variance(&got, 0.999), 2);
    }

    /// The leading eigenvector of a symmetric matrix by power iteration (plain loops), with the
    /// sign rule of [`principal_components`], deflating the ones already found.
    fn leading_eigenvectors(c: &[Vec<f64>], k: usize) -> Vec<Vec<f64>> {
        let d = c.len();
        let mut found: Vec<Vec<f64>> = Vec::new();
        for _ in 0..k {
            let mut v: Vec<f64> = (0..d).map(|i| 1.0 + i as f64 * 0.1).collect();
            for _ in 0..5000 {
                let mut w: Vec<f64> = (0..d).map(|a| (0..d).map(|b| c[a][b] * v[b]).sum()).collect();
                for f in &found {
                    let dot: f64 = w.iter().zip(f).map(|(x, y)| x * y).sum();
                    w.iter_mut().zip(f).for_each(|(x, y)| *x -= dot * y);
                }
                let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
                v = w.iter().map(|x| x / norm).collect();
            }
            let big = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            found.push(v.iter().map(|x| x * big.signum()).collect());
        }
        found
    }

    #[test]
    fn principal_components_match_power_iteration_and_have_the_leading_variances() {
        // 5-D points with three well-separated variances along a rotated basis, off-centre
        let x = pseudo_random(300, 5, 21);
        let w = pseudo_random(5, 5, 23);
        let rows: Vec<Vec<f64>> = x.iter().map(|r| (0..5).map(|j| 4.0 * r[0] * w[j][0] + 2.0 * r[1] * w[j][1] + 0.5 * r[2] * w[j][2] + 0.1 * r[3] * w[j][3] + 1.5).collect()).collect();
        let c = covariance_by_loops(&rows);
        let vs = leading_eigenvectors(&c, 2);
        let (coords, eig) = principal_components(&tensor(&rows), 2).unwrap();
        assert_eq!(coords.size(), [300, 2]);
        let coords: Vec<Vec<f64>> = (0..300).map(|i| Vec::<f64>::try_from(&coords.get(i)).unwrap()).collect();
        let mean: Vec<f64> = (0..5).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / 300.0).collect();
        for (i, r) in rows.iter().enumerate() {
            for (k, v) in vs.iter().enumerate() {
                let want: f64 = (0..5).map(|j| (r[j] - mean[j]) * v[j]).sum();
                assert!((coords[i][k] - want).abs() < 1e-8, "point {i}, component {k}: {} vs {want}", coords[i][k]);
            }
        }
        // each column's variance is its eigenvalue, the two leading ones of the spectrum; uncorrelated
        let spectrum = covariance_spectrum(&tensor(&rows));
        let cov = covariance_by_loops(&coords);
        for k in 0..2 {
            assert!((cov[k][k] - eig[k]).abs() < 1e-10 * eig[0] && (eig[k] - spectrum[k]).abs() < 1e-10 * eig[0], "{cov:?} {eig:?} {spectrum:?}");
        }
        assert!(cov[0][1].abs() < 1e-10 * eig[0], "{cov:?}");
        assert!(principal_components(&tensor(&rows), 6).is_none());
        let mut bad = rows.clone();
        bad[0][0] = f64::NAN;
        assert!(principal_components(&tensor(&bad), 2).is_none());
    }

    #[test]
    fn fewer_rows_than_dimensions_give_zeros() {
        let rows = pseudo_random(3, 6, 11);
        let got = covariance_spectrum(&tensor(&rows));
        assert_eq!(got.len(), 6);
        // three centred rows span at most two directions
        assert!(got[1] > 0.0 && got[2..].iter().all(|v| *v < 1e-12 * got[0]), "{got:?}");
    }

    #[test]
    fn non_finite_embeddings_have_no_spectrum() {
        let mut rows = pseudo_random(10, 4, 13);
        rows[3][2] = f64::NAN;
        let got = covariance_spectrum(&tensor(&rows));
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|v| v.is_nan()), "{got:?}");
        assert_eq!(dims_for_variance(&got, 0.99), 0);
    }

    #[test]
    fn variance_fractions_count_leading_eigenvalues() {
        let eig = [4.0, 3.0, 2.0, 1.0];
        assert_eq!(dims_for_variance(&eig, 0.4), 1);
        assert_eq!(dims_for_variance(&eig, 0.7), 2);
        assert_eq!(dims_for_variance(&eig, 0.9), 3, "exactly 9/10");
        assert_eq!(dims_for_variance(&eig, 0.99), 4);
        assert_eq!(dims_for_variance(&[0.0, 0.0], 0.99), 0);
    }
}
