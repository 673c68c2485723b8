//! Encoders (ResNet-18/34/50 with CIFAR or ImageNet stem) and MLP heads, with the normalisation
//! layer a parameter. Parameter names follow torchvision (`conv1`, `bn1`, `layer1.0.conv1`, …).
pub mod layers;
pub mod mlp;
pub mod norm;
pub mod resnet;

pub use mlp::{Mlp, MlpConfig};
pub use norm::NormKind;
pub use resnet::{ResNet, ResNetConfig};
