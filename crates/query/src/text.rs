//! Text as queries see it: case and accent folding, and a tokenizer that keeps hashtags,
//! @mentions, URLs, emoji and contractions whole, with the byte range of every token in the
//! original text so that matches can point at what made them.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// What a token is; a query word matches words and the bodies of hashtags and mentions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    /// `#tag`; `norm` holds the body without `#`.
    Hashtag,
    /// `@handle`; `norm` holds the body without `@`.
    Mention,
    /// `https://…`, `http://…` or `www.…`, whole.
    Url,
    /// One emoji, with its modifiers and ZWJ sequence.
    Emoji,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Byte range in the original text, the whole token (with `#` or `@`).
    pub start: u32,
    pub end: u32,
    /// Folded text (lower case, accents removed, `’` as `'`); without `#`/`@`.
    pub norm: String,
    /// `norm`'s number in a query set's vocabulary, [`crate::NO_ID`] when not in it.
    pub id: u32,
}

/// Lower case, accents removed (NFD without combining marks) and the typographic apostrophe
/// as `'`, so that `Café`, `CAFE` and `cafe` compare equal, and so do `don’t` and `don't`.
pub fn fold(text: &str) -> String {
    let mut folded = String::new();
    fold_into(text, &mut folded);
    folded
}

/// [`fold`] into `folded`, replacing what it held: no allocation once it has room.
pub fn fold_into(text: &str, folded: &mut String) {
    folded.clear();
    if text.is_ascii() {
        folded.push_str(text);
        folded.make_ascii_lowercase();
        return;
    }
    folded.extend(
        text.chars()
            .flat_map(char::to_lowercase)
            .nfd()
            .filter(|&c| !is_combining_mark(c))
            .map(|c| if c == '\u{2019}' { '\'' } else { c }),
    );
}

/// Splits `text` into tokens. Punctuation and white space separate tokens and are dropped.
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    token_spans(text, |kind, start, end| {
        let body = match kind {
            TokenKind::Hashtag | TokenKind::Mention => &text[start + 1..end],
            _ => &text[start..end],
        };
        tokens.push(Token {
            kind,
            start: start as u32,
            end: end as u32,
            norm: fold(body),
            id: crate::NO_ID,
        });
    });
    tokens
}

/// The tokens of `text` as [`tokenize`] finds them, without folding: kind and byte range.
pub(crate) fn token_spans(text: &str, mut each: impl FnMut(TokenKind, usize, usize)) {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().expect("i is on a char boundary");
        let (kind, end) = if let Some(end) = url_end(text, i) {
            (TokenKind::Url, end)
        } else if (c == '#' || c == '@') && starts_word(text, i + 1) {
            let kind = if c == '#' {
                TokenKind::Hashtag
            } else {
                TokenKind::Mention
            };
            (kind, word_end(text, i + 1, c == '@'))
        } else if is_word_char(c) {
            (TokenKind::Word, word_end(text, i, false))
        } else if is_emoji_start(c) {
            (TokenKind::Emoji, emoji_end(text, i))
        } else {
            i += c.len_utf8();
            continue;
        };
        debug_assert!(end > i && end <= bytes.len());
        each(kind, i, end);
        i = end;
    }
}

/// Bytes of NUL after the lower-cased text that [`ascii_token_spans`] reads, so that it can
/// read eight bytes at a time to the end.
pub(crate) const PADDING: usize = 8;

/// [`token_spans`] for ASCII text: the same tokens (the property test
/// `the_ascii_scan_finds_what_the_folded_tokens_do` holds the two together). `lower` is the
/// text lower-cased and followed by [`PADDING`] NUL bytes; words are scanned in it eight
/// bytes at a time.
pub(crate) fn ascii_token_spans(
    text: &str,
    lower: &[u8],
    mut each: impl FnMut(TokenKind, usize, usize),
) {
    debug_assert!(text.is_ascii());
    debug_assert!(lower.len() == text.len() + PADDING);
    let bytes = text.as_bytes();
    let word = is_ascii_word_byte;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (kind, end) = if word(b) {
            match may_start_url(bytes, i).then(|| url_end(text, i)).flatten() {
                Some(end) => (TokenKind::Url, end),
                None => (TokenKind::Word, ascii_word_end(lower, i, false)),
            }
        } else if (b == b'#' || b == b'@') && bytes.get(i + 1).is_some_and(|&n| word(n)) {
            let kind = if b == b'#' {
                TokenKind::Hashtag
            } else {
                TokenKind::Mention
            };
            (kind, ascii_word_end(lower, i + 1, b == b'@'))
        } else {
            i += 1;
            continue;
        };
        each(kind, i, end);
        i = end;
    }
}

/// Which bytes are ASCII word characters (alphanumeric or `_`): one look-up per byte.
const ASCII_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_';
        b += 1;
    }
    table
};

#[inline]
fn is_ascii_word_byte(b: u8) -> bool {
    ASCII_WORD[usize::from(b)]
}

/// Whether a link may start at `i` (its first four bytes are `http` or `www.`, in any case):
/// a test of four bytes at once before [`url_end`]'s.
#[inline(always)]
fn may_start_url(bytes: &[u8], i: usize) -> bool {
    bytes.get(i..i + 4).is_some_and(|four| {
        // Setting 0x20 lower-cases ASCII letters and keeps `.`; other bytes that become one
        // of these are refused by `url_end`.
        let four = u32::from_le_bytes([four[0], four[1], four[2], four[3]]) | 0x2020_2020;
        four == u32::from_le_bytes(*b"http") || four == u32::from_le_bytes(*b"www.")
    })
}

/// [`word_end`] in lower-cased ASCII text followed by [`PADDING`] NUL bytes (which end a
/// word).
#[inline(always)]
fn ascii_word_end(lower: &[u8], start: usize, dots: bool) -> usize {
    let mut end = start;
    loop {
        // Eight bytes at a time: the first that is not a word character ends the run.
        loop {
            let eight = u64::from_le_bytes(
                lower[end..end + 8]
                    .try_into()
                    .expect("eight bytes, the padding included"),
            );
            let other = !word_bytes(eight) & HIGH_BITS;
            if other != 0 {
                end += (other.trailing_zeros() / 8) as usize;
                break;
            }
            end += 8;
        }
        // An apostrophe (or a dot, in handles) joins two runs of word characters.
        let joiner = lower[end];
        if (joiner == b'\'' || (dots && joiner == b'.'))
            && end > start
            && is_ascii_word_byte(lower[end + 1])
        {
            end += 2;
        } else {
            return end;
        }
    }
}

/// Byte `b` in each of eight.
const fn splat(b: u8) -> u64 {
    u64::from_le_bytes([b; 8])
}

const HIGH_BITS: u64 = splat(0x80);

/// The high bit of each byte of `eight` (ASCII) that is at least `least`: adding
/// `0x80 - least` reaches 0x80 exactly then, and carries into no other byte.
const fn at_least(eight: u64, least: u8) -> u64 {
    eight.wrapping_add(splat(0x80 - least)) & HIGH_BITS
}

/// The high bit of each byte of `eight` (lower-cased ASCII) that is a word character: a
/// letter, a digit or `_`.
const fn word_bytes(eight: u64) -> u64 {
    let letter = at_least(eight, b'a') & !at_least(eight, b'z' + 1);
    let digit = at_least(eight, b'0') & !at_least(eight, b'9' + 1);
    let underscore = at_least(eight, b'_') & !at_least(eight, b'_' + 1);
    letter | digit | underscore
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts_word(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(is_word_char)
}

/// End of a word starting at `start`: word characters, joined across an apostrophe (`don't`,
/// `l’appli`) or, in handles, a dot (`@sam.bsky.social`) when a word character follows.
fn word_end(text: &str, start: usize, dots: bool) -> usize {
    let bytes = text.as_bytes();
    let ascii_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    // ASCII fast path, while the bytes are ASCII; the general loop below from the first
    // other byte on.
    let mut end = start;
    while end < bytes.len() {
        let b = bytes[end];
        if ascii_word(b) {
            end += 1;
        } else if (b == b'\'' || (dots && b == b'.'))
            && end > start
            && bytes.get(end + 1).is_some_and(|&n| ascii_word(n))
        {
            end += 2;
        } else {
            break;
        }
    }
    let joiner = |b: u8| b == b'\'' || (dots && b == b'.');
    let undecided = bytes.get(end).is_some_and(|&b| {
        !b.is_ascii() || (joiner(b) && bytes.get(end + 1).is_some_and(|n| !n.is_ascii()))
    });
    if undecided {
        return word_end_chars(text, start, dots);
    }
    end
}

fn word_end_chars(text: &str, start: usize, dots: bool) -> usize {
    let mut end = start;
    let mut chars = text[start..].char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        if is_word_char(c) {
            end = start + offset + c.len_utf8();
            continue;
        }
        let joiner = c == '\'' || c == '\u{2019}' || (dots && c == '.');
        if joiner && end == start + offset && chars.peek().is_some_and(|&(_, n)| is_word_char(n)) {
            continue;
        }
        break;
    }
    end
}

fn url_end(text: &str, start: usize) -> Option<usize> {
    let rest = &text.as_bytes()[start..];
    if !matches!(rest.first(), Some(b'h' | b'H' | b'w' | b'W')) {
        return None;
    }
    let has_prefix = |prefix: &[u8]| {
        rest.len() > prefix.len() && rest[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if !(has_prefix(b"https://") || has_prefix(b"http://") || has_prefix(b"www.")) {
        return None;
    }
    if start > 0 && text[..start].chars().next_back().is_some_and(is_word_char) {
        return None;
    }
    let mut end = start
        + text[start..]
            .find(char::is_whitespace)
            .unwrap_or(text.len() - start);
    // Sentence punctuation after a link is not part of it.
    while end > start
        && matches!(
            text.as_bytes()[end - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b'"' | b'\''
        )
    {
        end -= 1;
    }
    Some(end)
}

fn is_emoji_start(c: char) -> bool {
    let c = c as u32;
    (0x1F000..=0x1FAFF).contains(&c) || (0x2190..=0x2BFF).contains(&c) || c == 0x00A9 || c == 0x00AE
}

/// Emoji with what attaches to them: variation selectors, skin tones, the keycap mark, a
/// ZWJ and the emoji after it, the second regional indicator of a flag.
fn emoji_end(text: &str, start: usize) -> usize {
    let mut chars = text[start..].char_indices();
    let (_, first) = chars.next().expect("called on a char");
    let mut end = start + first.len_utf8();
    let regional = |c: char| (0x1F1E6..=0x1F1FF).contains(&(c as u32));
    let mut pending_flag = regional(first);
    let mut after_zwj = false;
    for (offset, c) in chars {
        let code = c as u32;
        let attaches = after_zwj
            || code == 0x200D
            || code == 0xFE0F
            || code == 0xFE0E
            || code == 0x20E3
            || (0x1F3FB..=0x1F3FF).contains(&code)
            || (pending_flag && regional(c));
        if !attaches {
            break;
        }
        pending_flag = false;
        after_zwj = code == 0x200D;
        end = start + offset + c.len_utf8();
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_bytes_at_a_time_agree_with_the_byte_table() {
        // Every lower-cased ASCII byte in every place of the eight, among other bytes.
        for b in (0u8..128).filter(|b| !b.is_ascii_uppercase()) {
            for place in 0..8 {
                for other in [0u8, b'a', b' ', b'_', b'9', b'{'] {
                    let mut eight = [other; 8];
                    eight[place] = b;
                    let bits = word_bytes(u64::from_le_bytes(eight));
                    for (k, &byte) in eight.iter().enumerate() {
                        assert_eq!(
                            bits >> (8 * k + 7) & 1 == 1,
                            is_ascii_word_byte(byte),
                            "{byte:#04x} in place {k} of {eight:?}"
                        );
                    }
                }
            }
        }
    }

    fn check(text: &str, expected: &[(TokenKind, &str, &str)]) {
        let got: Vec<(TokenKind, &str, String)> = tokenize(text)
            .into_iter()
            .map(|t| (t.kind, &text[t.start as usize..t.end as usize], t.norm))
            .collect();
        let expected: Vec<(TokenKind, &str, String)> = expected
            .iter()
            .map(|&(k, raw, norm)| (k, raw, norm.to_owned()))
            .collect();
        assert_eq!(got, expected, "text: {text:?}");
    }

    use TokenKind::*;

    #[test]
    fn tokens_keep_hashtags_mentions_urls_emoji_and_contractions_whole() {
        check(
            "Don't DO it",
            &[
                (Word, "Don't", "don't"),
                (Word, "DO", "do"),
                (Word, "it", "it"),
            ],
        );
        check("don’t", &[(Word, "don’t", "don't")]);
        check(
            "rock 'n' roll",
            &[
                (Word, "rock", "rock"),
                (Word, "n", "n"),
                (Word, "roll", "roll"),
            ],
        );
        check(
            "#Lumora @Sam.bsky.social hi.",
            &[
                (Hashtag, "#Lumora", "lumora"),
                (Mention, "@Sam.bsky.social", "sam.bsky.social"),
                (Word, "hi", "hi"),
            ],
        );
        check(
            "see https://Example.com/a?b=1, ok",
            &[
                (Word, "see", "see"),
                (
                    Url,
                    "https://Example.com/a?b=1",
                    "https://example.com/a?b=1",
                ),
                (Word, "ok", "ok"),
            ],
        );
        check("(www.x.org)", &[(Url, "www.x.org", "www.x.org")]);
        check(
            "so 😡😡 👍🏽 👨‍👩‍👧 🇫🇷!",
            &[
                (Word, "so", "so"),
                (Emoji, "😡", "😡"),
                (Emoji, "😡", "😡"),
                (Emoji, "👍🏽", "👍🏽"),
                (Emoji, "👨‍👩‍👧", "👨‍👩‍👧"),
                (Emoji, "🇫🇷", "🇫🇷"),
            ],
        );
        check(
            "Café CRÈME naïve",
            &[
                (Word, "Café", "cafe"),
                (Word, "CRÈME", "creme"),
                (Word, "naïve", "naive"),
            ],
        );
        check(
            "love#lumora a@b",
            &[
                (Word, "love", "love"),
                (Hashtag, "#lumora", "lumora"),
                (Word, "a", "a"),
                (Mention, "@b", "b"),
            ],
        );
        check("# @ 's", &[(Word, "s", "s")]);
        check(
            "l'été don't_ x'' a'b'c",
            &[
                (Word, "l'été", "l'ete"),
                (Word, "don't_", "don't_"),
                (Word, "x", "x"),
                (Word, "a'b'c", "a'b'c"),
            ],
        );
        check("", &[]);
    }

    #[test]
    fn folding_ignores_case_and_accents() {
        for (input, expected) in [
            ("ÉCLAIR", "eclair"),
            ("Ångström", "angstrom"),
            ("plain", "plain"),
            ("İstanbul", "istanbul"),
            ("l’été", "l'ete"),
        ] {
            assert_eq!(fold(input), expected, "{input}");
        }
    }

    #[test]
    fn folding_into_a_buffer_replaces_what_it_held() {
        let mut folded = String::from("left over");
        for (input, expected) in [
            ("Plain ASCII, MiXeD", "plain ascii, mixed"),
            ("Café CRÈME’s", "cafe creme's"),
            ("", ""),
            ("ÉCLAIR", "eclair"),
        ] {
            fold_into(input, &mut folded);
            assert_eq!(folded, expected, "{input:?}");
        }
    }
}
