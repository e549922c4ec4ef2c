//! Base62: numbers as `0-9A-Za-z`, the characters that survive every URL context unescaped.
//!
//! `0` is `0`, `9` is `9`, `A` is 10, `Z` is 35, `a` is 36, `z` is 61. Generated codes are
//! padded with leading `0` to a fixed width, so every code has the same length and the
//! encoding stays a bijection between `0..62^width` and strings of that width.

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` in base62, left-padded with `0` to at least `width` characters.
pub fn encode(mut n: u64, width: usize) -> String {
    let mut digits = Vec::with_capacity(width.max(11));
    while n > 0 {
        digits.push(ALPHABET[(n % 62) as usize]);
        n /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    // Every byte comes from ALPHABET, which is ASCII.
    String::from_utf8(digits).expect("base62 digits are ASCII")
}

/// The number spelt by `text`, or `None` if it holds a character outside the alphabet or
/// overflows a `u64`.
pub fn decode(text: &str) -> Option<u64> {
    text.bytes().try_fold(0u64, |n, byte| {
        let digit = digit_value(byte)?;
        n.checked_mul(62)?.checked_add(digit)
    })
}

fn digit_value(byte: u8) -> Option<u64> {
    let value = match byte {
        b'0'..=b'9' => byte - b'0',
        b'A'..=b'Z' => byte - b'A' + 10,
        b'a'..=b'z' => byte - b'a' + 36,
        _ => return None,
    };
    Some(u64::from(value))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(0, 7), "0000000");
        assert_eq!(encode(61, 1), "z");
        assert_eq!(encode(62, 1), "10");
        assert_eq!(encode(62u64.pow(7) - 1, 7), "zzzzzzz");
        assert_eq!(encode(u64::MAX, 0), "LygHa16AHYF");
    }

    #[test]
    fn foreign_characters_and_overflow_are_refused() {
        assert_eq!(decode("ab-c"), None);
        assert_eq!(decode("é"), None);
        assert_eq!(decode("LygHa16AHYF"), Some(u64::MAX));
        assert_eq!(decode("LygHa16AHYG"), None);
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(n in any::<u64>(), width in 0usize..12) {
            let text = encode(n, width);
            prop_assert!(text.len() >= width);
            prop_assert_eq!(decode(&text), Some(n));
        }

        #[test]
        fn order_of_numbers_is_order_of_fixed_width_codes(a in 0..62u64.pow(7), b in 0..62u64.pow(7)) {
            prop_assert_eq!(a.cmp(&b), encode(a, 7).cmp(&encode(b, 7)));
        }
    }
}
