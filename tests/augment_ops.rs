//! Augmentation ops against independent references: torchvision's functional ops (run in the
//! project venv on the same fixed image), analytic values and distribution checks.
mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use selfsup::augment::ops::{self, CropBox};
use selfsup::augment::recipe::{Recipe, RecipeParams};
use selfsup::augment::MultiView;
use selfsup::data::Image;

fn fixed_image(h: usize, w: usize, seed: u64) -> (Image, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let data: Vec<u8> = (0..h * w * 3).map(|_| rng.gen()).collect();
    let img = Image::new(w, h, 3, data);
    let planar = ops::Planar::from_image(&img).data;
    (img, planar)
}

fn max_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}

#[test]
fn ops_match_torchvision_on_a_fixed_image() {
    let (h, w) = (13usize, 17usize);
    let (img, planar) = fixed_image(h, w, 7);
    let (brightness, contrast, saturation, hue, threshold, kernel, sigma) = (1.3f32, 0.6f32, 1.7f32, 0.23f32, 0.5f32, 5usize, 1.1f32);
    let crop = (2usize, 3usize, 9usize, 12usize, 7usize);
    let input = serde_json::json!({
        "height": h, "width": w, "planar": planar, "u8": img.data,
        "brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue,
        "threshold": threshold, "kernel": kernel, "sigma": sigma,
        "crop": [crop.0, crop.1, crop.2, crop.3, crop.4],
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.json");
    std::fs::write(&path, input.to_string()).unwrap();
    let out = std::process::Command::new(common::python()).arg(common::root().join("tests/reference/augment_ref.py")).arg(&path).output().unwrap();
    assert!(out.status.success(), "python reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let get = |k: &str| -> Vec<f64> { reference[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };

    let check = |name: &str, ours: Vec<f32>, tol: f64| {
        let d = max_diff(&ours, &get(name));
        assert!(d < tol, "{name}: max |ours - torchvision| = {d}");
    };
    let apply = |f: &dyn Fn(&mut [f32])| {
        let mut x = planar.clone();
        f(&mut x);
        x
    };
    check("brightness", apply(&|x| ops::adjust_brightness(x, brightness)), 1e-6);
    // float32 rounding of the mean (torchvision accumulates in float32)
    check("contrast", apply(&|x| ops::adjust_contrast(x, contrast)), 5e-5);
    check("saturation", apply(&|x| ops::adjust_saturation(x, saturation)), 1e-5);
    check("hue", apply(&|x| ops::adjust_hue(x, hue)), 1e-5);
    check("grayscale", apply(&|x| ops::grayscale(x)), 1e-6);
    check("solarize", apply(&|x| ops::solarize(x, threshold)), 1e-7);
    check("blur", apply(&|x| ops::gaussian_blur(x, h, w, kernel, sigma)), 1e-5);
    check("hflip", apply(&|x| ops::hflip(x, h, w)), 0.0 + 1e-12);
    let mut rc = vec![0.0f32; 3 * crop.4 * crop.4];
    ops::resized_crop(&img, CropBox { top: crop.0, left: crop.1, height: crop.2, width: crop.3 }, crop.4, crop.4, &mut rc);
    check("resized_crop", rc, 2e-3);
}

#[test]
fn grayscale_uses_torchvisions_itu_r_601_weights() {
    let mut x = vec![1.0, 0.0, 0.0, /* G */ 0.0, 1.0, 0.0, /* B */ 0.0, 0.0, 1.0];
    ops::grayscale(&mut x);
    for (i, expect) in [0.2989f32, 0.587, 0.114].iter().enumerate() {
        for c in 0..3 {
            assert!((x[c * 3 + i] - expect).abs() < 1e-7);
        }
    }
}

#[test]
fn solarize_inverts_at_and_above_the_threshold_only() {
    let mut x = vec![0.0, 0.49, 0.5, 0.51, 1.0, 0.2];
    ops::solarize(&mut x, 0.5);
    assert_eq!(x, vec![0.0, 0.49, 0.5, 1.0 - 0.51, 0.0, 0.2]);
}

#[test]
fn flipping_twice_is_the_identity_and_once_mirrors() {
    let (_, planar) = fixed_image(5, 8, 3);
    let mut x = planar.clone();
    ops::hflip(&mut x, 5, 8);
    assert_eq!(x[0], planar[7]);
    assert_ne!(x, planar);
    ops::hflip(&mut x, 5, 8);
    assert_eq!(x, planar);
}

#[test]
fn hue_rotation_by_a_third_maps_red_to_green() {
    let mut x = vec![1.0f32, 0.0, 0.0];
    ops::adjust_hue(&mut x, 1.0 / 3.0);
    assert!((x[0] - 0.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6 && x[2].abs() < 1e-6, "{x:?}");
}

#[test]
fn gaussian_kernel_is_normalised_symmetric_and_gaussian() {
    let k = ops::gaussian_kernel(7, 1.5);
    assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    for i in 0..3 {
        assert!((k[i] - k[6 - i]).abs() < 1e-9);
        let ratio = k[i] / k[3];
        let expect = (-((3 - i) as f32).powi(2) / (2.0 * 1.5 * 1.5)).exp();
        assert!((ratio - expect).abs() < 1e-6);
    }
    assert_eq!(ops::blur_kernel_size(224), 23);
}

#[test]
fn resize_of_the_full_image_at_the_same_size_is_exact() {
    let (img, planar) = fixed_image(9, 9, 5);
    let mut out = vec![0.0f32; 3 * 81];
    ops::resized_crop(&img, CropBox { top: 0, left: 0, height: 9, width: 9 }, 9, 9, &mut out);
    assert!(max_diff(&out, &planar.iter().map(|v| *v as f64).collect::<Vec<_>>()) < 1e-6);
}

#[test]
fn crop_boxes_stay_inside_and_follow_the_requested_distribution() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let (h, w) = (480usize, 640usize);
    // scale range small enough that no draw is rejected: the accepted distribution is the
    // requested one (area ~ U(0.08, 0.4), log-ratio ~ U(ln 3/4, ln 4/3))
    let n = 20000;
    let (mut sum_area, mut sum_logr) = (0.0f64, 0.0f64);
    for _ in 0..n {
        let b = ops::random_resized_crop_box(&mut rng, h, w, [0.08, 0.4], [0.75, 4.0 / 3.0]);
        assert!(b.top + b.height <= h && b.left + b.width <= w && b.height > 0 && b.width > 0, "{b:?}");
        let area = (b.height * b.width) as f64 / (h * w) as f64;
        let ratio = b.width as f64 / b.height as f64;
        assert!(area > 0.079 && area < 0.401, "area {area}");
        assert!(ratio > 0.74 && ratio < 1.35, "ratio {ratio}");
        sum_area += area;
        sum_logr += ratio.ln();
    }
    assert!((sum_area / n as f64 - 0.24).abs() < 0.005, "mean area {}", sum_area / n as f64);
    assert!((sum_logr / n as f64).abs() < 0.005, "mean log-ratio {}", sum_logr / n as f64);
    // impossible ratios fall back to the centre crop with the ratio clamped
    let b = ops::random_resized_crop_box(&mut rng, 10, 100, [0.99, 1.0], [0.75, 1.3333]);
    assert_eq!((b.height, b.width), (10, 13));
    assert_eq!(b.left, (100 - 13) / 2);
}

#[test]
fn views_depend_only_on_seed_epoch_index_and_view() {
    let (img, _) = fixed_image(32, 32, 9);
    let recipe = Recipe::named("byol", &RecipeParams { crop_size: 32, ..Default::default() }).unwrap();
    let mv = MultiView::new(&recipe);
    let run = |seed, epoch, index| {
        let mut a = vec![0.0f32; 3 * 1024];
        let mut b = vec![0.0f32; 3 * 1024];
        mv.apply(&img, seed, epoch, index, &mut [&mut a, &mut b]);
        (a, b)
    };
    let (a1, b1) = run(1, 2, 3);
    let (a2, b2) = run(1, 2, 3);
    assert_eq!((a1.clone(), b1.clone()), (a2, b2));
    assert_ne!(a1, b1, "the two views differ");
    assert_ne!(run(1, 3, 3).0, a1, "another epoch gives another view");
    assert_ne!(run(2, 2, 3).0, a1, "another seed gives another view");
}

#[test]
fn invalid_recipe_values_are_rejected_naming_the_field() {
    let mut r = Recipe::named("byol", &RecipeParams::default()).unwrap();
    r.views[1].solarize_p = 1.5;
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("data.view2.solarize_p") && e.contains("1.5"), "{e}");
    let mut r = Recipe::named("simclr", &RecipeParams::default()).unwrap();
    r.views[0].crop_scale = [0.9, 0.2];
    let e = r.validate().unwrap_err().to_string();
    assert!(e.contains("data.view1.crop_scale"), "{e}");
    assert!(Recipe::named("nope", &RecipeParams::default()).unwrap_err().to_string().contains("unknown recipe"));
}

#[test]
fn recipes_encode_the_papers_asymmetry_and_multicrop() {
    let r = Recipe::named("byol", &RecipeParams { small_crops: 4, small_crop_size: 96, ..Default::default() }).unwrap();
    assert_eq!((r.views[0].blur_p, r.views[1].blur_p), (1.0, 0.1));
    assert_eq!((r.views[0].solarize_p, r.views[1].solarize_p), (0.0, 0.2));
    assert_eq!(r.views.len(), 6);
    assert_eq!(r.views[5].crop_size, 96);
    let c = Recipe::named("byol-cifar", &RecipeParams::default()).unwrap();
    assert_eq!((c.views[0].crop_size, c.views[0].blur_p), (32, 0.0));
}
