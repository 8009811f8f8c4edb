//! Sentence boundaries (UAX #29) exactly as unicode-segmentation's `split_sentence_bounds`
//! finds them, with a fast path for ASCII text.
//!
//! unicode-segmentation looks every character's sentence category up in its Unicode tables
//! and scans ahead for rule SB8 again at every character it applies to; on tweet-length
//! posts that cost more than scoring them. Most posts are ASCII, and ASCII needs only eleven
//! of the categories: [`AsciiBounds`] runs the same state machine, rule for rule, over bytes
//! with a 128-entry category table, and remembers the SB8 scan. Other text goes to
//! unicode-segmentation. Tests compare both on the corpora and on generated text.

use unicode_segmentation::{USentenceBounds, UnicodeSegmentation};

/// The pieces of `text` between sentence boundaries, as `split_sentence_bounds` gives them
/// (untrimmed; concatenated they are `text`).
pub(crate) fn sentence_bounds(text: &str) -> SentenceBounds<'_> {
    if text.is_ascii() {
        SentenceBounds::Ascii(AsciiBounds::new(text))
    } else {
        SentenceBounds::Unicode(text.split_sentence_bounds())
    }
}

/// The sentences of `text`: the pieces between boundaries, trimmed, empty ones left out.
pub(crate) fn sentences(text: &str) -> impl Iterator<Item = &str> {
    sentence_bounds(text)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

pub(crate) enum SentenceBounds<'a> {
    Ascii(AsciiBounds<'a>),
    Unicode(USentenceBounds<'a>),
}

impl<'a> Iterator for SentenceBounds<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        match self {
            SentenceBounds::Ascii(bounds) => bounds.next(),
            SentenceBounds::Unicode(bounds) => bounds.next(),
        }
    }
}

/// The sentence categories of UAX #29 that ASCII characters have (none is `Sep`, `OLetter`,
/// `Extend` or `Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Any,
    Cr,
    Lf,
    Sp,
    STerm,
    ATerm,
    Close,
    SContinue,
    Numeric,
    Upper,
    Lower,
}

/// The category of each ASCII byte, from unicode-segmentation's `sentence_cat_table`.
const CATEGORY: [Category; 128] = {
    let mut table = [Category::Any; 128];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = match byte as u8 {
            b'\r' => Category::Cr,
            b'\n' => Category::Lf,
            b'\t' | 0x0b | 0x0c | b' ' => Category::Sp,
            b'!' | b'?' => Category::STerm,
            b'.' => Category::ATerm,
            b'"' | b'\'' | b'(' | b')' | b'[' | b']' | b'{' | b'}' => Category::Close,
            b',' | b'-' | b':' | b';' => Category::SContinue,
            b'0'..=b'9' => Category::Numeric,
            b'A'..=b'Z' => Category::Upper,
            b'a'..=b'z' => Category::Lower,
            _ => Category::Any,
        };
        byte += 1;
    }
    table
};

/// What the state machine remembers of the text before a position, runs of `Close` and of
/// `Sp` collapsed into one part (unicode-segmentation's `StatePart`; `Sep` cannot occur).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Sot,
    Eot,
    Other,
    Cr,
    Lf,
    ATerm,
    UpperLower,
    ClosePlus,
    SpPlus,
    STerm,
}

/// The part a character of `category` adds.
#[inline]
fn part_of(category: Category) -> Part {
    match category {
        Category::Cr => Part::Cr,
        Category::Lf => Part::Lf,
        Category::ATerm => Part::ATerm,
        Category::Upper | Category::Lower => Part::UpperLower,
        Category::Close => Part::ClosePlus,
        Category::Sp => Part::SpPlus,
        Category::STerm => Part::STerm,
        _ => Part::Other,
    }
}

/// Whether a run of this part is one part.
#[inline]
fn collapses(part: Part) -> bool {
    matches!(part, Part::ClosePlus | Part::SpPlus)
}

/// The bytes after which a boundary may follow: terminators and paragraph separators.
#[inline]
fn is_terminator_or_separator(byte: u8) -> bool {
    matches!(byte, b'.' | b'!' | b'?' | b'\r' | b'\n')
}

/// The length of ASCII `run` before its first terminator or separator (all of it if none),
/// found eight bytes at a time.
fn until_terminator_or_separator(run: &[u8]) -> usize {
    /// The high bit of each byte of `eight` (ASCII) that is `byte`: the byte XOR `byte` is
    /// zero there, and adding 0x7F to a byte under 0x80 reaches 0x80 unless it is zero,
    /// without a carry into the next byte.
    fn equal(eight: u64, byte: u8) -> u64 {
        !(eight ^ splat(byte)).wrapping_add(splat(0x7F)) & splat(0x80)
    }
    const fn splat(byte: u8) -> u64 {
        u64::from_le_bytes([byte; 8])
    }
    let mut at = 0;
    while let Some(chunk) = run.get(at..at + 8) {
        let eight = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let found = equal(eight, b'.')
            | equal(eight, b'!')
            | equal(eight, b'?')
            | equal(eight, b'\r')
            | equal(eight, b'\n');
        if found != 0 {
            return at + found.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + run[at..]
        .iter()
        .position(|&byte| is_terminator_or_separator(byte))
        .unwrap_or(run.len() - at)
}

/// The last four parts, the newest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State([Part; 4]);

impl State {
    const INITIAL: State = State([Part::Sot; 4]);

    fn next(self, category: Category) -> State {
        let State(parts) = self;
        match (parts[3], category) {
            (Part::ClosePlus, Category::Close) | (Part::SpPlus, Category::Sp) => self,
            _ => State([parts[1], parts[2], parts[3], part_of(category)]),
        }
    }

    /// Whether no rule but SB998 can apply whatever comes next: every other rule needs a
    /// start of text, a paragraph separator or a terminator among the last parts.
    #[inline]
    fn quiet(self) -> bool {
        !self.0.iter().any(|part| {
            matches!(
                part,
                Part::Sot | Part::Cr | Part::Lf | Part::ATerm | Part::STerm
            )
        })
    }

    /// The state after every byte of `run`, as [`State::next`] one byte at a time would
    /// leave it: the newest four parts, found walking back over `run`.
    fn after(self, run: &[u8]) -> State {
        let mut newest = [Part::Other; 4];
        let mut found = 0;
        for &byte in run.iter().rev() {
            let part = part_of(CATEGORY[usize::from(byte)]);
            if found > 0 && part == newest[found - 1] && collapses(part) {
                continue;
            }
            if found == 4 {
                // Four parts of the run are all the state keeps.
                return State([newest[3], newest[2], newest[1], newest[0]]);
            }
            newest[found] = part;
            found += 1;
        }
        // The whole run is in `newest`; its oldest part may continue the state's last.
        let mut state = self;
        for &part in newest[..found].iter().rev() {
            if !(part == state.last() && collapses(part)) {
                let State(parts) = state;
                state = State([parts[1], parts[2], parts[3], part]);
            }
        }
        state
    }

    fn end(self) -> State {
        let State(parts) = self;
        State([parts[1], parts[2], parts[3], Part::Eot])
    }

    fn last(self) -> Part {
        self.0[3]
    }

    /// The part before an optional `Sp*` and an optional `Close*` (`X Close* Sp*`).
    fn before_close_sp(self) -> Part {
        let State(parts) = self;
        let mut at = if parts[3] == Part::SpPlus { 2 } else { 3 };
        if parts[at] == Part::ClosePlus {
            at -= 1;
        }
        parts[at]
    }

    /// SB8a's `SATerm Close* Sp*`.
    fn sb8a(self) -> bool {
        matches!(self.before_close_sp(), Part::STerm | Part::ATerm)
    }

    /// SB9's `SATerm Close*`.
    fn sb9(self) -> bool {
        let State(parts) = self;
        let at = if parts[3] == Part::ClosePlus { 2 } else { 3 };
        matches!(parts[at], Part::STerm | Part::ATerm)
    }

    /// SB11's `SATerm Close* Sp* ParaSep?`.
    fn sb11(self) -> bool {
        let State(parts) = self;
        let mut at = if matches!(parts[3], Part::Cr | Part::Lf) {
            2
        } else {
            3
        };
        if parts[at] == Part::SpPlus {
            at -= 1;
        }
        if parts[at] == Part::ClosePlus {
            at -= 1;
        }
        matches!(parts[at], Part::STerm | Part::ATerm)
    }
}

/// unicode-segmentation's `USentenceBounds` over ASCII text.
pub(crate) struct AsciiBounds<'a> {
    text: &'a str,
    pos: usize,
    state: State,
    sentence_start: Option<usize>,
    /// The last SB8 scan: the position of the first character that decided it (or the end
    /// of the text) and its answer, which holds for every scan starting at or before it.
    sb8: Option<(usize, bool)>,
}

impl<'a> AsciiBounds<'a> {
    fn new(text: &'a str) -> Self {
        debug_assert!(text.is_ascii());
        AsciiBounds {
            text,
            pos: 0,
            state: State::INITIAL,
            sentence_start: None,
            sb8: None,
        }
    }

    /// SB8: `ATerm Close* Sp* × ( ¬(OLetter | Upper | Lower | ParaSep | SATerm) )* Lower`,
    /// scanning from `at` (the character being considered).
    fn sb8(&mut self, state: State, at: usize) -> bool {
        if state.before_close_sp() != Part::ATerm {
            return false;
        }
        if let Some((decided_at, answer)) = self.sb8 {
            if at <= decided_at {
                return answer;
            }
        }
        let bytes = self.text.as_bytes();
        let mut decided = (bytes.len(), false);
        for (offset, &byte) in bytes[at..].iter().enumerate() {
            match CATEGORY[usize::from(byte)] {
                Category::Lower => {
                    decided = (at + offset, true);
                    break;
                }
                Category::Upper
                | Category::Cr
                | Category::Lf
                | Category::STerm
                | Category::ATerm => {
                    decided = (at + offset, false);
                    break;
                }
                _ => {}
            }
        }
        self.sb8 = Some(decided);
        decided.1
    }

    /// The next boundary: the position of the character after it.
    fn next_break(&mut self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() {
            if self.state.quiet() {
                // Nothing can break before the next terminator or separator: skip to it.
                let run = &bytes[self.pos..];
                let length = until_terminator_or_separator(run);
                if length > 0 {
                    self.state = self.state.after(&run[..length]);
                    self.pos += length;
                    continue;
                }
            }
            let at = self.pos;
            let before = self.state;
            let category = CATEGORY[usize::from(bytes[at])];
            self.pos += 1;
            self.state = before.next(category);
            let last = before.last();
            // SB1
            if last == Part::Sot {
                return Some(at);
            }
            // SB3
            if category == Category::Lf && last == Part::Cr {
                continue;
            }
            // SB4
            if matches!(last, Part::Cr | Part::Lf) {
                return Some(at);
            }
            // SB6
            if category == Category::Numeric && last == Part::ATerm {
                continue;
            }
            // SB7
            if category == Category::Upper && before.0[2] == Part::UpperLower && last == Part::ATerm
            {
                continue;
            }
            // SB8
            if self.sb8(before, at) {
                continue;
            }
            // SB8a
            if matches!(
                category,
                Category::SContinue | Category::STerm | Category::ATerm
            ) && before.sb8a()
            {
                continue;
            }
            // SB9
            if matches!(
                category,
                Category::Close | Category::Sp | Category::Cr | Category::Lf
            ) && before.sb9()
            {
                continue;
            }
            // SB10
            if matches!(category, Category::Sp | Category::Cr | Category::Lf) && before.sb8a() {
                continue;
            }
            // SB11
            if before.sb11() {
                return Some(at);
            }
            // SB998
        }
        // SB2
        if matches!(self.state.last(), Part::Sot | Part::Eot) {
            None
        } else {
            self.state = self.state.end();
            Some(self.pos)
        }
    }
}

impl<'a> Iterator for AsciiBounds<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let start = match self.sentence_start {
            Some(start) => start,
            None => self.next_break()?,
        };
        let end = self.next_break()?;
        self.sentence_start = Some(end);
        Some(&self.text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) {
        let expected: Vec<&str> = text.split_sentence_bounds().collect();
        let found: Vec<&str> = AsciiBounds::new(text).collect();
        assert_eq!(found, expected, "{text:?}");
    }

    #[test]
    fn the_terminator_search_stops_where_a_byte_at_a_time_would() {
        // Every ASCII byte at every place of runs of up to 24 bytes, in front of a second
        // byte, so that each lane of the eight-byte search and the tail see each byte.
        let byte_at_a_time = |run: &[u8]| {
            run.iter()
                .position(|&b| is_terminator_or_separator(b))
                .unwrap_or(run.len())
        };
        for byte in 0..128u8 {
            for len in 0..24 {
                for at in 0..len {
                    for other in [b'a', b'.', b'\n', 0x7F, 0x0B] {
                        let mut run = vec![b'x'; len];
                        run[at] = byte;
                        if at + 1 < len {
                            run[at + 1] = other;
                        }
                        assert_eq!(
                            until_terminator_or_separator(&run),
                            byte_at_a_time(&run),
                            "{run:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(until_terminator_or_separator(b"abcdefghij!k"), 10);
        assert_eq!(until_terminator_or_separator(b""), 0);
    }

    #[test]
    fn ascii_bounds_are_unicode_segmentations() {
        for text in [
            "",
            " ",
            "a",
            "Hello world",
            "Hello. World",
            "Hello.World",
            "e.g. this one",
            "Mr. Smith went to Washington. He liked it!",
            "Wow!! Really?! Yes... no.",
            "It cost 3.50. Then \"why?\" she asked.) And so",
            "line one\nline two\r\nline three\r\rfour",
            "Stop. (Then go.) \"Quoted.\" 'single' [x] {y}",
            "etc.) lower after close",
            "etc. , continue; here: there - yes",
            "U.S.A. Is big. u.s.a. is big",
            "end with space.   ",
            "....   ...",
            ".)))))) )))) a",
            "\t\x0b\x0cTabs.\tand feeds\x0c. Done",
            "#hashtag @user http://t.co/x. Next",
        ] {
            check(text);
        }
    }

    #[test]
    fn ascii_bounds_are_unicode_segmentations_on_the_corpora() {
        let mut ascii = 0;
        for text in crate::corpus_texts() {
            let text = text.as_str();
            if text.is_ascii() {
                ascii += 1;
                check(text);
            }
        }
        assert!(ascii > 23_000, "{ascii}");
    }

    #[test]
    fn ascii_bounds_are_unicode_segmentations_on_generated_text() {
        // Characters of every ASCII category, the ones the rules name most often.
        let alphabet = b"aAbZz09.?!\"')([]{},-:; \t\r\n\x0b#@_~";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        for _ in 0..200_000 {
            let len = next(48);
            let text: String = (0..len)
                .map(|_| char::from(alphabet[next(alphabet.len())]))
                .collect();
            check(&text);
        }
        // And every ASCII byte at least once, in every position of a short text.
        for byte in 0u8..128 {
            for template in ["a. #b", "#. b", "A.# B", "x!#", "#", "end. # x"] {
                check(&template.replace('#', &char::from(byte).to_string()));
            }
        }
    }
}
