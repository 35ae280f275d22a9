//! Join tokens inside rendered documents. Each node that joins later gets a fresh token,
//! so a document's identity (the sha256 launch records, upgrade and plan compare) is
//! taken with its tokens masked: a new token alone is no change of configuration.

use super::sha256_hex;

/// What stands for a join token in the masked text.
const MASK: &str = "<join-token>";

/// The sha256 of `user_data` with its join tokens masked.
pub fn config_sha256(user_data: &str) -> String {
    sha256_hex(map_join_tokens(user_data, |_| MASK.to_string()).as_bytes())
}

/// `text` with each kubeadm bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`, a whole word)
/// replaced by `f(token)`.
pub fn map_join_tokens(text: &str, f: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(len) = token_at(rest) {
            out.push_str(&f(&rest[..len]));
            rest = &rest[len..];
            continue;
        }
        // Past one character, and past a whole word: a token starts a word.
        let c = rest.chars().next().expect("not empty");
        let skip = if c.is_ascii_alphanumeric() {
            rest.find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len())
        } else {
            c.len_utf8()
        };
        out.push_str(&rest[..skip]);
        rest = &rest[skip..];
    }
    out
}

/// The length of a bootstrap token at the start of `s`, if one is there and ends a word.
fn token_at(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let ok = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    let whole = (0..6).all(ok) && b.get(6) == Some(&b'.') && (7..23).all(ok);
    let ends = !b.get(23).is_some_and(u8::is_ascii_alphanumeric);
    (whole && ends).then_some(23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_tokens_are_masked() {
        let a = "token: \"abcdef.0123456789abcdef\"\nx: abcdef.0123456789abcdefg\n";
        let b = "token: \"zyxwvu.fedcba9876543210\"\nx: abcdef.0123456789abcdefg\n";
        assert_eq!(config_sha256(a), config_sha256(b));
        assert_eq!(
            map_join_tokens(a, |_| "T".into()),
            "token: \"T\"\nx: abcdef.0123456789abcdefg\n"
        );
        // Anything else that changes still changes the sha.
        assert_ne!(config_sha256(a), config_sha256(&a.replace("x:", "y:")));
        // A longer word that merely contains a token shape is not one.
        assert_eq!(
            map_join_tokens("1abcdef.0123456789abcdef", |_| "T".into()),
            "1abcdef.0123456789abcdef"
        );
    }
}
