//! A procedurally generated, class-structured image set: ten shape classes drawn with random
//! colour, position, scale and rotation over a random flat, noisy background. Made
//! deterministically in code (no files), so the first command of the README runs anywhere.
//! The class is the shape only: colour and background are nuisance factors that augmentation
//! invariances should learn to ignore. The background carries no per-image pattern (stripes were
//! tried: two crops of one image share them, so BYOL matched stripes instead of shapes).
use crate::data::dataset::Items;
use crate::data::{Dataset, Image, Split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub const DEFAULT_COUNT: usize = 4000;
pub const SIZE: usize = 32;
pub const CLASSES: [&str; 10] = ["disc", "square", "triangle", "cross", "ring", "diamond", "bar", "star", "half-disc", "two-dots"];

/// Is the point (u, v), in the shape's unit frame, inside shape `class`?
fn inside(class: usize, u: f32, v: f32) -> bool {
    let r = (u * u + v * v).sqrt();
    match class {
        0 => r < 1.0,
        1 => u.abs().max(v.abs()) < 0.8,
        2 => v > -0.5 && v < 1.0 - 1.732 * u.abs() * 0.866,
        3 => (u.abs() < 0.3 && v.abs() < 1.0) || (v.abs() < 0.3 && u.abs() < 1.0),
        4 => r < 1.0 && r > 0.55,
        5 => u.abs() + v.abs() < 1.0,
        6 => u.abs() < 1.0 && v.abs() < 0.33,
        7 => r < 0.45 + 0.5 * (0.5 + 0.5 * (5.0 * v.atan2(u)).cos()).powf(2.0),
        8 => r < 1.0 && v > 0.0,
        9 => ((u - 0.55).powi(2) + v * v).sqrt() < 0.42 || ((u + 0.55).powi(2) + v * v).sqrt() < 0.42,
        _ => false,
    }
}

fn random_colour(rng: &mut ChaCha8Rng) -> [f32; 3] {
    [rng.gen::<f32>(), rng.gen::<f32>(), rng.gen::<f32>()]
}

/// Renders sample `index` of a split. Pure function of (split, index).
pub fn render(split: Split, index: usize) -> (Image, u32) {
    let base: u64 = if split == Split::Train { 0x5e1f_0001 } else { 0x5e1f_7e57 };
    let mut rng = ChaCha8Rng::seed_from_u64(base.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let class = index % CLASSES.len();
    let bg = random_colour(&mut rng);
    let mut fg = random_colour(&mut rng);
    // keep the shape visible: push the foreground away from the background if they are close
    let dist: f32 = (0..3).map(|c| (fg[c] - bg[c]).abs()).sum();
    if dist < 0.6 {
        for c in 0..3 {
            fg[c] = if bg[c] > 0.5 { bg[c] - 0.5 } else { bg[c] + 0.5 };
        }
    }
    let scale: f32 = rng.gen_range(8.0..13.0);
    let margin = (scale * 0.8).min(SIZE as f32 / 2.0 - 1.0);
    let cx: f32 = rng.gen_range(margin..SIZE as f32 - margin);
    let cy: f32 = rng.gen_range(margin..SIZE as f32 - margin);
    let theta: f32 = rng.gen_range(0.0..2.0 * std::f32::consts::PI);
    let (s, c) = theta.sin_cos();
    let mut data = vec![0u8; SIZE * SIZE * 3];
    for y in 0..SIZE {
        for x in 0..SIZE {
            // 2x2 supersampling for anti-aliased edges
            let mut cover = 0.0f32;
            for (dy, dx) in [(0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)] {
                let px = (x as f32 + dx - cx) / scale;
                let py = (y as f32 + dy - cy) / scale;
                let u = c * px + s * py;
                let v = -s * px + c * py;
                if inside(class, u, v) {
                    cover += 0.25;
                }
            }
            let noise: f32 = rng.gen_range(-0.06..0.06);
            for ch in 0..3 {
                let back = (bg[ch] + noise).clamp(0.0, 1.0);
                let val = cover * fg[ch] + (1.0 - cover) * back;
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
    fn every_shape_covers_a_sensible_area() {
        // each class's unit shape must cover between 10% and 90% of the [-1,1]^2 square
        for class in 0..10 {
            let mut n = 0;
            for i in 0..100 {
                for j in 0..100 {
                    if inside(class, -1.0 + 0.02 * i as f32, -1.0 + 0.02 * j as f32) {
                        n += 1;
                    }
                }
            }
            assert!((1000..9000).contains(&n), "class {class} covers {n}/10000");
        }
    }
}
