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
            let (_, runs) = selfsup::study::plan(&path, &[], None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(runs.len() >= 2, "{}: {} run(s)", path.display(), runs.len());
            n += 1;
        }
    }
    assert!(n >= 10, "only {n} shipped studies");
}

/// The names a config error lists after "expected" (`a, b or c`, `one of: a, b, c`, serde's
/// "one of `a`, `b`").
fn names_in_error(message: &str) -> Vec<String> {
    let after = message.rsplit("expected ").next().unwrap().lines().next().unwrap();
    let list = after.trim_start_matches("one of").trim_start_matches(':').trim().trim_end_matches(')');
    list.split(", ").flat_map(|part| part.split(" or ")).map(|name| name.trim().trim_matches('`').to_string()).collect()
}

/// For every key the page documents as a list of names (`a \| b \| c`): each listed name is
/// accepted, and an unknown name is refused by an error that names the key and lists exactly the
/// documented names — so the page, the parser and the error text agree.
#[test]
fn documented_names_are_exactly_the_accepted_ones() {
    let mut checked = 0;
    for (key, allowed, _) in selfsup::config::docs::FIELD_DOCS {
        if !allowed.contains("\\|") || *key == "train.device" {
            continue; // ranges and bools; the device list needs a GPU for `cuda`
        }
        let names: Vec<&str> = allowed.split(" \\| ").collect();
        for name in &names {
            let value = if *name == "empty" { "" } else { name };
            // Keys a name needs beside it: shuffling-BN's split norm is not involved here; the
            // method-specific sections are validated whatever the method.
            selfsup::config::load(None, &[format!("{key}=\"{value}\"")]).unwrap_or_else(|e| panic!("{key} = {name} (documented) refused: {e}"));
        }
        let err = selfsup::config::load(None, &[format!("{key}=\"no-such-name\"")]).expect_err(key).to_string();
        assert!(err.contains(key), "{key}: the error does not name the key: {err}");
        let mut listed = names_in_error(&err);
        let mut documented: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        listed.sort();
        documented.sort();
        assert_eq!(listed, documented, "{key}: error lists {listed:?}, page documents {documented:?}\n{err}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} keys with named values");
}
