//! Glob-style patterns, as `KEYS`, `SCAN MATCH` and `CONFIG GET` use them.
//!
//! `*` any run of bytes, `?` one byte, `[abc]` a set, `[^a]` or `[!a]` its complement, `[a-z]`
//! a range, `\x` the byte x itself. Matching is by bytes, with optional ASCII case folding.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    // Iterative matching with one backtrack point for the last `*`: linear in practice and
    // never exponential, however many stars a hostile pattern has.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            if p == pattern.len() {
                return true;
            }
            star = Some((p, t));
            continue;
        }
        if let Some(next) = step(pattern, p, text[t], nocase) {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((star_p, star_t)) => {
                p = star_p;
                t = star_t + 1;
                star = Some((star_p, star_t + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// If the pattern element at `p` matches `byte`, the position after that element.
fn step(pattern: &[u8], p: usize, byte: u8, nocase: bool) -> Option<usize> {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => class(pattern, p + 1, fold(byte), nocase),
        b'\\' if p + 1 < pattern.len() => (fold(pattern[p + 1]) == fold(byte)).then_some(p + 2),
        literal => (fold(literal) == fold(byte)).then_some(p + 1),
    }
}

/// Matches a `[...]` class starting after the `[`; an unclosed class runs to the end.
fn class(pattern: &[u8], mut p: usize, byte: u8, nocase: bool) -> Option<usize> {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let negate = matches!(pattern.get(p), Some(b'^' | b'!'));
    if negate {
        p += 1;
    }
    let mut hit = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            hit |= fold(pattern[p + 1]) == byte;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (mut lo, mut hi) = (fold(pattern[p]), fold(pattern[p + 2]));
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            hit |= (lo..=hi).contains(&byte);
            p += 3;
        } else {
            hit |= fold(pattern[p]) == byte;
            p += 1;
        }
    }
    let after = if p < pattern.len() { p + 1 } else { p };
    (hit != negate).then_some(after)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_pattern_examples() {
        let yes = |p: &str, t: &str| assert!(matches(p.as_bytes(), t.as_bytes(), false), "{p} {t}");
        let no = |p: &str, t: &str| assert!(!matches(p.as_bytes(), t.as_bytes(), false), "{p} {t}");
        yes("h?llo", "hello");
        yes("h*llo", "heeeello");
        yes("h*llo", "hllo");
        yes("h[ae]llo", "hallo");
        no("h[ae]llo", "hillo");
        yes("h[^e]llo", "hallo");
        no("h[^e]llo", "hello");
        yes("h[a-b]llo", "hbllo");
        yes("*", "");
        yes("a\\*", "a*");
        no("a\\*", "ab");
        yes("*:*:*", "key:000:x");
        no("key:*", "ke");
        yes("*a*b*", "xxaxxbxx");
        no("*a*b", "xxaxxbxc");
        assert!(matches(b"HELLO", b"hello", true));
    }

    #[test]
    fn many_stars_stay_fast() {
        let pattern = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let text = vec![b'a'; 5000];
        assert!(!matches(pattern, &text, false));
    }
}
