//! Encoders (ResNet-18/34/50 with CIFAR or ImageNet stem) and MLP heads, with the normalisation
//! layer a parameter. Parameter names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, …).
pub mod layers;
pub mod mlp;
pub mod norm;
pub mod resnet;
pub mod torch_file;
pub mod torchvision;

pub use mlp::{Mlp, MlpConfig};
pub use norm::NormKind;
pub use resnet::{ResNet, ResNetConfig};
use tch::nn::VarStore;

/// Copies into `dst` the value of every variable `src` has under the same name (architectures that
/// share names: an online branch and its momentum copy, a network and its twin with another norm).
pub fn copy_shared_variables(dst: &VarStore, src: &VarStore) {
    let from = src.variables();
    tch::no_grad(|| {
        for (name, t) in dst.variables() {
            if let Some(v) = from.get(&name) {
                t.shallow_clone().copy_(v);
            }
        }
    });
}
