//! Python's string semantics where VADER's output depends on them: `str.split()` whitespace,
//! `str.isupper()`, `str.lower()`, `str.strip(string.punctuation)` and `round(x, n)`.
//!
//! Rust's own predicates differ at the edges (Rust's whitespace lacks U+001C..U+001F; Rust has
//! no titlecase predicate; `format!` does not promise Python's rounding), and each difference
//! changes a score somewhere, so they are spelled out here once.

/// Python's `str.isspace()` for one character: Rust's `White_Space` plus the four ASCII
/// information separators U+001C..U+001F, which Python splits on too.
#[inline]
pub fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.isupper()`: at least one cased character and no lowercase or titlecase one.
#[inline]
pub fn is_python_upper(word: &str) -> bool {
    if word.is_ascii() {
        let bytes = word.as_bytes();
        return bytes.iter().any(u8::is_ascii_uppercase)
            && !bytes.iter().any(u8::is_ascii_lowercase);
    }
    let mut cased = false;
    for c in word.chars() {
        if c.is_lowercase() || is_titlecase(c) {
            return false;
        }
        cased |= c.is_uppercase();
    }
    cased
}

/// Unicode general category Lt (titlecase letters), which Python's `isupper` rejects.
fn is_titlecase(c: char) -> bool {
    matches!(c,
        '\u{01C5}' | '\u{01C8}' | '\u{01CB}' | '\u{01F2}'
        | '\u{1F88}'..='\u{1F8F}' | '\u{1F98}'..='\u{1F9F}' | '\u{1FA8}'..='\u{1FAF}'
        | '\u{1FBC}' | '\u{1FCC}' | '\u{1FFC}')
}

/// Appends Python's `word.lower()` to `out`.
#[inline]
pub fn push_python_lower(word: &str, out: &mut String) {
    if word.is_ascii() {
        out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else if word.contains('\u{03A3}') {
        // Capital sigma lowers to ς at the end of a word and σ elsewhere; `str::to_lowercase`
        // applies that context rule as Python does, the per-character mapping does not.
        out.push_str(&word.to_lowercase());
    } else {
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
}

/// VADER's `_strip_punc_if_word`: strips ASCII punctuation (`string.punctuation`) from both
/// ends, unless that leaves two characters or fewer (then the token is likely an emoticon such
/// as `:)` and stays whole). `ascii` says the token is ASCII, which saves counting characters. Returns
/// the byte range of the word within `token`.
#[inline]
pub fn strip_punctuation_range(token: &str, ascii: bool) -> (usize, usize) {
    // Punctuation is ASCII, so trimming bytes never splits a character.
    let bytes = token.as_bytes();
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_punctuation())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_punctuation())
        .map_or(start, |at| at + 1);
    let stripped = &token[start..end];
    // An ASCII token's length is its length in characters, and nine bytes or more hold at
    // least three characters of any width.
    let long_enough = if ascii || stripped.len() > 8 {
        stripped.len() > 2
    } else {
        stripped.chars().count() > 2
    };
    if long_enough {
        (start, end)
    } else {
        (0, token.len())
    }
}

/// Python's `round(x, digits)` for `digits` up to 4: the nearest multiple of 10^-digits,
/// ties (exact binary values only) to even, returned as the double nearest that decimal.
#[inline]
pub fn python_round(x: f64, digits: u32) -> f64 {
    debug_assert!(digits <= 4);
    let scale = 10f64.powi(digits as i32);
    let scaled = x * scale;
    let floor = scaled.floor();
    let fraction = scaled - floor;
    // `scaled` carries one rounding error of at most half an ulp; away from a tie the nearest
    // integer is clear, and only near a tie is the exact value needed.
    let nearest = if (fraction - 0.5).abs() > 1e-9 {
        scaled.round()
    } else {
        match exact_cmp_to_half(x, floor, scale) {
            std::cmp::Ordering::Less => floor,
            std::cmp::Ordering::Greater => floor + 1.0,
            std::cmp::Ordering::Equal if floor % 2.0 == 0.0 => floor,
            std::cmp::Ordering::Equal => floor + 1.0,
        }
    };
    // Division of two exact doubles is correctly rounded: the nearest double to the decimal.
    let rounded = nearest / scale;
    if rounded == 0.0 {
        0.0f64.copysign(x)
    } else {
        rounded
    }
}

/// Compares the exact value of `x` with `(floor + 0.5) / scale`, exactly, for |x| < 2^10 and
/// `scale` a power of ten up to 10^4.
fn exact_cmp_to_half(x: f64, floor: f64, scale: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let negative = x < 0.0;
    let (mantissa, exponent) = decompose(x.abs());
    // |x| = mantissa * 2^exponent; the tie is t = (2*floor + 1) / (2*scale), signed as x.
    // Compare mantissa * 2^exponent * 2*scale with (2*floor + 1), both as integers scaled by
    // 2^-exponent when the exponent is negative.
    let twice_scale = (2.0 * scale) as u128;
    let tie_numerator = (2.0 * floor + 1.0).abs() as u128;
    let ordering = if exponent >= 0 {
        (u128::from(mantissa) << exponent as u32)
            .saturating_mul(twice_scale)
            .cmp(&tie_numerator)
    } else if -exponent > 100 {
        Ordering::Less // far below any tie of interest
    } else {
        let left = u128::from(mantissa) * twice_scale;
        let shift = (-exponent) as u32;
        if tie_numerator.leading_zeros() <= shift {
            Ordering::Less
        } else {
            left.cmp(&(tie_numerator << shift))
        }
    };
    if negative {
        // For negative x, floor is below x: compare |x| with |tie| the other way round.
        ordering.reverse()
    } else {
        ordering
    }
}

fn decompose(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1u64 << 52) - 1);
    if exponent == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1u64 << 52), exponent - 1075)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_is_pythons() {
        for c in [
            '\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}', ' ', '\t', '\u{a0}', '\u{3000}', '\u{85}',
        ] {
            assert!(is_python_space(c), "{c:?}");
        }
        for c in ['\u{200b}', '\u{180e}', 'a', '\u{feff}'] {
            assert!(!is_python_space(c), "{c:?}");
        }
    }

    #[test]
    fn isupper_is_pythons() {
        let check =
            |word: &str, expected: bool| assert_eq!(is_python_upper(word), expected, "{word:?}");
        check("GREAT", true);
        check("GREAT!", true);
        check("G8", true);
        check(":D", true);
        check(":)", false);
        check("123", false);
        check("Great", false);
        check("ÉCOLE", true);
        check("ǅ", false); // titlecase
        check("ΣΑΣ", true);
        check("Ⓐ", true); // Other_Uppercase
    }

    #[test]
    fn lower_is_pythons() {
        let lower = |word: &str| {
            let mut out = String::new();
            push_python_lower(word, &mut out);
            out
        };
        assert_eq!(lower("GREAT"), "great");
        assert_eq!(lower("ΟΔΟΣ"), "οδος"); // final sigma
        assert_eq!(lower("ÉCOLE"), "école");
        assert_eq!(lower("İ"), "i\u{307}");
    }

    #[test]
    fn strip_keeps_emoticons() {
        let check = |token: &str, expected: &str| {
            for ascii in [token.is_ascii(), false] {
                let (start, end) = strip_punctuation_range(token, ascii);
                assert_eq!(&token[start..end], expected, "{token:?}");
            }
        };
        check("great!!!", "great");
        check("(great)", "great");
        check(":)", ":)");
        check(":-)", ":-)");
        check("ok!", "ok!");
        check("wow!", "wow");
        check("'80s", "80s");
        check("..é..", "..é..");
        check("..éé..", "..éé..");
        check("..ééé..", "ééé");
    }

    #[test]
    fn rounding_is_pythons() {
        // Pairs checked against CPython 3.11's round().
        let check = |x: f64, digits: u32, expected: f64| {
            let got = python_round(x, digits);
            assert!(
                got == expected && got.is_sign_negative() == expected.is_sign_negative(),
                "round({x}, {digits}) = {got}, want {expected}"
            );
        };
        check(0.0625, 3, 0.062); // exact tie, to even
        check(0.1875, 3, 0.188); // exact tie, to even
        check(0.3125, 3, 0.312);
        check(0.4375, 3, 0.438);
        check(0.03125, 4, 0.0312);
        check(0.09375, 4, 0.0938);
        check(-0.03125, 4, -0.0312);
        check(0.0005, 3, 0.001); // 0.0005 is just above the tie in binary
        check(0.0015, 3, 0.002); // just above too
        check(0.2675, 3, 0.268);
        check(2.675, 2, 2.67);
        check(-0.00001, 4, -0.0);
        check(0.9571, 4, 0.9571);
        check(1.0, 4, 1.0);
        check(-1.0, 4, -1.0);
        check(0.0, 3, 0.0);
    }
}
