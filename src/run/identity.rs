//! Run ids and human-readable run names.

use crate::error::{Error, Result};

const ID_LEN: usize = 8;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A new run id: 8 characters of `[a-z0-9]` from the operating system's CSPRNG.
///
/// # Errors
///
/// [`Error::InvalidSetting`] if the OS has no random source (then set an id with
/// `RANKLOG_RUN_ID`).
pub(crate) fn new_id() -> Result<String> {
    let mut id = String::with_capacity(ID_LEN);
    let mut buf = [0u8; 32];
    while id.len() < ID_LEN {
        getrandom::fill(&mut buf).map_err(|e| Error::InvalidSetting {
            name: "run id".into(),
            value: String::new(),
            reason: format!("the OS random source failed ({e}); set RANKLOG_RUN_ID"),
        })?;
        // 252 = 7 * 36: rejecting larger bytes keeps every character equally likely.
        for &b in buf.iter().filter(|&&b| b < 252) {
            if id.len() == ID_LEN {
                break;
            }
            id.push(ALPHABET[(b % 36) as usize] as char);
        }
    }
    Ok(id)
}

const ADJECTIVES: &[&str] = &[
    "amber", "ancient", "autumn", "bold", "brave", "bright", "calm", "clever", "cosmic", "crimson",
    "curious", "dainty", "dark", "dawn", "deep", "divine", "dry", "dusty", "eager", "electric",
    "fearless", "fiery", "fluent", "fresh", "frosty", "gentle", "giddy", "glad", "golden", "grand",
    "hardy", "hidden", "icy", "jolly", "keen", "lively", "lucky", "lunar", "mellow", "misty",
    "morning", "noble", "olive", "proud", "quiet", "rapid", "restful", "rosy", "royal", "rustic",
    "scarlet", "serene", "silent", "silver", "snowy", "solar", "spring", "stellar", "stoic",
    "summer", "sunny", "swift", "tidy", "twilight", "vivid", "warm", "wild", "winter", "wise",
    "young",
];

const NOUNS: &[&str] = &[
    "aurora",
    "badger",
    "bird",
    "breeze",
    "brook",
    "butterfly",
    "cedar",
    "cherry",
    "cloud",
    "comet",
    "dawn",
    "deer",
    "dew",
    "dragon",
    "dream",
    "dust",
    "eagle",
    "elk",
    "falcon",
    "feather",
    "fern",
    "field",
    "firefly",
    "flower",
    "fog",
    "forest",
    "fox",
    "galaxy",
    "glade",
    "grass",
    "hawk",
    "haze",
    "heron",
    "hill",
    "lake",
    "leaf",
    "lion",
    "meadow",
    "moon",
    "moth",
    "mountain",
    "night",
    "oak",
    "ocean",
    "otter",
    "owl",
    "paper",
    "pine",
    "planet",
    "pond",
    "rain",
    "river",
    "sea",
    "shadow",
    "sky",
    "snow",
    "sound",
    "star",
    "stone",
    "sun",
    "thunder",
    "tree",
    "violet",
    "voice",
    "water",
    "wave",
    "wind",
    "wildflower",
    "wolf",
    "wood",
];

/// A name `adjective-noun-N`, with N the given run number.
pub(crate) fn new_name(number: u64) -> String {
    let mut buf = [0u8; 4];
    // A failed random source only makes names less varied; ids stay random.
    let _ = getrandom::fill(&mut buf);
    let a = u16::from_le_bytes([buf[0], buf[1]]) as usize % ADJECTIVES.len();
    let n = u16::from_le_bytes([buf[2], buf[3]]) as usize % NOUNS.len();
    format!("{}-{}-{number}", ADJECTIVES[a], NOUNS[n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_eight_lower_alphanumerics_and_differ() -> Result<()> {
        let ids: HashSet<String> = (0..1000).map(|_| new_id()).collect::<Result<_>>()?;
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert_eq!(id.len(), 8);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        Ok(())
    }

    #[test]
    fn names_are_adjective_noun_number() {
        let name = new_name(10);
        let parts: Vec<&str> = name.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert!(ADJECTIVES.contains(&parts[0]));
        assert!(NOUNS.contains(&parts[1]));
        assert_eq!(parts[2], "10");
    }
}
