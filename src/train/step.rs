//! The update half of a training step, shared by the trainer and `selfsup bench step`:
//! backward (with the gradient all-reduce of data parallel overlapping it, or after it) →
//! (optional gradient check) → optimiser → method hook (EMA), in that fixed order.
use crate::backend::dist::GradSync;
use crate::methods::Method;
use crate::optim::{LearningRate, Optimizer};
use crate::train::nonfinite::NonFiniteWatch;
use tch::Tensor;

/// What the update did.
pub enum Update {
    /// Applied; the scalars the method hook logs (e.g. `tau`).
    Applied(Vec<(&'static str, f64)>),
    /// A value (loss or gradient) was not finite: nothing was changed (no optimiser step, no EMA).
    NonFinite,
}

/// How the gradients are checked for non-finite values.
pub enum GradCheck<'a> {
    /// Not at all (benchmarks).
    Off,
    /// Read back now (a host synchronisation); a non-finite gradient skips the update.
    Now,
    /// Recorded on the device for step `.1` with the step's loss `.2`, read later: the update is
    /// applied either way (the caller stops before anything non-finite is saved).
    Watch(&'a mut NonFiniteWatch, usize, &'a Tensor),
}

/// Backpropagates `loss` (gradients averaged over ranks as `sync` says), then (unless `check`
/// reads a non-finite gradient now) applies the optimiser with `lr` and the method's post-step
/// work for step `step` of `total`.
#[allow(clippy::too_many_arguments)]
pub fn apply_update(method: &mut dyn Method, opt: &mut Optimizer, sync: &mut GradSync, loss: &Tensor, lr: LearningRate, step: usize, total: usize, check: GradCheck) -> anyhow::Result<Update> {
    opt.zero_grad()?;
    sync.before_backward()?;
    loss.backward();
    // data parallel: every rank continues with the gradient averaged over ranks
    sync.after_backward(|| opt.params.iter().map(|p| p.tensor.shallow_clone()).collect())?;
    match check {
        GradCheck::Off => {}
        GradCheck::Now => {
            if !opt.grads_finite()? {
                opt.zero_grad()?;
                return Ok(Update::NonFinite);
            }
        }
        GradCheck::Watch(watch, at, loss) => watch.record(at, loss, &opt.grads_finite_flag()?),
    }
    opt.step(lr)?;
    Ok(Update::Applied(method.after_step(step, total)?))
}
