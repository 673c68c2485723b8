//! Loading a config: defaults ← TOML file ← `--set key=value` overrides, with unknown keys
//! rejected (naming the closest valid key) and every value validated.
use crate::config::Config;
use crate::error::Error;
use std::path::Path;
use toml::{Table, Value};

fn defaults_table() -> Table {
    match Value::try_from(Config::default()).expect("defaults serialise") {
        Value::Table(t) => t,
        _ => unreachable!("a struct serialises to a table"),
    }
}

/// Every leaf key of the schema, dotted (`byol.tau_base`).
pub fn leaf_keys() -> Vec<String> {
    leaf_values(&defaults_table()).into_iter().map(|(k, _)| k).collect()
}

/// Every leaf of a config table with its dotted key (`("byol.tau_base", 0.99)`), in the table's
/// order.
pub fn leaf_values(table: &Table) -> Vec<(String, Value)> {
    fn walk(prefix: &str, t: &Table, out: &mut Vec<(String, Value)>) {
        for (k, v) in t {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                Value::Table(sub) => walk(&key, sub, out),
                _ => out.push((key, v.clone())),
            }
        }
    }
    let mut out = Vec::new();
    walk("", table, &mut out);
    out
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != *cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key(key: &str, origin: &str) -> Error {
    let keys = leaf_keys();
    let best = keys.iter().min_by_key(|k| levenshtein(k, key)).cloned().unwrap_or_default();
    let hint = if levenshtein(&best, key) <= 3 + key.len() / 4 { format!(" (did you mean `{best}`?)") } else { String::new() };
    Error::usage(format!("{origin}: unknown config key `{key}`{hint}; `selfsup config docs` lists every key"))
}

/// Looks up the default value at a dotted key.
fn default_at<'a>(defaults: &'a Table, key: &str) -> Option<&'a Value> {
    let mut cur = defaults;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, p) in parts.iter().enumerate() {
        let v = cur.get(*p)?;
        if i + 1 == parts.len() {
            return Some(v);
        }
        cur = v.as_table()?;
    }
    None
}

/// Converts `v` to the type of `like` where that is lossless (int → float, scalar → string).
fn coerce(v: Value, like: &Value) -> Value {
    match (like, v) {
        (Value::Float(_), Value::Integer(i)) => Value::Float(i as f64),
        (Value::String(_), Value::Integer(i)) => Value::String(i.to_string()),
        (Value::String(_), Value::Float(f)) => Value::String(f.to_string()),
        (Value::String(_), Value::Boolean(b)) => Value::String(b.to_string()),
        (_, v) => v,
    }
}

/// Checks that `value` has the type the schema gives `key` (an integer for `train.epochs`, a
/// string for `data.train`, ...), so a wrong type is reported with the file or `--set` it came
/// from rather than later, when the merged table is read.
fn check_type(key: &str, value: &Value, origin: &str) -> Result<(), Error> {
    let mut table = Table::new();
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = &mut table;
    for p in &parts[..parts.len() - 1] {
        cur = cur.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new())).as_table_mut().expect("section");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value.clone());
    match Value::Table(table).try_into::<Config>() {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim();
            Err(Error::usage(format!("{origin}: `{key}` = {value}: {first}")))
        }
    }
}

fn check_and_merge(dst: &mut Table, src: Table, defaults: &Table, prefix: &str, origin: &str) -> Result<(), Error> {
    for (k, v) in src {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let Some(def) = defaults.get(&k) else { return Err(unknown_key(&key, origin)) };
        match (def, v) {
            (Value::Table(dsub), Value::Table(vsub)) => {
                let slot = dst.entry(k.clone()).or_insert_with(|| Value::Table(Table::new()));
                let slot = slot.as_table_mut().expect("table");
                check_and_merge(slot, vsub, dsub, &key, origin)?;
            }
            (Value::Table(_), other) => return Err(Error::usage(format!("{origin}: `{key}` is a section, not a value (got {other})"))),
            (def, v) => {
                let v = coerce(v, def);
                check_type(&key, &v, origin)?;
                dst.insert(k, v);
            }
        }
    }
    Ok(())
}

/// Applies one `key=value` override to a table. The value is read as a TOML literal
/// (`0.99`, `true`, `[0.2, 1.0]`, `"x"`); anything that is not one is taken as a string.
pub fn apply_set(table: &mut Table, assignment: &str) -> Result<(), Error> {
    let origin = format!("--set {assignment}");
    let (key, raw) = assignment.split_once('=').ok_or_else(|| Error::usage(format!("{origin}: expected key=value")))?;
    let key = key.trim();
    let defaults = defaults_table();
    let Some(def) = default_at(&defaults, key) else { return Err(unknown_key(key, &origin)) };
    if def.is_table() {
        return Err(Error::usage(format!("{origin}: `{key}` is a section; set one of its keys")));
    }
    let parsed = toml::from_str::<Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| Value::String(raw.to_string()));
    let value = coerce(parsed, def);
    check_type(key, &value, &origin)?;
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        cur = cur.entry(p.to_string()).or_insert_with(|| Value::Table(Table::new())).as_table_mut().expect("section");
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// Parses TOML text into a table of overrides, checking every key against the schema.
pub fn parse_overrides(text: &str, origin: &str) -> Result<Table, Error> {
    let parsed: Table = toml::from_str(text).map_err(|e| Error::usage(format!("{origin}: malformed TOML: {}", e.to_string().trim_end())))?;
    let mut out = Table::new();
    check_and_merge(&mut out, parsed, &defaults_table(), "", origin)?;
    Ok(out)
}

/// Builds the config from an optional file and `--set` overrides, then validates it.
pub fn load(file: Option<&Path>, sets: &[String]) -> Result<Config, Error> {
    let mut table = Table::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| Error::usage(format!("{}: cannot read config: {e}", path.display())))?;
        table = parse_overrides(&text, &path.display().to_string())?;
    }
    for s in sets {
        apply_set(&mut table, s)?;
    }
    from_table(table)
}

/// Deserialises a (partial) table over the defaults and validates.
pub fn from_table(table: Table) -> Result<Config, Error> {
    let cfg: Config = Value::Table(table).try_into().map_err(|e: toml::de::Error| Error::usage(format!("config: {}", e.to_string().trim_end())))?;
    cfg.validate()?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_overrides_and_coerces() {
        let cfg = load(None, &["byol.tau_base=0.9".into(), "optim.lr=2".into(), "model.stem=imagenet".into(), "train.epochs=3".into()]).unwrap();
        assert_eq!(cfg.byol.tau_base, 0.9);
        assert_eq!(cfg.optim.lr, 2.0);
        assert_eq!(cfg.model.stem, "imagenet");
        assert_eq!(cfg.train.epochs, 3);
    }

    #[test]
    fn unknown_keys_are_named_with_a_suggestion() {
        let e = load(None, &["byol.tau_bas=0.9".into()]).unwrap_err().to_string();
        assert!(e.contains("unknown config key `byol.tau_bas`") && e.contains("did you mean `byol.tau_base`"), "{e}");
        let e = parse_overrides("[optim]\nlearning_rate = 1\n", "f.toml").unwrap_err().to_string();
        assert!(e.contains("f.toml") && e.contains("`optim.learning_rate`"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_file_or_set_and_the_key() {
        let e = parse_overrides("[train]\nepochs = \"ten\"\n", "c1.toml").unwrap_err().to_string();
        assert!(e.starts_with("c1.toml: `train.epochs` = \"ten\"") && e.contains("expected usize"), "{e}");
        let e = load(None, &["data.train=[1, 2]".into()]).unwrap_err().to_string();
        assert!(e.starts_with("--set data.train=[1, 2]: `data.train` = [1, 2]") && e.contains("expected a string"), "{e}");
        let e = load(None, &["eval.online_probe=yes".into()]).unwrap_err().to_string();
        assert!(e.contains("`eval.online_probe` = \"yes\"") && e.contains("expected a boolean"), "{e}");
        // lossless conversions still pass: an integer where a float is expected
        assert_eq!(load(None, &["optim.lr=2".into()]).unwrap().optim.lr, 2.0);
    }

    #[test]
    fn malformed_toml_reports_line_and_column() {
        let e = parse_overrides("[train]\nepochs = = 3\n", "bad.toml").unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn validation_names_field_and_range() {
        let e = load(None, &["byol.tau_base=1.5".into()]).unwrap_err().to_string();
        assert!(e.contains("byol.tau_base") && e.contains("[0, 1]"), "{e}");
        let e = load(None, &["model.arch=resnet99".into()]).unwrap_err().to_string();
        assert!(e.contains("model.arch") && e.contains("resnet99"), "{e}");
        let e = load(None, &["byol.loss_norm=\"l1\"".into()]).unwrap_err().to_string();
        assert!(e.contains("byol.loss_norm") && e.contains("l1") && e.contains("layernorm"), "{e}");
    }

    #[test]
    fn resolved_config_round_trips() {
        let cfg = load(None, &["train.batch=64".into(), "data.recipe=none".into()]).unwrap();
        let text = cfg.to_toml();
        let back = from_table(parse_overrides(&text, "round-trip").unwrap()).unwrap();
        assert_eq!(cfg, back);
    }
}
