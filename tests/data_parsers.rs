//! Dataset parsers on real data (CIFAR-10 JPEG tree, Debian's Fashion-MNIST) and on files written
//! from known bytes, plus the errors bad input must give.
mod common;

use selfsup::data::{self, Image};
use std::io::Write;

fn write(path: &std::path::Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn cifar_record(label: u8, fill: impl Fn(usize, usize) -> u8, coarse: Option<u8>) -> Vec<u8> {
    let mut v = Vec::new();
    if let Some(c) = coarse {
        v.push(c);
    }
    v.push(label);
    for c in 0..3 {
        for i in 0..1024 {
            v.push(fill(c, i));
        }
    }
    v
}

#[test]
fn cifar10_binary_layout_from_known_bytes() {
    let dir = tempfile::tempdir().unwrap();
    for b in 1..=5 {
        let mut bytes = Vec::new();
        for r in 0..3u8 {
            bytes.extend(cifar_record((b as u8 + r) % 10, |c, i| (c * 80 + i % 7 + r as usize) as u8, None));
        }
        write(&dir.path().join(format!("data_batch_{b}.bin")), &bytes);
    }
    write(&dir.path().join("test_batch.bin"), &cifar_record(9, |c, i| (c * 100 + i / 32) as u8, None));
    let train = data::open(&format!("cifar10:{}", dir.path().display())).unwrap();
    assert_eq!(train.len(), 15);
    assert_eq!(train.labels.as_ref().unwrap()[..3], [1, 2, 3]);
    let test = data::open(&format!("cifar10:{}@test", dir.path().display())).unwrap();
    assert_eq!(test.len(), 1);
    let img = test.image(0).unwrap();
    assert_eq!((img.width, img.height, img.channels), (32, 32, 3));
    // planar R,G,B of pixel (y=5, x=3) become interleaved
    assert_eq!(img.at(5, 3, 0), 5);
    assert_eq!(img.at(5, 3, 1), 105);
    assert_eq!(img.at(5, 3, 2), 205);
    assert_eq!(test.classes[9], "truck");
}

#[test]
fn cifar100_coarse_and_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("cifar-100-binary");
    std::fs::create_dir(&sub).unwrap();
    let mut bytes = cifar_record(42, |_, _| 0, Some(7));
    bytes.extend(cifar_record(99, |_, _| 1, Some(19)));
    write(&sub.join("train.bin"), &bytes);
    let fine = data::open(&format!("cifar100:{}", dir.path().display())).unwrap();
    assert_eq!(fine.labels.as_ref().unwrap(), &vec![42, 99]);
    assert_eq!(fine.num_classes(), 100);
    let coarse = data::open(&format!("cifar100:{}?label=coarse", dir.path().display())).unwrap();
    assert_eq!(coarse.labels.as_ref().unwrap(), &vec![7, 19]);
    assert_eq!(coarse.num_classes(), 20);
}

#[test]
fn cifar_bin_with_a_partial_record_names_the_file_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = cifar_record(1, |_, _| 0, None);
    bytes.extend_from_slice(&[0u8; 100]);
    write(&dir.path().join("test_batch.bin"), &bytes);
    let e = format!("{:#}", data::open(&format!("cifar10:{}@test", dir.path().display())).unwrap_err());
    assert!(e.contains("test_batch.bin") && e.contains("not a whole number of 3073-byte records") && e.contains("1 whole records + 100 bytes"), "{e}");
    let mut bad_label = cifar_record(1, |_, _| 0, None);
    bad_label.extend(cifar_record(12, |_, _| 0, None));
    write(&dir.path().join("test_batch.bin"), &bad_label);
    let e = format!("{:#}", data::open(&format!("cifar10:{}@test", dir.path().display())).unwrap_err());
    assert!(e.contains("record 1") && e.contains("offset 3073") && e.contains("label 12"), "{e}");
}

fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(payload);
    v
}

#[test]
fn idx_plain_and_gzip_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..2 * 4 * 3).map(|i| i as u8).collect();
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_bytes(&[2, 4, 3], &pixels));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx_bytes(&[2], &[3, 8])).unwrap();
    write(&dir.path().join("train-labels-idx1-ubyte.gz"), &gz.finish().unwrap());
    let ds = data::open(&format!("idx:{}", dir.path().display())).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.labels.as_ref().unwrap(), &vec![3, 8]);
    let img = ds.image(1).unwrap();
    assert_eq!((img.height, img.width, img.channels), (4, 3, 1));
    assert_eq!(img.at(0, 0, 0), 12);
    assert_eq!(img.at(3, 2, 2), 23);

    write(&dir.path().join("train-images-idx3-ubyte"), &idx_bytes(&[2, 4, 3], &pixels[..20]));
    let e = format!("{:#}", data::open(&format!("idx:{}", dir.path().display())).unwrap_err());
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("payload is 20 bytes at offset 16") && e.contains("need 24"), "{e}");
    write(&dir.path().join("train-images-idx3-ubyte"), b"\x12\x34\x08\x03");
    let e = format!("{:#}", data::open(&format!("idx:{}", dir.path().display())).unwrap_err());
    assert!(e.contains("bad magic"), "{e}");
    // zero-sized images parse as IDX but cannot train: a clear error, not a crash later
    write(&dir.path().join("train-images-idx3-ubyte"), &idx_bytes(&[2, 0, 3], &[]));
    let e = format!("{:#}", data::open(&format!("idx:{}", dir.path().display())).unwrap_err());
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("empty images"), "{e}");
}

#[test]
fn fashion_mnist_from_the_debian_package() {
    let train = data::open("fashion-mnist").expect("apt-get install dataset-fashion-mnist");
    assert_eq!(train.len(), 60_000);
    let test = data::open("fashion-mnist@test").unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.num_classes(), 10);
    let counts = (0..10).map(|c| test.labels.as_ref().unwrap().iter().filter(|&&l| l == c).count()).collect::<Vec<_>>();
    assert!(counts.iter().all(|&n| n == 1000), "{counts:?}");
    let img = test.image(0).unwrap();
    assert_eq!((img.height, img.width, img.channels), (28, 28, 1));
    let stats = data::stats::compute(&train, 60_000).unwrap();
    // the published Fashion-MNIST training mean/std: 0.2860 / 0.3530
    assert!((stats.mean[0] - 0.2860).abs() < 0.001 && (stats.std[0] - 0.3530).abs() < 0.001, "{:?} {:?}", stats.mean, stats.std);
}

#[test]
fn cifar10_jpeg_tree_is_read_with_sorted_class_labels() {
    let ds = data::open(&format!("folder:{}@test", common::cifar_tree().display())).unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.classes, vec!["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]);
    assert_eq!(ds.labels.as_ref().unwrap()[999], 0);
    assert_eq!(ds.labels.as_ref().unwrap()[1000], 1);
    let img = ds.image(0).unwrap();
    assert_eq!((img.height, img.width, img.channels), (32, 32, 3));
    let sub = data::open(&common::cifar_spec("train", 30)).unwrap();
    assert_eq!(sub.len(), 300);
    // per_class keeps file order: the first file of class 3 is cat/0000.jpg
    let direct = Image::decode_file(&common::cifar_tree().join("train/cat/0000.jpg")).unwrap();
    assert_eq!(*sub.image(90).unwrap(), direct);
}

#[test]
fn flat_folders_are_unlabelled_and_bad_folders_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::cifar_tree().join("test/ship");
    for f in ["0000.jpg", "0001.jpg"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    // a grey PNG of another size
    Image::new(7, 5, 1, vec![9; 35]).save_png(&dir.path().join("grey.png")).unwrap();
    let ds = data::open(&format!("folder:{}", dir.path().display())).unwrap();
    assert_eq!(ds.len(), 3);
    assert!(!ds.is_labelled());
    let grey = ds.image(2).unwrap();
    assert_eq!((grey.width, grey.height, grey.channels), (7, 5, 1));

    let empty = tempfile::tempdir().unwrap();
    let e = format!("{:#}", data::open(&format!("folder:{}", empty.path().display())).unwrap_err());
    assert!(e.contains(&empty.path().display().to_string()) && e.contains("no .jpg"), "{e}");
    let e = format!("{:#}", data::open("folder:/definitely/not/here").unwrap_err());
    assert!(e.contains("/definitely/not/here: no such folder"), "{e}");

    std::fs::write(dir.path().join("broken.jpg"), b"\xff\xd8\xff\xe0 this is not a jpeg").unwrap();
    let e = format!("{:#}", data::open(&format!("folder:{}", dir.path().display())).unwrap_err());
    assert!(e.contains("broken.jpg") && e.contains("cannot decode"), "{e}");
    // a truncated real JPEG
    let good = std::fs::read(src.join("0002.jpg")).unwrap();
    std::fs::write(dir.path().join("broken.jpg"), &good[..good.len() / 3]).unwrap();
    let e = format!("{:#}", data::open(&format!("folder:{}", dir.path().display())).unwrap_err());
    assert!(e.contains("broken.jpg"), "{e}");
}
