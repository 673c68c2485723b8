//! Augmentation recipes as data: one [`ViewConfig`] per view, so asymmetric settings (BYOL's blur
//! 1.0 / 0.1 and solarize 0 / 0.2) and multi-crop (2 large + N small views) are plain values.
use crate::error::Error;
use serde::{Deserialize, Serialize};

/// Channel statistics used to normalise images.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR10_STD: [f32; 3] = [0.247, 0.243, 0.261];

/// The normalisation names (`data.normalize`, `eval.normalize`) and their (mean, std).
pub const NORMALIZATIONS: [(&str, ([f32; 3], [f32; 3])); 4] = [
    ("imagenet", (IMAGENET_MEAN, IMAGENET_STD)),
    ("cifar10", (CIFAR10_MEAN, CIFAR10_STD)),
    ("cifar", (CIFAR10_MEAN, CIFAR10_STD)),
    ("none", ([0.0; 3], [1.0; 3])),
];

/// Resolves a normalisation name ([`NORMALIZATIONS`]) to (mean, std).
pub fn normalization(name: &str) -> Result<([f32; 3], [f32; 3]), Error> {
    crate::config::choose("data.normalize", name, &NORMALIZATIONS)
}

/// Everything one view's pipeline does, in order: crop → flip → colour jitter → grayscale →
/// blur → solarize → normalise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ViewConfig {
    /// Output side in pixels.
    pub crop_size: usize,
    /// `false`: no randomness at all, the whole image resized (the `none` recipe and evaluation).
    pub random: bool,
    /// Area fraction range of RandomResizedCrop.
    pub crop_scale: [f32; 2],
    /// Aspect ratio range of RandomResizedCrop.
    pub crop_ratio: [f32; 2],
    pub hflip_p: f32,
    pub jitter_p: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub gray_p: f32,
    pub blur_p: f32,
    pub blur_sigma: [f32; 2],
    pub solarize_p: f32,
    pub solarize_threshold: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ViewConfig {
    /// The linear-evaluation view: RandomResizedCrop (scale 0.08–1, ratio 3/4–4/3) and a
    /// horizontal flip with probability 0.5, no colour augmentation — the training transform of
    /// the frozen-encoder linear protocol (SimCLR, arXiv:2002.05709, Appendix B.6; solo-learn's
    /// offline linear evaluation).
    pub fn linear_eval(crop_size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        ViewConfig { random: true, crop_scale: [0.08, 1.0], crop_ratio: [3.0 / 4.0, 4.0 / 3.0], hflip_p: 0.5, ..ViewConfig::plain(crop_size, mean, std) }
    }

    /// The plain view: whole image resized to `crop_size`, normalised, nothing random.
    pub fn plain(crop_size: usize, mean: [f32; 3], std: [f32; 3]) -> Self {
        ViewConfig {
            crop_size,
            random: false,
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            hflip_p: 0.0,
            jitter_p: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            gray_p: 0.0,
            blur_p: 0.0,
            blur_sigma: [0.1, 2.0],
            solarize_p: 0.0,
            solarize_threshold: 0.5,
            mean,
            std,
        }
    }

    /// Checks every value; the error names the view and field.
    pub fn validate(&self, view: usize) -> Result<(), Error> {
        let field = |f: &str| format!("data.view{}.{f}", view + 1);
        for (name, p) in [("hflip_p", self.hflip_p), ("jitter_p", self.jitter_p), ("gray_p", self.gray_p), ("blur_p", self.blur_p), ("solarize_p", self.solarize_p)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(field(name), p, "a probability must lie in [0, 1]"));
            }
        }
        if self.crop_size == 0 {
            return Err(Error::config(field("crop_size"), 0, "must be at least 1"));
        }
        let [lo, hi] = self.crop_scale;
        if !(lo > 0.0 && lo <= hi && hi <= 1.0) {
            return Err(Error::config(field("crop_scale"), format!("[{lo}, {hi}]"), "need 0 < min <= max <= 1"));
        }
        let [lo, hi] = self.crop_ratio;
        if !(lo > 0.0 && lo <= hi) {
            return Err(Error::config(field("crop_ratio"), format!("[{lo}, {hi}]"), "need 0 < min <= max"));
        }
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(field(name), v, "must be >= 0"));
            }
        }
        if !(0.0..=0.5).contains(&self.hue) {
            return Err(Error::config(field("hue"), self.hue, "must lie in [0, 0.5]"));
        }
        let [lo, hi] = self.blur_sigma;
        if !(lo > 0.0 && lo <= hi) {
            return Err(Error::config(field("blur_sigma"), format!("[{lo}, {hi}]"), "need 0 < min <= max"));
        }
        if self.std.iter().any(|s| *s <= 0.0) {
            return Err(Error::config(field("std"), format!("{:?}", self.std), "every std must be > 0"));
        }
        Ok(())
    }
}

/// A multi-view recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub name: String,
    pub views: Vec<ViewConfig>,
}

/// The knobs a named recipe takes.
#[derive(Clone, Debug)]
pub struct RecipeParams {
    /// Output side (0 = the recipe's default: 32 for `-cifar` recipes, 224 otherwise).
    pub crop_size: usize,
    /// Multiplies brightness/contrast/saturation/hue (lightly's `cj_strength`).
    pub jitter_strength: f32,
    /// Lower bound of the crop area fraction (0 = the recipe's default).
    pub min_scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Extra small views for multi-crop (SwAV-style), each `small_crop_size` px.
    pub small_crops: usize,
    pub small_crop_size: usize,
}

impl Default for RecipeParams {
    fn default() -> Self {
        RecipeParams { crop_size: 0, jitter_strength: 1.0, min_scale: 0.0, mean: IMAGENET_MEAN, std: IMAGENET_STD, small_crops: 0, small_crop_size: 96 }
    }
}

pub const RECIPES: &[&str] = &["byol", "byol-cifar", "simclr", "simclr-cifar", "mocov2", "mocov2-cifar", "none"];

impl Recipe {
    /// A named recipe. Sources: BYOL (arXiv:2006.07733, Table 6); SimCLR (arXiv:2002.05709,
    /// Appendix A: jitter 0.8·s, blur p 0.5); MoCo v2 "aug+" (arXiv:2003.04297: scale 0.2–1,
    /// jitter 0.4/0.4/0.4/0.1 p 0.8, grey 0.2, blur p 0.5). `-cifar` variants drop blur, crop 32.
    pub fn named(name: &str, p: &RecipeParams) -> Result<Recipe, Error> {
        let cifar = name.ends_with("-cifar");
        let size = if p.crop_size > 0 { p.crop_size } else if cifar { 32 } else { 224 };
        let s = p.jitter_strength;
        let base = |min_scale: f32, b: f32, c: f32, sat: f32, h: f32| ViewConfig {
            random: true,
            crop_scale: [if p.min_scale > 0.0 { p.min_scale } else { min_scale }, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            hflip_p: 0.5,
            jitter_p: 0.8,
            brightness: b * s,
            contrast: c * s,
            saturation: sat * s,
            hue: h * s,
            gray_p: 0.2,
            ..ViewConfig::plain(size, p.mean, p.std)
        };
        let blur = |v: ViewConfig, prob: f32| ViewConfig { blur_p: if cifar { 0.0 } else { prob }, ..v };
        let mut views = match name {
            "byol" | "byol-cifar" => {
                let v = base(0.08, 0.4, 0.4, 0.2, 0.1);
                vec![blur(v.clone(), 1.0), ViewConfig { solarize_p: 0.2, ..blur(v, 0.1) }]
            }
            "simclr" | "simclr-cifar" => {
                let v = blur(base(0.08, 0.8, 0.8, 0.8, 0.2), 0.5);
                vec![v.clone(), v]
            }
            "mocov2" | "mocov2-cifar" => {
                let v = blur(base(0.2, 0.4, 0.4, 0.4, 0.1), 0.5);
                vec![v.clone(), v]
            }
            "none" => vec![ViewConfig::plain(size, p.mean, p.std); 2],
            other => return Err(Error::config("data.recipe", other, format!("unknown recipe (expected one of: {})", RECIPES.join(", ")))),
        };
        if p.small_crops > 0 {
            let small = ViewConfig { crop_size: p.small_crop_size, crop_scale: [0.05, 0.14], ..views[1].clone() };
            views.extend(std::iter::repeat(small).take(p.small_crops));
        }
        let recipe = Recipe { name: name.to_string(), views };
        recipe.validate()?;
        Ok(recipe)
    }

    pub fn validate(&self) -> Result<(), Error> {
        if self.views.is_empty() {
            return Err(Error::config("data.recipe", &self.name, "a recipe needs at least one view"));
        }
        self.views.iter().enumerate().try_for_each(|(i, v)| v.validate(i))
    }
}
