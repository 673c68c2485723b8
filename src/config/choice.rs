//! Config keys that take one of a fixed set of names. One table per key gives both the accepted
//! names and the error message listing them, so the two cannot drift apart.
use crate::error::Error;

/// The names as a sentence: `a`, `a or b`, `a, b or c`.
pub fn names_sentence(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The value `choices` gives `value`; otherwise a config error naming `field`, the value and every
/// accepted name.
pub fn choose<T: Clone>(field: &str, value: &str, choices: &[(&str, T)]) -> Result<T, Error> {
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, chosen)) => Ok(chosen.clone()),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(Error::config(field, value, format!("expected {}", names_sentence(&names))))
        }
    }
}

/// Checks that `value` is one of `names` (a config error naming `field` otherwise).
pub fn check_one_of(field: &str, value: &str, names: &[&str]) -> Result<(), Error> {
    let choices: Vec<(&str, ())> = names.iter().map(|name| (*name, ())).collect();
    choose(field, value, &choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_and_errors_list_every_name() {
        assert_eq!(names_sentence(&["a"]), "a");
        assert_eq!(names_sentence(&["a", "b"]), "a or b");
        assert_eq!(names_sentence(&["a", "b", "c"]), "a, b or c");
        assert_eq!(choose("k", "b", &[("a", 1), ("b", 2)]).unwrap(), 2);
        let err = choose("sec.key", "z", &[("a", 1), ("b", 2), ("c", 3)]).unwrap_err().to_string();
        assert_eq!(err, "config field `sec.key` = z: expected a, b or c");
        assert!(check_one_of("k", "x", &["x", "y"]).is_ok());
        assert!(check_one_of("k", "w", &["x", "y"]).is_err());
    }
}
