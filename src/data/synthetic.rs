//! A procedurally generated, class-structured image set made deterministically in code (no
//! files), so the README's first command runs anywhere. Ten classes of stationary patterns
//! (wide stripes, narrow stripes, checkerboard, dots, rings, blobs, grain, zigzag, grid, gradient),
//! each image with its own random pair of grey levels (lightly tinted), orientation, phase and
//! scale within the class's range, plus pixel noise. The class survives random crops (the
//! patterns are stationary); brightness and contrast are nuisances that colour jitter teaches an
//! encoder to ignore.
//!
//! Two earlier versions taught what not to do at a CPU budget of a few hundred steps: shapes over
//! striped backgrounds (two crops of one image share the stripes, so BYOL matched stripes, not
//! shapes), and patterns in fully random colours (colour dominates both views and the features;
//! kNN stayed at the random-init level).
use crate::data::dataset::Items;
use crate::data::{Dataset, Image, Split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::f32::consts::PI;

pub const DEFAULT_COUNT: usize = 4000;
pub const SIZE: usize = 32;
pub const CLASSES: [&str; 10] = ["wide-stripes", "narrow-stripes", "checkerboard", "dots", "rings", "blobs", "grain", "zigzag", "grid", "gradient"];

/// Per-image pattern parameters.
struct Pattern {
    class: usize,
    angle: f32,
    phase: f32,
    period: f32,
    cx: f32,
    cy: f32,
    blobs: Vec<(f32, f32, f32)>,
}

/// Mixing weight in [0, 1] between the two colours at pixel (x, y).
fn pattern_value(p: &Pattern, x: f32, y: f32, rng: &mut ChaCha8Rng) -> f32 {
    let (s, c) = p.angle.sin_cos();
    let u = c * x + s * y;
    let v = -s * x + c * y;
    let wave = |t: f32| 0.5 + 0.5 * (2.0 * PI * t / p.period + p.phase).sin();
    match p.class {
        0 | 1 => (wave(u) > 0.5) as u8 as f32,
        2 => ((((u / p.period).floor() + (v / p.period).floor()) as i32).rem_euclid(2)) as f32,
        3 => {
            let du = (u / p.period).fract().abs() - 0.5;
            let dv = (v / p.period).fract().abs() - 0.5;
            ((du * du + dv * dv).sqrt() < 0.3) as u8 as f32
        }
        4 => wave(((x - p.cx).powi(2) + (y - p.cy).powi(2)).sqrt()),
        5 => {
            let f: f32 = p.blobs.iter().map(|(bx, by, r)| (-((x - bx).powi(2) + (y - by).powi(2)) / (2.0 * r * r)).exp()).sum();
            (f > 0.5) as u8 as f32
        }
        6 => (rng.gen::<f32>() > 0.5) as u8 as f32,
        7 => {
            let zig = ((v / p.period).fract() - 0.5).abs() * p.period;
            wave(u + 2.0 * zig)
        }
        8 => {
            let gu = (u / p.period).fract().abs();
            let gv = (v / p.period).fract().abs();
            (gu < 0.2 || gv < 0.2) as u8 as f32
        }
        _ => ((u + 16.0) / 32.0).clamp(0.0, 1.0),
    }
}

/// Renders sample `index` of a split. Pure function of (split, index).
pub fn render(split: Split, index: usize) -> (Image, u32) {
    let base: u64 = if split == Split::Train { 0x5e1f_0001 } else { 0x5e1f_7e57 };
    let mut rng = ChaCha8Rng::seed_from_u64(base.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let class = index % CLASSES.len();
    let tinted = |rng: &mut ChaCha8Rng| {
        let g: f32 = rng.gen();
        [0, 1, 2].map(|_| (g + rng.gen_range(-0.15..0.15)).clamp(0.0, 1.0))
    };
    let c1 = tinted(&mut rng);
    let mut c2 = tinted(&mut rng);
    // keep the pattern visible: push the second colour away from the first if they are close
    if (0..3).map(|k| (c1[k] - c2[k]).abs()).sum::<f32>() < 0.6 {
        for k in 0..3 {
            c2[k] = if c1[k] > 0.5 { c1[k] - 0.5 } else { c1[k] + 0.5 };
        }
    }
    let period = match class {
        0 => rng.gen_range(9.0..13.0),
        1 => rng.gen_range(3.0..4.5),
        2 => rng.gen_range(4.0..7.0),
        3 => rng.gen_range(6.0..9.0),
        4 => rng.gen_range(5.0..8.0),
        7 => rng.gen_range(5.0..8.0),
        8 => rng.gen_range(6.0..9.0),
        _ => 8.0,
    };
    let blobs = (0..rng.gen_range(2..5)).map(|_| (rng.gen_range(0.0..32.0), rng.gen_range(0.0..32.0), rng.gen_range(3.0..6.0))).collect();
    let p = Pattern { class, angle: rng.gen_range(0.0..PI), phase: rng.gen_range(0.0..2.0 * PI), period, cx: rng.gen_range(0.0..32.0), cy: rng.gen_range(0.0..32.0), blobs };
    // rings and blobs place their own centres in image coordinates; the rest rotate about the middle
    let origin = if class == 4 || class == 5 { 0.0 } else { SIZE as f32 / 2.0 };
    let mut data = vec![0u8; SIZE * SIZE * 3];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let m = pattern_value(&p, x as f32 + 0.5 - origin, y as f32 + 0.5 - origin, &mut rng);
            let noise: f32 = rng.gen_range(-0.05..0.05);
            for ch in 0..3 {
                let val = (m * c1[ch] + (1.0 - m) * c2[ch] + noise).clamp(0.0, 1.0);
                data[(y * SIZE + x) * 3 + ch] = (val * 255.0).round() as u8;
            }
        }
    }
    (Image::new(SIZE, SIZE, 3, data), class as u32)
}

/// Generates `count` images of a split (train and test use different random streams).
pub fn generate(count: usize, split: Split) -> Dataset {
    let (images, labels): (Vec<Image>, Vec<u32>) = (0..count).into_par_iter().map(|i| render(split, i)).unzip();
    Dataset {
        source: format!("synthetic:{count}@{}", split.name()),
        items: Items::Memory(images),
        labels: Some(labels),
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_balanced_and_split_dependent() {
        let a = generate(50, Split::Train);
        let b = generate(50, Split::Train);
        let t = generate(50, Split::Test);
        let (crate::data::dataset::Items::Memory(ia), crate::data::dataset::Items::Memory(ib), crate::data::dataset::Items::Memory(it)) = (&a.items, &b.items, &t.items) else { panic!() };
        assert_eq!(ia, ib);
        assert_ne!(ia[0], it[0]);
        let labels = a.labels.unwrap();
        for k in 0..10 {
            assert_eq!(labels.iter().filter(|&&l| l == k).count(), 5);
        }
    }

    #[test]
    fn every_class_uses_both_colours() {
        // each pattern must put a visible share of pixels on each side of the colour mix
        for class in 0..10 {
            let (img, label) = render(Split::Train, class);
            assert_eq!(label as usize, class);
            let lum: Vec<f32> = img.data.chunks(3).map(|p| p.iter().map(|&v| v as f32).sum::<f32>()).collect();
            let mean = lum.iter().sum::<f32>() / lum.len() as f32;
            let above = lum.iter().filter(|&&l| l > mean).count();
            assert!((80..=944).contains(&above), "class {class}: {above}/1024 pixels above the mean");
        }
    }
}
