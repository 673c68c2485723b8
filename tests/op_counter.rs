//! `shim::OpCounter` (behind `selfsup bench step --count-ops`) counts the ATen operators
//! dispatched while it runs, on every thread: checked against operations whose dispatch count is
//! known. A test binary of its own, since the counter sees every thread of the process and other
//! tests would add theirs.
use selfsup::backend::shim::OpCounter;
use tch::{Device, Kind, Tensor};

#[test]
fn the_op_counter_counts_dispatched_operators_on_every_thread() {
    let t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
    let one = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let c = OpCounter::start().unwrap();
    for _ in 0..10 {
        let _ = t.shallow_clone().g_add_(&one);
    }
    assert_eq!(c.stop().unwrap(), 10, "ten tensor additions in place");
    // a second thread's operators count too (the autograd engine runs a GPU's backward on its own)
    let c = OpCounter::start().unwrap();
    let (t2, one2) = (t.shallow_clone(), one.shallow_clone());
    std::thread::spawn(move || {
        for _ in 0..7 {
            let _ = t2.shallow_clone().g_add_(&one2);
        }
    })
    .join()
    .unwrap();
    assert_eq!(c.stop().unwrap(), 7);
    // each start counts from zero again
    let c = OpCounter::start().unwrap();
    assert_eq!(c.stop().unwrap(), 0);
    let _ = t.shallow_clone().g_add_(&one);
    assert_eq!(t.double_value(&[0]), 18.0);
}
