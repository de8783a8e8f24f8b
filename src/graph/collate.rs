//! String comparison as the reference CLI does it (`String.prototype.localeCompare` with
//! Node's ICU in the root/`en-US` collation), for the strings Feature ordering compares.
//!
//! ASCII is collated exactly: punctuation and symbols before digits before letters, in the
//! CLDR root order, letters compared without case first and lowercase before uppercase only
//! when nothing else differs; control characters are ignored. Characters outside ASCII sort
//! after all ASCII by code point, which approximates ICU for the rare reference or option
//! value that holds them.

use std::cmp::Ordering;

/// Printable ASCII other than letters, in CLDR root collation order.
const PUNCTUATION_AND_DIGITS: &str = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789";

/// Whitespace controls, which collate before the space, in order.
const WHITESPACE: &str = "\t\n\u{b}\u{c}\r";

/// The primary weight of `c`, or `None` for a character collation ignores.
fn primary(c: char) -> Option<u32> {
    if let Some(i) = WHITESPACE.find(c) {
        return Some(1 + i as u32);
    }
    if let Some(i) = PUNCTUATION_AND_DIGITS.find(c) {
        return Some(10 + i as u32);
    }
    if c.is_ascii_alphabetic() {
        return Some(100 + (c.to_ascii_lowercase() as u32 - 'a' as u32));
    }
    if c.is_ascii_control() {
        return None;
    }
    Some(1000 + c as u32)
}

/// Compares `a` and `b` as `a.localeCompare(b)` orders them.
pub fn locale_compare(a: &str, b: &str) -> Ordering {
    let weights = |s: &str| -> Vec<(u32, bool)> {
        s.chars()
            .filter_map(|c| primary(c).map(|w| (w, c.is_ascii_uppercase())))
            .collect()
    };
    let (a, b) = (weights(a), weights(b));
    let primaries = a.iter().map(|w| w.0).cmp(b.iter().map(|w| w.0));
    primaries.then_with(|| a.iter().map(|w| w.1).cmp(b.iter().map(|w| w.1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs with the sign of `a.localeCompare(b)` printed by Node 20 (ICU 78, `en-US`).
    const NODE: &[(&str, &str, i8)] = &[
        ("a", "A", -1),
        ("a-b", "ab", -1),
        ("ab", "a-c", 1),
        ("a b", "ab", -1),
        ("1.10", "1.9", -1),
        ("a_b", "a-b", -1),
        ("a1", "aB", -1),
        ("Ab", "aB", 1),
        ("docker-in-docker", "node", -1),
        ("./b", "ghcr.io/codspace/dependson/D", -1),
        ("ghcr.io/o/f", "ghcr.io/o/f/x", -1),
        ("latest", "1", 1),
        ("_x", "1x", -1),
        ("Z", "a", 1),
        ("abc", "ABC", -1),
        ("abc", "abd", -1),
        ("10", "40", -1),
        ("/w/.devcontainer/b", "/w/.devcontainer/a", 1),
        ("~", "$", -1),
        ("x", "x", 0),
        ("aB", "Ab", -1),
        ("a-B", "a-b", 1),
    ];

    #[test]
    fn matches_node_on_ascii() {
        for (a, b, sign) in NODE {
            let expected = sign.cmp(&0);
            assert_eq!(locale_compare(a, b), expected, "{a:?} vs {b:?}");
            assert_eq!(locale_compare(b, a), expected.reverse(), "{b:?} vs {a:?}");
        }
    }

    #[test]
    fn sorts_printable_ascii_like_node() {
        let mut chars: Vec<String> = (32u8..127).map(|b| (b as char).to_string()).collect();
        chars.sort_by(|a, b| locale_compare(a, b));
        let sorted: String = chars.concat();
        let node = " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ";
        assert_eq!(sorted, node);
    }
}
