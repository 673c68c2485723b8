//! Schedules (BYOL, arXiv:2006.07733, Appendix J.1; DeepMind's `byol/utils/schedules.py`).

/// Linear-scaling rule (Goyal et al., 2017): `lr = base × batch / 256`.
pub fn scaled_lr(base: f64, batch: usize) -> f64 {
    base * batch as f64 / 256.0
}

/// Linear warmup from 0 over `warmup` steps, then cosine decay to 0 at `total` steps:
/// `lr(k) = peak·k/warmup` for k < warmup, else `peak·(1 + cos(π (k−warmup)/(total−warmup)))/2`.
pub fn warmup_cosine(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * step as f64 / warmup as f64;
    }
    let decay = (total - warmup.min(total)).max(1);
    let progress = ((step - warmup) as f64 / decay as f64).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// BYOL's target decay: `τ_k = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2`, from τ_base at k = 0 to 1 at K.
pub fn target_tau(tau_base: f64, step: usize, total: usize) -> f64 {
    momentum_schedule(tau_base, 1.0, step, total)
}

/// The same cosine rise to a final value other than 1 (solo-learn's MoCo v2+ goes 0.99 → 0.999):
/// `τ_k = τ_end − (τ_end − τ_base)·(cos(πk/K) + 1)/2`.
pub fn momentum_schedule(tau_base: f64, tau_end: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    tau_end - (tau_end - tau_base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn tau_follows_the_formula_and_ends_at_one() {
        for &(base, k, kk) in &[(0.99, 0usize, 100usize), (0.99, 50, 100), (0.996, 37, 1000), (0.9, 100, 100)] {
            let expect = 1.0 - (1.0 - base) * ((PI * k as f64 / kk as f64).cos() + 1.0) / 2.0;
            assert!((target_tau(base, k, kk) - expect).abs() < 1e-15);
        }
        assert_eq!(target_tau(0.99, 0, 10), 0.99);
        assert!((target_tau(0.99, 10, 10) - 1.0).abs() < 1e-15);
        assert!((target_tau(0.99, 5, 10) - 0.995).abs() < 1e-12);
    }

    #[test]
    fn warmup_then_cosine() {
        assert_eq!(warmup_cosine(2.0, 0, 10, 110), 0.0);
        assert!((warmup_cosine(2.0, 5, 10, 110) - 1.0).abs() < 1e-12);
        assert!((warmup_cosine(2.0, 10, 10, 110) - 2.0).abs() < 1e-12);
        assert!((warmup_cosine(2.0, 60, 10, 110) - 1.0).abs() < 1e-12); // half-way: cos(π/2) = 0
        assert!(warmup_cosine(2.0, 110, 10, 110).abs() < 1e-12);
        // no warmup: PyTorch's CosineAnnealingLR values
        for k in 0..20 {
            let expect = 0.1 * (1.0 + (PI * k as f64 / 20.0).cos()) / 2.0;
            assert!((warmup_cosine(0.1, k, 0, 20) - expect).abs() < 1e-15);
        }
        assert!((scaled_lr(0.4, 64) - 0.1).abs() < 1e-15);
    }
}
