//! The two halves of a training step, shared by the trainer and `selfsup bench step`:
//! [`backward`] (with the gradient all-reduce of data parallel overlapping it, or after it), then
//! [`update`]: (optional gradient check) → optimiser → method hook (EMA), in that fixed order.
//! `train.cuda_graph` captures the first half once and replays it ([`crate::train::graph`]); the
//! second always runs eagerly, with its host-side schedules.
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

/// Backpropagates `loss` into freshly dropped gradients, averaged over ranks as `sync` says.
pub fn backward(opt: &mut Optimizer, sync: &mut GradSync, loss: &Tensor) -> anyhow::Result<()> {
    opt.zero_grad()?;
    sync.before_backward()?;
    loss.backward();
    // data parallel: every rank continues with the gradient averaged over ranks
    sync.after_backward(|| opt.params.iter().map(|p| p.tensor.shallow_clone()).collect())
}

/// Unless `check` reads a non-finite gradient now, applies the optimiser with `lr` to the
/// gradients [`backward`] left, then the method's post-step work for step `step` of `total`.
/// The gradients are not touched: the next [`backward`] (or graph replay) replaces them.
pub fn update(method: &mut dyn Method, opt: &mut Optimizer, lr: LearningRate, step: usize, total: usize, check: GradCheck) -> anyhow::Result<Update> {
    match check {
        GradCheck::Off => {}
        GradCheck::Now => {
            if !opt.grads_finite()? {
                return Ok(Update::NonFinite);
            }
        }
        GradCheck::Watch(watch, at, loss) => watch.record(at, loss, &opt.grads_finite_flag()?),
    }
    opt.step(lr)?;
    Ok(Update::Applied(method.after_step(step, total)?))
}

/// [`backward`] then [`update`]: one eager step's update half.
#[allow(clippy::too_many_arguments)]
pub fn apply_update(method: &mut dyn Method, opt: &mut Optimizer, sync: &mut GradSync, loss: &Tensor, lr: LearningRate, step: usize, total: usize, check: GradCheck) -> anyhow::Result<Update> {
    backward(opt, sync, loss)?;
    update(method, opt, lr, step, total, check)
}
