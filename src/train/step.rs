//! The update half of a training step, shared by the trainer and `selfsup bench step`:
//! backward → gradient all-reduce (data parallel) → (optional gradient check) → optimiser → method hook (EMA), in that fixed order.
use crate::methods::Method;
use crate::optim::Optimizer;
use tch::Tensor;

/// What the update did.
pub enum Update {
    /// Applied; the scalars the method hook logs (e.g. `tau`).
    Applied(Vec<(&'static str, f64)>),
    /// A value (loss or gradient) was not finite: nothing was changed (no optimiser step, no EMA).
    NonFinite,
}

/// Backpropagates `loss`, then (unless `check_grads` finds a non-finite gradient) applies the
/// optimiser with `lr` and the method's post-step work for step `step` of `total`.
pub fn apply_update(method: &mut dyn Method, opt: &mut Optimizer, loss: &Tensor, lr: f64, step: usize, total: usize, check_grads: bool) -> anyhow::Result<Update> {
    opt.zero_grad();
    loss.backward();
    // data parallel: every rank continues with the gradient averaged over ranks
    if crate::backend::dist::place().distributed() {
        let params: Vec<Tensor> = opt.params.iter().map(|p| p.tensor.shallow_clone()).collect();
        crate::backend::dist::average_gradients(&params, 25 << 20)?;
    }
    if check_grads && !opt.grads_finite() {
        opt.zero_grad();
        return Ok(Update::NonFinite);
    }
    opt.step(lr)?;
    Ok(Update::Applied(method.after_step(step, total)?))
}
