//! Fuzzing (proptest) of everything that reads user input: the CIFAR binary reader, the IDX reader,
//! the image-folder scanner/decoder, the config parser, the data-spec parser and the encoder-file
//! readers (torchvision-named safetensors, Python's `torch.save` zip format). The property is
//! "no panic": any input gives `Ok` or a clean error. Whatever opens is pushed through the
//! augmentation pipeline, so a degenerate image that parses cannot crash training later.
//!
//! In CI each target runs one round of cases. For a long campaign:
//! `SELFSUP_FUZZ_SECS=600 cargo test --release --test fuzz_inputs -- --nocapture --test-threads 1`
//! runs rounds until the time is spent and prints the number of executions per target.
mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use selfsup::augment::{MultiView, Recipe, RecipeParams};
use selfsup::data::Dataset;
use std::time::{Duration, Instant};

/// Runs `test` on values of `strategy` in rounds of `cases` until `SELFSUP_FUZZ_SECS` elapse
/// (one round when unset); panics inside `test` fail the target with the shrunk input.
fn campaign<S: Strategy>(target: &str, cases: u32, strategy: S, test: impl Fn(S::Value) + Clone)
where
    S::Value: std::fmt::Debug,
{
    let budget = Duration::from_secs(std::env::var("SELFSUP_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(0));
    let start = Instant::now();
    let mut execs = 0u64;
    let mut round = 0u64;
    loop {
        let mut cfg = PtConfig::with_cases(cases);
        cfg.failure_persistence = None;
        cfg.rng_seed = proptest::test_runner::RngSeed::Fixed(0x5e1f_5u64.wrapping_add(round.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let mut runner = TestRunner::new(cfg);
        let t = test.clone();
        runner
            .run(&strategy, move |v| {
                t(v);
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        execs += cases as u64;
        round += 1;
        if start.elapsed() >= budget {
            break;
        }
    }
    eprintln!("fuzz {target}: {execs} executions in {:.1} s, no panic", start.elapsed().as_secs_f64());
}

/// Runs every view of a small recipe on the first images of an opened dataset.
fn exercise(ds: &Dataset) {
    let recipe = Recipe::named("byol", &RecipeParams { crop_size: 16, ..RecipeParams::default() }).unwrap();
    let mv = MultiView::new(&recipe);
    for i in 0..ds.len().min(2) {
        let img = match ds.image(i) {
            Ok(img) => img,
            Err(_) => continue,
        };
        let mut bufs: Vec<Vec<f32>> = mv.views.iter().map(|v| vec![0.0; v.output_len()]).collect();
        let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
        mv.apply(&img, 1, 0, i as u64, &mut outs);
    }
}

/// Bytes near the interesting sizes of a format, or anything.
fn bytes_around(unit: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (0usize..4, proptest::collection::vec(any::<u8>(), 0..8)).prop_map(move |(k, tail)| {
            let mut v: Vec<u8> = (0..k * unit).map(|i| (i * 37 % 251) as u8).collect();
            v.extend(tail);
            v
        }),
        proptest::collection::vec(any::<u8>(), unit - 2..unit + 2),
    ]
}

#[test]
fn fuzz_cifar_binary_reader() {
    campaign("cifar", 64, (bytes_around(3073), any::<bool>()), |(bytes, hundred)| {
        let dir = tempfile::tempdir().unwrap();
        let (spec, files): (String, &[&str]) = if hundred {
            (format!("cifar100:{}", dir.path().display()), &["train.bin", "test.bin"])
        } else {
            (format!("cifar10:{}", dir.path().display()), &["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"])
        };
        for f in files {
            std::fs::write(dir.path().join(f), &bytes).unwrap();
        }
        if let Ok(ds) = selfsup::data::open(&spec) {
            exercise(&ds);
        }
        let _ = selfsup::data::cifar::parse_records(dir.path(), &bytes, 2, 1, 100);
    });
}

/// An IDX file: a (possibly wrong) header followed by a payload of some length.
fn idx_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        (any::<u8>(), 0u8..6, proptest::collection::vec(0u32..6, 0..5), 0usize..300, any::<bool>()).prop_map(|(ty, nd, dims, extra, exact)| {
            let mut v = vec![0, 0, if ty % 4 == 0 { ty } else { 8 }, nd];
            for d in &dims {
                v.extend(d.to_be_bytes());
            }
            let need: usize = dims.iter().map(|&d| d as usize).product();
            let len = if exact { need } else { extra };
            v.extend((0..len).map(|i| i as u8));
            v
        }),
    ]
}

#[test]
fn fuzz_idx_reader() {
    campaign("idx", 64, (idx_bytes(), idx_bytes(), any::<bool>()), |(images, labels, gz)| {
        let _ = selfsup::data::idx::parse(&images);
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            if gz {
                use std::io::Write;
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(bytes).unwrap();
                std::fs::write(dir.path().join(format!("{name}.gz")), e.finish().unwrap()).unwrap();
            } else {
                std::fs::write(dir.path().join(name), bytes).unwrap();
            }
        };
        write("train-images-idx3-ubyte", &images);
        write("train-labels-idx1-ubyte", &labels);
        if let Ok(ds) = selfsup::data::open(&format!("idx:{}", dir.path().display())) {
            exercise(&ds);
        }
    });
}

/// A small tree: (subfolder or none, file name, content kind, bytes).
fn tree() -> impl Strategy<Value = Vec<(Option<String>, String, u8, Vec<u8>)>> {
    let name = prop_oneof![Just("a".to_string()), Just("b c".to_string()), Just(".hidden".to_string()), Just("ü".to_string()), "[a-z]{1,6}"];
    let ext = prop_oneof![Just(".jpg"), Just(".JPEG"), Just(".png"), Just(".txt"), Just("")];
    proptest::collection::vec((proptest::option::of(name.clone()), (name, ext).prop_map(|(n, e)| format!("{n}{e}")), 0u8..4, proptest::collection::vec(any::<u8>(), 0..200)), 0..6)
}

fn valid_png(seed: u8) -> Vec<u8> {
    let img = image::RgbImage::from_fn(3 + seed as u32 % 5, 2 + seed as u32 % 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 60, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn fuzz_image_folder_scanner() {
    campaign("folder", 48, tree(), |entries| {
        let dir = tempfile::tempdir().unwrap();
        for (sub, file, kind, bytes) in &entries {
            let parent = match sub {
                Some(s) => dir.path().join(s),
                None => dir.path().to_path_buf(),
            };
            if std::fs::create_dir_all(&parent).is_err() {
                continue; // a file already has this name
            }
            let content = match kind {
                0 => bytes.clone(),
                1 => valid_png(bytes.first().copied().unwrap_or(0)),
                2 => {
                    // a valid PNG with bytes flipped or cut
                    let mut v = valid_png(3);
                    for (i, b) in bytes.iter().enumerate().take(8) {
                        let at = (*b as usize * 7 + i * 13) % v.len();
                        v[at] ^= 0x5a;
                    }
                    v.truncate(v.len() - bytes.len().min(v.len() / 2));
                    v
                }
                _ => Vec::new(),
            };
            let path = parent.join(file);
            if !path.is_dir() {
                std::fs::write(path, content).unwrap();
            }
        }
        let _ = selfsup::data::folder::scan(dir.path());
        if let Ok(ds) = selfsup::data::open(&format!("folder:{}", dir.path().display())) {
            exercise(&ds);
        }
    });
}

/// A valid encoder file (a width-1 ResNet-18 under torchvision's names, `selfsup export`'s output)
/// with bytes overwritten, inserted or cut, read as `--checkpoint FILE.safetensors` and, where it
/// reads, loaded into a network.
#[test]
fn fuzz_encoder_file_reader() {
    let cfg = selfsup::config::load(None, &["model.width=1".into(), "projector.hidden=4".into(), "predictor.hidden=4".into(), "projector.out=4".into(), "predictor.out=4".into()]).unwrap();
    let method = selfsup::methods::build(&cfg, tch::Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.safetensors");
    tch::Tensor::write_safetensors(&selfsup::models::torchvision::to_torchvision(method.stores()[0].1), &valid).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    assert!(selfsup::models::torchvision::read(&valid).is_ok(), "the unmutated file reads");
    let file = dir.path().join("fuzz.safetensors");
    // half of the edits land in the 8-byte length and the JSON header that names every tensor
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>(), 0u8..3, any::<u8>()), 1..6);
    campaign("encoder-file", 64, edits, move |edits| {
        let mut b = bytes.clone();
        for (at, in_header, kind, byte) in edits {
            let i = at.index(if in_header { header.min(b.len()) } else { b.len() }.max(1));
            match kind {
                0 if !b.is_empty() => b[i] = byte,
                1 => b.insert(i.min(b.len()), byte),
                _ => b.truncate(i),
            }
        }
        std::fs::write(&file, &b).unwrap();
        if let Ok(r) = selfsup::models::torchvision::read(&file) {
            let mut c = cfg.clone();
            c.model = r.model.clone();
            if let Ok(m) = selfsup::methods::build(&c, tch::Device::Cpu) {
                let _ = r.load_into(m.stores()[0].1, &file);
                let _ = r.describe(&file);
            }
        }
    });
}

/// A `torch.save` file (a conv + BatchNorm state dict with a strided view, written by PyTorch)
/// whose pickle program gets bytes overwritten, inserted or cut — and sometimes a storage cut
/// short — then zipped again and read as `--checkpoint FILE.pth`.
#[test]
fn fuzz_torch_save_reader() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.pth");
    let script = "import sys, torch\nm = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2))\nsd = m.state_dict()\nsd['view'] = torch.arange(10.)[::3]\ntorch.save({'epoch': 1, 'state_dict': sd}, sys.argv[1])\n";
    let o = std::process::Command::new(common::python()).args(["-c", script, valid.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = selfsup::models::torch_file::read(&valid).unwrap();
    let view = read.iter().find(|(k, _)| k == "state_dict.view").expect("the view").1.shallow_clone();
    assert_eq!(Vec::<f32>::try_from(&view).unwrap(), [0.0, 3.0, 6.0, 9.0], "a strided view rebuilt from its storage");
    assert_eq!(read.len(), 8, "conv weight and bias, BatchNorm's five tensors, the view");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&valid).unwrap()).unwrap();
    let entries: Vec<(String, Vec<u8>)> = (0..archive.len())
        .map(|i| {
            let mut f = archive.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().to_string(), b)
        })
        .collect();
    let file = dir.path().join("fuzz.pth");
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6);
    campaign("torch-save", 64, (edits, any::<bool>()), move |(edits, cut_storage)| {
        let mut zw = zip::ZipWriter::new(std::fs::File::create(&file).unwrap());
        let stored = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in &entries {
            let mut b = bytes.clone();
            if name.ends_with("data.pkl") {
                for (at, kind, byte) in &edits {
                    let i = at.index(b.len().max(1));
                    match kind {
                        0 if !b.is_empty() => b[i] = *byte,
                        1 => b.insert(i.min(b.len()), *byte),
                        _ => b.truncate(i),
                    }
                }
            } else if cut_storage && name.ends_with("data/0") {
                b.truncate(b.len() / 2);
            }
            zw.start_file(name.as_str(), stored).unwrap();
            zw.write_all(&b).unwrap();
        }
        zw.finish().unwrap();
        if let Ok(tensors) = selfsup::models::torch_file::read(&file) {
            for (_, t) in tensors {
                let _ = t.numel();
            }
        }
    });
}

/// TOML-ish text: real keys with random values, or random text.
fn config_text() -> impl Strategy<Value = String> {
    let keys = selfsup::config::overrides::leaf_keys();
    let key = proptest::sample::select(keys);
    let value = prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("true".to_string()),
        "\"[a-z0-9:@?=&/._-]{0,12}\"",
        Just("[1, 2]".to_string()),
        Just("{ a = 1 }".to_string()),
        "[ -~]{0,10}",
    ];
    prop_oneof![
        proptest::collection::vec((key, value), 0..6).prop_map(|kv| kv.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join("\n")),
        "[ -~\n]{0,80}",
    ]
}

#[test]
fn fuzz_config_and_data_spec_parsers() {
    campaign("config", 128, (config_text(), "[ -~]{0,40}"), |(text, spec)| {
        // as `--set` lines and as a file body
        let sets: Vec<String> = text.lines().map(String::from).collect();
        let _ = selfsup::config::load(None, &sets);
        if let Ok(table) = selfsup::config::overrides::parse_overrides(&text, "fuzz.toml") {
            let _ = selfsup::config::overrides::from_table(table);
        }
        let _ = selfsup::data::spec::DataSpec::parse(&spec);
        let _ = selfsup::data::spec::DataSpec::parse(&format!("synthetic:{spec}"));
    });
}

/// Found by the config target (a 10-minute campaign): `data.small_crops` = 5349211447460218312 made
/// the recipe allocate that many views and abort. Sizes that allocate are now bounded.
#[test]
fn regression_huge_sizes_are_config_errors_not_aborts() {
    for (key, value) in [("data.small_crops", "5349211447460218312"), ("projector.hidden", "4000000000000"), ("mocov2.queue_size", "99999999999"), ("train.batch", "9223372036854775807"), ("data.crop_size", "100000")] {
        let e = selfsup::config::load(None, &[format!("{key}={value}")]).expect_err(key).to_string();
        assert!(e.contains(key), "{e}");
    }
}
