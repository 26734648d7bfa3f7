//! Glob-style matching of keys as Redis's `stringmatchlen` does it (KEYS, SCAN MATCH):
//! `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes, byte for byte. Owns only the matching;
//! never allocates and never recurses deeper than a named bound.

/// Deepest nesting of `*` the matcher follows before it gives up (Redis's bound).
pub const GLOB_NESTING_MAX: usize = 1000;

/// Whether `string` matches the glob `pattern` (case-sensitive).
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, string, &mut skip_longer, 0)
}

fn match_from(pattern: &[u8], string: &[u8], skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > GLOB_NESTING_MAX {
        return false;
    }
    let (mut p, mut s) = (0usize, 0usize);
    while p < pattern.len() && s < string.len() {
        match pattern[p] {
            b'*' => {
                while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                while s < string.len() {
                    if match_from(&pattern[p + 1..], &string[s..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => match match_class(pattern, p + 1, string[s]) {
                (true, end) => {
                    p = end;
                    s += 1;
                }
                (false, _) => return false,
            },
            other => {
                let expected = if other == b'\\' && p + 1 < pattern.len() {
                    p += 1;
                    pattern[p]
                } else {
                    other
                };
                if expected != string[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == string.len() {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            break;
        }
    }
    p == pattern.len() && s == string.len()
}

/// A `[...]` class starting after its `[` at `p`: whether `c` matches, and the index of
/// the class's last byte (its `]`, or the pattern's last byte when unterminated).
fn match_class(pattern: &[u8], mut p: usize, c: u8) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        let rest = pattern.len().saturating_sub(p);
        if rest >= 2 && pattern[p] == b'\\' {
            p += 1;
            matched |= pattern[p] == c;
        } else if rest == 0 {
            p = pattern.len().saturating_sub(1);
            break;
        } else if pattern[p] == b']' {
            break;
        } else if rest >= 3 && pattern[p + 1] == b'-' {
            let (low, high) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            matched |= (low..=high).contains(&c);
            p += 2;
        } else {
            matched |= pattern[p] == c;
        }
        p += 1;
    }
    (matched != negate, p)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_as_redis_stringmatchlen() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            // As stringmatchlen: an empty key matches no pattern; KEYS * special-cases it.
            ("*", "", false),
            ("", "", true),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[b-a]llo", "hallo", true),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("user:*", "user:1", true),
            ("user:*", "users", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("[abc", "a", true),
            ("foo*", "foo", true),
        ];
        for (pattern, string, expected) in cases {
            let got = glob_match(pattern.as_bytes(), string.as_bytes());
            assert_eq!(got, *expected, "{pattern} ~ {string}");
        }
    }

    #[test]
    fn many_stars_do_not_explode() {
        let pattern = "a*".repeat(40) + "b";
        assert!(!glob_match(pattern.as_bytes(), "a".repeat(60).as_bytes()));
    }
}
