//! docs/config.md is generated from the schema: every key documented, the committed page current.
mod common;

#[test]
fn every_config_key_is_documented_and_the_page_is_current() {
    let (missing, stale) = selfsup::config::docs::undocumented();
    assert!(missing.is_empty(), "keys without documentation: {missing:?}");
    assert!(stale.is_empty(), "documented keys not in the schema: {stale:?}");
    let page = std::fs::read_to_string(common::root().join("docs/config.md")).expect("docs/config.md");
    assert!(page == selfsup::config::docs::render(), "docs/config.md is stale: run `make docs`");
}

#[test]
fn shipped_configs_load_and_validate() {
    let mut n = 0;
    for dir in ["configs", "configs/presets"] {
        for entry in std::fs::read_dir(common::root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().map(|e| e == "toml").unwrap_or(false) {
                selfsup::config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
    }
    // two CPU references per method family plus a CIFAR and an ImageNet preset per method
    assert!(n >= 6 + 12, "only {n} shipped configs");
}

/// Every study file under `studies/` resolves: each run's config (base, study-wide and run
/// overrides, seed) loads and validates, and the run names are distinct.
#[test]
fn shipped_studies_plan() {
    let mut n = 0;
    for entry in std::fs::read_dir(common::root().join("studies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().map(|e| e == "toml").unwrap_or(false) {
            let (_, runs) = selfsup::study::plan(&path, &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(runs.len() >= 2, "{}: {} run(s)", path.display(), runs.len());
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} shipped studies");
}
