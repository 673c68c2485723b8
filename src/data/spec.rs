//! Parsing `--data SPEC` strings: `KIND[:PATH][@SPLIT][?key=value&...]`.
use crate::data::{cifar, folder, idx, synthetic, Dataset};
use crate::error::Error;
use std::path::PathBuf;

/// Where Debian's `dataset-fashion-mnist` package puts the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Folder(PathBuf),
    Cifar10(PathBuf),
    Cifar100(PathBuf),
    Idx(PathBuf),
    Synthetic(usize),
}

/// A parsed dataset spec.
#[derive(Clone, Debug, PartialEq)]
pub struct DataSpec {
    pub kind: Kind,
    /// `None` when the spec gave no `@split`: folders are then read as given, the others use train.
    pub split: Option<Split>,
    /// `per_class=N`: keep the first N images of each class (in file/record order).
    pub per_class: Option<usize>,
    /// `limit=N`: keep the first N images.
    pub limit: Option<usize>,
    /// `label=coarse|fine` for CIFAR-100 (default fine).
    pub coarse_labels: bool,
}

const KINDS: &str = "folder:PATH, cifar10:PATH, cifar100:PATH, idx:PATH, fashion-mnist, synthetic[:N]";

impl DataSpec {
    pub fn parse(spec: &str) -> Result<DataSpec, Error> {
        let bad = |msg: String| Error::usage(format!("data spec `{spec}`: {msg}"));
        let (rest, options) = match spec.split_once('?') {
            Some((r, o)) => (r, Some(o)),
            None => (spec, None),
        };
        let (rest, split) = match rest.rsplit_once('@') {
            Some((r, s)) => {
                let split = match s {
                    "train" => Split::Train,
                    "test" => Split::Test,
                    other => {
                        // a folder's other subfolders (ImageNet's val/) are read by their path
                        let hint = match r.strip_prefix("folder:") {
                            Some(path) => format!("; for another subfolder give its path, as `folder:{}/{other}`", path.trim_end_matches('/')),
                            None => String::new(),
                        };
                        return Err(bad(format!("unknown split `@{other}` (expected @train or @test{hint})")));
                    }
                };
                (r, Some(split))
            }
            None => (rest, None),
        };
        let (kind, arg) = match rest.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (rest, None),
        };
        let need_path = |arg: Option<&str>| -> Result<PathBuf, Error> {
            match arg {
                Some(a) if !a.is_empty() => Ok(PathBuf::from(a)),
                _ => Err(bad(format!("`{kind}` needs a path, as `{kind}:PATH`"))),
            }
        };
        let kind = match kind {
            "folder" => Kind::Folder(need_path(arg)?),
            "cifar10" => Kind::Cifar10(need_path(arg)?),
            "cifar100" => Kind::Cifar100(need_path(arg)?),
            "idx" => Kind::Idx(need_path(arg)?),
            "fashion-mnist" => Kind::Idx(arg.filter(|a| !a.is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(FASHION_MNIST_DIR))),
            "synthetic" => {
                let n = match arg {
                    None | Some("") => synthetic::DEFAULT_COUNT,
                    Some(a) => a.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| bad(format!("synthetic size `{a}` is not a positive integer")))?,
                };
                Kind::Synthetic(n)
            }
            other => return Err(bad(format!("unknown kind `{other}` (expected one of: {KINDS})"))),
        };
        let mut out = DataSpec { kind, split, per_class: None, limit: None, coarse_labels: false };
        for kv in options.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(format!("option `{kv}` is not key=value")))?;
            let count = || v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| bad(format!("option `{k}` = `{v}` is not a positive integer")));
            match k {
                "per_class" => out.per_class = Some(count()?),
                "limit" => out.limit = Some(count()?),
                "label" => {
                    out.coarse_labels = match v {
                        "coarse" => true,
                        "fine" => false,
                        _ => return Err(bad(format!("option `label` = `{v}` (expected coarse or fine)"))),
                    }
                }
                _ => return Err(bad(format!("unknown option `{k}` (expected per_class, limit or label)"))),
            }
        }
        Ok(out)
    }

    pub fn split_or_train(&self) -> Split {
        self.split.unwrap_or(Split::Train)
    }

    /// Reads the dataset (decoding into memory where it fits).
    pub fn open(&self) -> anyhow::Result<Dataset> {
        let ds = match &self.kind {
            Kind::Folder(p) => {
                let dir = match self.split {
                    Some(s) => p.join(s.name()),
                    None => p.clone(),
                };
                folder::open(&dir)?
            }
            Kind::Cifar10(p) => cifar::open_cifar10(p, self.split_or_train())?,
            Kind::Cifar100(p) => cifar::open_cifar100(p, self.split_or_train(), self.coarse_labels)?,
            Kind::Idx(p) => idx::open(p, self.split_or_train())?,
            Kind::Synthetic(n) => synthetic::generate(*n, self.split_or_train()),
        };
        Ok(ds.subset(self.per_class, self.limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kinds_splits_and_options() {
        let s = DataSpec::parse("folder:/x/y@test?per_class=10").unwrap();
        assert_eq!(s.kind, Kind::Folder("/x/y".into()));
        assert_eq!(s.split, Some(Split::Test));
        assert_eq!(s.per_class, Some(10));
        assert_eq!(DataSpec::parse("synthetic").unwrap().kind, Kind::Synthetic(synthetic::DEFAULT_COUNT));
        assert_eq!(DataSpec::parse("synthetic:300@test").unwrap().kind, Kind::Synthetic(300));
        assert_eq!(DataSpec::parse("fashion-mnist@test").unwrap().kind, Kind::Idx(FASHION_MNIST_DIR.into()));
        assert!(DataSpec::parse("cifar100:/d?label=coarse").unwrap().coarse_labels);
    }

    #[test]
    fn rejects_bad_specs_with_a_clear_message() {
        for (spec, needle) in [
            ("nope:/x", "unknown kind `nope`"),
            ("folder", "needs a path"),
            ("synthetic:-3", "not a positive integer"),
            ("cifar10:/x@val", "unknown split `@val` (expected @train or @test)"),
            ("folder:/data/imagenet/@val", "for another subfolder give its path, as `folder:/data/imagenet/val`"),
            ("folder:/x?per_class=0", "per_class"),
            ("folder:/x?color=1", "unknown option `color`"),
        ] {
            let err = DataSpec::parse(spec).unwrap_err().to_string();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }
}
