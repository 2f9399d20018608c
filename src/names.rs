//! What names and keys ranklog accepts.

use crate::error::{Error, Result};

/// Longest metric or summary key.
pub const MAX_KEY_LEN: usize = 250;
/// Longest project, group, job type or run name.
pub const MAX_NAME_LEN: usize = 128;

/// Checks a project, group or job type: 1–128 characters of ASCII letters,
/// digits, `-`, `_` and `.`, not starting with `.`.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<()> {
    let bad = |reason: String| Error::InvalidName {
        what,
        value: value.to_string(),
        reason,
    };
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(bad(format!("must be 1 to {MAX_NAME_LEN} characters long")));
    }
    if value.starts_with('.') {
        return Err(bad("must not start with '.'".into()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(bad(format!(
            "{c:?} is not allowed; use ASCII letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

/// Checks a run name: 1–128 characters, no control characters, no `/`.
pub(crate) fn check_run_name(value: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidName {
        what: "run name",
        value: value.to_string(),
        reason: reason.to_string(),
    };
    if value.trim().is_empty() || value.chars().count() > MAX_NAME_LEN {
        return Err(bad("must be 1 to 128 characters long and not blank"));
    }
    if value.chars().any(|c| c.is_control() || c == '/') {
        return Err(bad("must not contain control characters or '/'"));
    }
    Ok(())
}

/// Checks a run id: 1–64 characters of lower-case ASCII letters, digits, `-` and `_`.
pub(crate) fn check_id(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "run id",
            value: value.to_string(),
            reason: "use 1 to 64 lower-case ASCII letters, digits, '-' and '_'".into(),
        })
    }
}

/// Checks a metric or summary key: 1–250 characters, no control characters,
/// no leading or trailing whitespace, not starting with `_` (reserved for
/// ranklog's own keys such as `_step`). Any other Unicode is allowed.
pub(crate) fn check_key(key: &str) -> Result<()> {
    let bad = |reason: &str| Error::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(bad("keys must not be empty"));
    }
    if key.chars().count() > MAX_KEY_LEN {
        return Err(bad("keys are at most 250 characters long"));
    }
    if key.starts_with('_') {
        return Err(bad(
            "keys starting with '_' are reserved for ranklog (_step, _runtime, _timestamp)",
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(bad(
            "keys must not contain control characters (newlines, tabs, ...)",
        ));
    }
    if key.trim() != key {
        return Err(bad("keys must not start or end with whitespace"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_characters() {
        assert!(check_name("project", "llm-7b_v2.1").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "ü", &"x".repeat(129)] {
            assert!(check_name("project", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_allow_unicode_but_not_control_characters() {
        assert!(check_key("train/loss").is_ok());
        assert!(check_key("損失/検証 ✓").is_ok());
        for bad in ["", "_step", "a\nb", " loss", &"k".repeat(251)] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key(&"k".repeat(250)).is_ok());
    }

    #[test]
    fn ids_are_lower_case() {
        assert!(check_id("ab12cd34").is_ok());
        assert!(check_id("AB").is_err());
        assert!(check_id("../x").is_err());
    }
}
