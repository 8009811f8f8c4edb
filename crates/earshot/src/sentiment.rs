//! `earshot sentiment`: VADER scores for lines of text, streamed.
//!
//! Reads `id<TAB>text` lines (a line without a tab is a text whose id is its line number) and
//! writes `id<TAB>neg<TAB>neu<TAB>pos<TAB>compound` with 4 decimals, the scores of
//! vaderSentiment 3.3.2. Memory stays constant whatever the input's length: one line buffer,
//! bounded by [`MAX_LINE_BYTES`]. A line that cannot be scored (invalid UTF-8, empty, too long)
//! gets an error on stderr naming its line number, and the run goes on.

use std::fmt::Write as _;
use std::io::{self, BufRead, Write};

use earshot_sentiment::{Scratch, SentimentAnalyzer};

/// The longest line scored; a longer one is reported and skipped without being held whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What a run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub scored: u64,
    pub rejected: u64,
}

/// Scores every line of `input` onto `output`, reporting bad lines on `errors`.
pub fn run(
    analyzer: &SentimentAnalyzer,
    mut input: impl BufRead,
    output: impl Write,
    mut errors: impl Write,
) -> io::Result<Summary> {
    let mut output = io::BufWriter::with_capacity(64 * 1024, output);
    let mut summary = Summary::default();
    let mut line = Vec::new();
    let mut record = String::new();
    let mut scratch = Scratch::default();
    let mut number = 0u64;
    while let Some(complete) = read_line(&mut input, &mut line, MAX_LINE_BYTES)? {
        number += 1;
        let rejection = if !complete {
            Some(format!("longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match score_line(analyzer, &line, number, &mut scratch, &mut record) {
                Ok(()) => {
                    output.write_all(record.as_bytes())?;
                    None
                }
                Err(reason) => Some(reason),
            }
        };
        match rejection {
            None => summary.scored += 1,
            Some(reason) => {
                summary.rejected += 1;
                writeln!(errors, "earshot sentiment: line {number}: {reason}")?;
            }
        }
    }
    output.flush()?;
    Ok(summary)
}

/// Formats the output record of one line into `record`, or says why the line is rejected.
fn score_line(
    analyzer: &SentimentAnalyzer,
    line: &[u8],
    number: u64,
    scratch: &mut Scratch,
    record: &mut String,
) -> Result<(), String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err("empty line".to_owned());
    }
    let line = std::str::from_utf8(line).map_err(|error| {
        format!(
            "invalid UTF-8 at byte {} of the line",
            error.valid_up_to() + 1
        )
    })?;
    record.clear();
    let text = match line.split_once('\t') {
        Some((id, text)) => {
            if text.is_empty() {
                return Err(format!("id {id:?} has no text after the tab"));
            }
            record.push_str(id);
            text
        }
        None => {
            write!(record, "{number}").expect("writing to a String");
            line
        }
    };
    let scores = analyzer.polarity_scores_with(text, scratch);
    for score in [scores.neg, scores.neu, scores.pos, scores.compound] {
        record.push('\t');
        push_four_decimals(score, record);
    }
    record.push('\n');
    Ok(())
}

/// Appends a score already rounded to at most 4 decimals as `format!("{:.4}")` would, through
/// integers: the score is the double nearest some k / 10^4, so score * 10^4 rounds to k.
fn push_four_decimals(score: f64, record: &mut String) {
    let ten_thousandths = (score.abs() * 10_000.0).round() as u64;
    let sign = if score.is_sign_negative() { "-" } else { "" };
    write!(
        record,
        "{sign}{}.{:04}",
        ten_thousandths / 10_000,
        ten_thousandths % 10_000
    )
    .expect("writing to a String");
}

/// Reads one line (with its newline, if any) into `line`, keeping at most `limit` bytes of it.
/// Returns `None` at the end of input, `Some(false)` when the line was longer than `limit`
/// (the rest of it is read and dropped), `Some(true)` otherwise.
fn read_line(
    input: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut complete = true;
    let mut read_any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(read_any.then_some(complete));
        }
        read_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..=at], true),
            None => (available, false),
        };
        let taken = chunk.len();
        if complete && line.len() + taken <= limit {
            line.extend_from_slice(chunk);
        } else {
            complete = false;
            line.clear();
        }
        input.consume(taken);
        if done {
            return Ok(Some(complete));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected_out: &str, expected_err: &str, expected: Summary) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = run(&SentimentAnalyzer::default(), input, &mut out, &mut err).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), expected_out);
        assert_eq!(String::from_utf8(err).unwrap(), expected_err);
        assert_eq!(summary, expected);
    }

    #[test]
    fn scores_print_as_four_decimals() {
        for score in [
            0.0, -0.0, 1.0, -1.0, 0.108, 0.062, 0.4404, -0.5423, 0.0001, -0.9999, 0.999,
        ] {
            let mut record = String::new();
            push_four_decimals(score, &mut record);
            assert_eq!(record, format!("{score:.4}"));
        }
    }

    #[test]
    fn lines_with_and_without_ids() {
        check(
            b"t1\tThe book was good.\nThe book was bad.\r\nt3\tThe book was on the table.",
            "t1\t0.0000\t0.5080\t0.4920\t0.4404\n2\t0.5380\t0.4620\t0.0000\t-0.5423\nt3\t0.0000\t1.0000\t0.0000\t0.0000\n",
            "",
            Summary { scored: 3, rejected: 0 },
        );
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        check(
            b"a\tgood\n\n\xff\xfe bad bytes\nb\t\nc\tsad\n",
            "a\t0.0000\t0.0000\t1.0000\t0.4404\nc\t1.0000\t0.0000\t0.0000\t-0.4767\n",
            "earshot sentiment: line 2: empty line\n\
             earshot sentiment: line 3: invalid UTF-8 at byte 1 of the line\n\
             earshot sentiment: line 4: id \"b\" has no text after the tab\n",
            Summary {
                scored: 2,
                rejected: 3,
            },
        );
    }

    #[test]
    fn an_overlong_line_is_skipped_without_being_held() {
        let mut input = b"x\t".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\ny\tgood\n");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let reader = io::BufReader::with_capacity(4096, input.as_slice());
        let summary = run(&SentimentAnalyzer::default(), reader, &mut out, &mut err).unwrap();
        assert_eq!(
            summary,
            Summary {
                scored: 1,
                rejected: 1
            }
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "y\t0.0000\t0.0000\t1.0000\t0.4404\n"
        );
        assert!(String::from_utf8(err)
            .unwrap()
            .contains("line 1: longer than 1048576 bytes"));
    }
}
