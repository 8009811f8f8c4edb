//! The query language, parsed into a [`Node`] tree. Grammar, loosest binding first:
//!
//! ```text
//! query   = and { "OR" and }
//! and     = unary { ["AND"] unary }          juxtaposition is AND
//! unary   = "NOT" unary | near
//! near    = primary { ("NEAR/" n | "NEAR/" n "f") primary }
//! primary = "(" query ")" | "\"" phrase "\"" | field ":" value | word
//! word    = term | prefix "*" | "#" tag | "@" handle
//! field   = author | site | lang | source | url | followers (":>N", ":>=N", ":<N", ":<=N", ":N")
//! ```
//!
//! Operators are upper case (`and`, `or`, `not`, `near` are plain words). Both sides of a NEAR
//! are things with a place in the text: words, phrases, or OR groups of them.

use std::fmt;

use crate::text::{fold, tokenize, TokenKind};

/// A query that does not parse: where (0-based character offset) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {}: expected {expected}, found {found}", .position + 1)]
pub struct ParseError {
    pub position: usize,
    pub expected: String,
    pub found: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A word, wildcard, hashtag, mention, emoji or "exact phrase".
    Text(TextPattern),
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    /// Within `distance` words of each other; `ordered`: left before right (`NEAR/nf`).
    Near {
        left: Box<Node>,
        right: Box<Node>,
        distance: u32,
        ordered: bool,
    },
    Field(FieldTest),
}

/// Consecutive words that must appear in order; one word for a plain term.
#[derive(Debug, Clone, PartialEq)]
pub struct TextPattern {
    pub words: Vec<WordPattern>,
    /// As written in the query, for traces.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WordPattern {
    /// Which tokens it may match: `Word` matches words and hashtag and mention bodies.
    pub kind: TokenKind,
    /// Folded text without `#`/`@` (and without the `*` of a wildcard).
    pub text: String,
    /// `refund*`: any token starting with `text`.
    pub prefix: bool,
    /// The word's number in its [`crate::QuerySet`]'s vocabulary, so that evaluation
    /// compares numbers instead of strings; [`crate::NO_ID`] outside a set.
    pub id: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldTest {
    /// The author's handle, without `@`, folded; `prefix` for `author:acme*`.
    Author {
        handle: String,
        prefix: bool,
    },
    /// The mention URL's host is this domain or a subdomain of it.
    Site(String),
    /// The mention's language (detected, else the source's hint), ISO 639-1.
    Lang(String),
    /// The source kind (`reddit`, `hackernews`, `rss`, ...).
    Source(String),
    /// The mention URL contains this text (folded).
    Url(String),
    Followers(Comparison, i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
    Equal,
}

impl Node {
    /// True when the node has a place in the text (can be a side of NEAR).
    pub fn is_positional(&self) -> bool {
        match self {
            Node::Text(_) => true,
            Node::Or(children) => children.iter().all(Node::is_positional),
            _ => false,
        }
    }

    /// Plain `terms` as a query: any one of them.
    pub fn any_of_terms<S: AsRef<str>>(terms: &[S]) -> Result<Node, ParseError> {
        let mut children = Vec::with_capacity(terms.len());
        for term in terms {
            let term = term.as_ref().trim();
            children.push(text_node(term, 0)?);
        }
        Ok(if children.len() == 1 {
            children.pop().expect("one child")
        } else {
            Node::Or(children)
        })
    }
}

/// Parses one query.
pub fn parse(query: &str) -> Result<Node, ParseError> {
    let tokens = lex(query)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        end: query.chars().count(),
    };
    let node = parser.or()?;
    match parser.peek() {
        None => Ok(node),
        Some(token) => Err(parser.error_at(
            token,
            "AND, OR, NOT, NEAR/n, a term or the end of the query",
        )),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lexeme {
    Open,
    Close,
    And,
    Or,
    Not,
    Near(u32, bool),
    /// A quoted phrase, without the quotes.
    Phrase(String),
    /// A bare word (term, wildcard, #tag, @handle) or a `field:value`.
    Word(String),
    /// `field:"quoted value"`.
    FieldPhrase(String, String),
}

struct Lexed {
    lexeme: Lexeme,
    /// Character offset in the query.
    position: usize,
    raw: String,
}

fn lex(query: &str) -> Result<Vec<Lexed>, ParseError> {
    let chars: Vec<char> = query.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let lexeme = match c {
            '(' => {
                i += 1;
                Lexeme::Open
            }
            ')' => {
                i += 1;
                Lexeme::Close
            }
            '"' | '\u{201C}' | '\u{201D}' => {
                let (text, next) = quoted(&chars, i)?;
                i = next;
                Lexeme::Phrase(text)
            }
            _ => {
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !matches!(chars[i], '(' | ')' | '"')
                {
                    i += 1;
                    if chars[i - 1] == ':' && chars.get(i) == Some(&'"') {
                        break;
                    }
                }
                let word: String = chars[start..i].iter().collect();
                if word.ends_with(':') && chars.get(i) == Some(&'"') {
                    let (value, next) = quoted(&chars, i)?;
                    i = next;
                    Lexeme::FieldPhrase(word.trim_end_matches(':').to_owned(), value)
                } else {
                    match word.as_str() {
                        "AND" => Lexeme::And,
                        "OR" => Lexeme::Or,
                        "NOT" => Lexeme::Not,
                        w if w.starts_with("NEAR") => near(w, start)?,
                        _ => Lexeme::Word(word),
                    }
                }
            }
        };
        out.push(Lexed {
            lexeme,
            position: start,
            raw: chars[start..i].iter().collect(),
        });
    }
    Ok(out)
}

fn quoted(chars: &[char], open: usize) -> Result<(String, usize), ParseError> {
    let close = chars[open + 1..]
        .iter()
        .position(|&c| matches!(c, '"' | '\u{201C}' | '\u{201D}'))
        .ok_or_else(|| ParseError {
            position: chars.len(),
            expected: "a closing '\"'".into(),
            found: "the end of the query".into(),
        })?;
    Ok((
        chars[open + 1..open + 1 + close].iter().collect(),
        open + close + 2,
    ))
}

fn near(word: &str, position: usize) -> Result<Lexeme, ParseError> {
    let error = || ParseError {
        position,
        expected: "a distance after NEAR, such as NEAR/3 or NEAR/3f".into(),
        found: format!("{word:?}"),
    };
    let spec = word.strip_prefix("NEAR/").ok_or_else(error)?;
    let (digits, ordered) = match spec.strip_suffix('f') {
        Some(digits) => (digits, true),
        None => (spec, false),
    };
    let distance = digits.parse::<u32>().map_err(|_| error())?;
    Ok(Lexeme::Near(distance, ordered))
}

struct Parser {
    tokens: Vec<Lexed>,
    next: usize,
    /// Character length of the query, the position of "the end".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Lexed> {
        self.tokens.get(self.next)
    }

    fn error_at(&self, token: &Lexed, expected: &str) -> ParseError {
        ParseError {
            position: token.position,
            expected: expected.into(),
            found: format!("{:?}", token.raw),
        }
    }

    fn error_here(&self, expected: &str) -> ParseError {
        match self.peek() {
            Some(token) => self.error_at(token, expected),
            None => ParseError {
                position: self.end,
                expected: expected.into(),
                found: "the end of the query".into(),
            },
        }
    }

    fn or(&mut self) -> Result<Node, ParseError> {
        let mut children = vec![self.and()?];
        while self.peek().is_some_and(|t| t.lexeme == Lexeme::Or) {
            self.next += 1;
            children.push(self.and()?);
        }
        Ok(if children.len() == 1 {
            children.pop().expect("one child")
        } else {
            Node::Or(children)
        })
    }

    fn and(&mut self) -> Result<Node, ParseError> {
        let mut children = vec![self.unary()?];
        loop {
            match self.peek().map(|t| &t.lexeme) {
                Some(Lexeme::And) => {
                    self.next += 1;
                    children.push(self.unary()?);
                }
                Some(
                    Lexeme::Open
                    | Lexeme::Not
                    | Lexeme::Phrase(_)
                    | Lexeme::Word(_)
                    | Lexeme::FieldPhrase(..),
                ) => children.push(self.unary()?),
                _ => break,
            }
        }
        Ok(if children.len() == 1 {
            children.pop().expect("one child")
        } else {
            Node::And(children)
        })
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        if self.peek().is_some_and(|t| t.lexeme == Lexeme::Not) {
            self.next += 1;
            return Ok(Node::Not(Box::new(self.unary()?)));
        }
        self.near()
    }

    fn near(&mut self) -> Result<Node, ParseError> {
        let mut left = self.primary()?;
        while let Some(Lexeme::Near(distance, ordered)) = self.peek().map(|t| t.lexeme.clone()) {
            let operator = self.next;
            self.next += 1;
            let right = self.primary()?;
            if !left.is_positional() || !right.is_positional() {
                return Err(self.error_at(
                    &self.tokens[operator],
                    "NEAR between terms, phrases or OR groups of them (not AND, NOT or fields)",
                ));
            }
            left = Node::Near {
                left: Box::new(left),
                right: Box::new(right),
                distance,
                ordered,
            };
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        const EXPECTED: &str = "a term, \"phrase\", #hashtag, @mention, field:value or '('";
        let Some(token) = self.tokens.get(self.next) else {
            return Err(self.error_here(EXPECTED));
        };
        let position = token.position;
        let node = match &token.lexeme {
            Lexeme::Open => {
                self.next += 1;
                let inner = self.or()?;
                if !self.peek().is_some_and(|t| t.lexeme == Lexeme::Close) {
                    return Err(self.error_here("')'"));
                }
                self.next += 1;
                return Ok(inner);
            }
            Lexeme::Phrase(phrase) => {
                let mut node = text_node(phrase, position + 1)?;
                if let Node::Text(pattern) = &mut node {
                    pattern.source = format!("\"{phrase}\"");
                }
                node
            }
            Lexeme::FieldPhrase(field, value) => field_node(field, value, position)?,
            Lexeme::Word(word) => match word.split_once(':') {
                Some((field, value))
                    if !field.is_empty()
                        && field.chars().all(|c| c.is_ascii_alphabetic())
                        && !matches!(field.to_ascii_lowercase().as_str(), "http" | "https") =>
                {
                    field_node(field, value, position)?
                }
                _ => text_node(word, position)?,
            },
            _ => return Err(self.error_here(EXPECTED)),
        };
        self.next += 1;
        Ok(node)
    }
}

/// A term or phrase: tokenized like the text, with a trailing `*` on a word as a wildcard.
fn text_node(source: &str, position: usize) -> Result<Node, ParseError> {
    let mut words = Vec::new();
    for (offset, piece) in source
        .split_whitespace()
        .map(|p| (p.as_ptr() as usize - source.as_ptr() as usize, p))
    {
        let piece_position = position + source[..offset].chars().count();
        let (body, prefix) = match piece.strip_suffix('*') {
            Some(body) => (body, true),
            None => (piece, false),
        };
        if body.contains('*') {
            return Err(ParseError {
                position: piece_position + body.chars().position(|c| c == '*').unwrap_or(0),
                expected: "'*' only at the end of a word (refund*)".into(),
                found: format!("{piece:?}"),
            });
        }
        let tokens = tokenize(body);
        if prefix && (tokens.len() != 1 || tokens[0].norm.chars().count() < 2) {
            return Err(ParseError {
                position: piece_position,
                expected: "at least two letters of one word before '*'".into(),
                found: format!("{piece:?}"),
            });
        }
        words.extend(tokens.into_iter().map(|token| WordPattern {
            kind: token.kind,
            text: token.norm,
            prefix,
            id: crate::NO_ID,
        }));
    }
    if words.is_empty() {
        return Err(ParseError {
            position,
            expected: "a word, hashtag, mention or emoji".into(),
            found: format!("{source:?}"),
        });
    }
    Ok(Node::Text(TextPattern {
        words,
        source: source.to_owned(),
    }))
}

fn field_node(field: &str, value: &str, position: usize) -> Result<Node, ParseError> {
    let value_position = position + field.chars().count() + 1;
    let value_error = |expected: &str| ParseError {
        position: value_position,
        expected: expected.into(),
        found: format!("{value:?}"),
    };
    if value.trim().is_empty() {
        return Err(value_error("a value after the ':'"));
    }
    let folded = fold(value.trim());
    let test = match field.to_ascii_lowercase().as_str() {
        "author" => {
            let handle = folded.trim_start_matches('@');
            match handle.strip_suffix('*') {
                Some(prefix) => FieldTest::Author {
                    handle: prefix.to_owned(),
                    prefix: true,
                },
                None => FieldTest::Author {
                    handle: handle.to_owned(),
                    prefix: false,
                },
            }
        }
        "site" => FieldTest::Site(folded.trim_start_matches("www.").to_owned()),
        "lang" => {
            if folded.len() != 2 || !folded.chars().all(|c| c.is_ascii_lowercase()) {
                return Err(value_error(
                    "a two-letter ISO 639-1 language code (lang:en)",
                ));
            }
            FieldTest::Lang(folded)
        }
        "source" => FieldTest::Source(folded),
        "url" => FieldTest::Url(folded),
        "followers" => {
            let (comparison, digits) = if let Some(rest) = folded.strip_prefix(">=") {
                (Comparison::GreaterOrEqual, rest)
            } else if let Some(rest) = folded.strip_prefix("<=") {
                (Comparison::LessOrEqual, rest)
            } else if let Some(rest) = folded.strip_prefix('>') {
                (Comparison::Greater, rest)
            } else if let Some(rest) = folded.strip_prefix('<') {
                (Comparison::Less, rest)
            } else {
                (Comparison::Equal, folded.as_str())
            };
            let count = digits
                .replace('_', "")
                .parse::<i64>()
                .map_err(|_| value_error("a follower count such as >10000, >=500 or <50"))?;
            FieldTest::Followers(comparison, count)
        }
        _ => {
            return Err(ParseError {
                position,
                expected: "a field among author:, site:, lang:, source:, url:, followers:".into(),
                found: format!("{field:?}"),
            })
        }
    };
    Ok(Node::Field(test))
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let grouped = |f: &mut fmt::Formatter<'_>, node: &Node| match node {
            Node::Or(_) | Node::And(_) => write!(f, "({node})"),
            _ => write!(f, "{node}"),
        };
        match self {
            Node::Text(pattern) => f.write_str(&pattern.source),
            Node::Or(children) | Node::And(children) => {
                let separator = if matches!(self, Node::Or(_)) {
                    " OR "
                } else {
                    " AND "
                };
                for (i, child) in children.iter().enumerate() {
                    if i > 0 {
                        f.write_str(separator)?;
                    }
                    grouped(f, child)?;
                }
                Ok(())
            }
            Node::Not(child) => {
                f.write_str("NOT ")?;
                grouped(f, child)
            }
            Node::Near {
                left,
                right,
                distance,
                ordered,
            } => {
                grouped(f, left)?;
                write!(f, " NEAR/{distance}{} ", if *ordered { "f" } else { "" })?;
                grouped(f, right)
            }
            Node::Field(test) => write!(f, "{test}"),
        }
    }
}

impl fmt::Display for FieldTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldTest::Author { handle, prefix } => {
                write!(f, "author:{handle}{}", if *prefix { "*" } else { "" })
            }
            FieldTest::Site(site) => write!(f, "site:{site}"),
            FieldTest::Lang(lang) => write!(f, "lang:{lang}"),
            FieldTest::Source(source) => write!(f, "source:{source}"),
            FieldTest::Url(url) => write!(f, "url:{url}"),
            FieldTest::Followers(comparison, count) => {
                let op = match comparison {
                    Comparison::Greater => ">",
                    Comparison::GreaterOrEqual => ">=",
                    Comparison::Less => "<",
                    Comparison::LessOrEqual => "<=",
                    Comparison::Equal => "",
                };
                write!(f, "followers:{op}{count}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and prints back in canonical form, or the error.
    fn check(query: &str, expected: &str) {
        let got = match parse(query) {
            Ok(node) => node.to_string(),
            Err(error) => format!("error: {error}"),
        };
        assert_eq!(got, expected, "query: {query:?}");
    }

    #[test]
    fn queries_parse_with_precedence() {
        check("lumora", "lumora");
        check("lumora lamp", "lumora AND lamp");
        check("a OR b c", "a OR (b AND c)");
        check("(a OR b) c", "(a OR b) AND c");
        check("a AND NOT b", "a AND NOT b");
        check("NOT (a OR b)", "NOT (a OR b)");
        check("\"exact  phrase\" refund*", "\"exact  phrase\" AND refund*");
        check(
            "(refund* OR \"money back\") NEAR/3 lumora",
            "(refund* OR \"money back\") NEAR/3 lumora",
        );
        check("late NEAR/2f delivery", "late NEAR/2f delivery");
        check("#Lumora OR @lumora_help", "#Lumora OR @lumora_help");
        check(
            "author:@Sam site:www.Example.com lang:EN source:reddit url:/r/lamps followers:>10_000",
            "author:sam AND site:example.com AND lang:en AND source:reddit AND url:/r/lamps AND followers:>10000",
        );
        check(
            "author:\"Jane Doe\" OR followers:<=5",
            "author:jane doe OR followers:<=5",
        );
        check("https://lumora.com/x", "https://lumora.com/x");
        check("and or not near", "and AND or AND not AND near");
    }

    #[test]
    fn parse_errors_name_the_position_and_what_was_expected() {
        check("", "error: at character 1: expected a term, \"phrase\", #hashtag, @mention, field:value or '(', found the end of the query");
        check("lumora AND", "error: at character 11: expected a term, \"phrase\", #hashtag, @mention, field:value or '(', found the end of the query");
        check(
            "(a OR b",
            "error: at character 8: expected ')', found the end of the query",
        );
        check("a b)", "error: at character 4: expected AND, OR, NOT, NEAR/n, a term or the end of the query, found \")\"");
        check(
            "\"open phrase",
            "error: at character 13: expected a closing '\"', found the end of the query",
        );
        check("a NEAR b", "error: at character 3: expected a distance after NEAR, such as NEAR/3 or NEAR/3f, found \"NEAR\"");
        check("a NEAR/x b", "error: at character 3: expected a distance after NEAR, such as NEAR/3 or NEAR/3f, found \"NEAR/x\"");
        check("(a AND b) NEAR/3 c", "error: at character 11: expected NEAR between terms, phrases or OR groups of them (not AND, NOT or fields), found \"NEAR/3\"");
        check("re*fund", "error: at character 3: expected '*' only at the end of a word (refund*), found \"re*fund\"");
        check("r*", "error: at character 1: expected at least two letters of one word before '*', found \"r*\"");
        check("colour:red", "error: at character 1: expected a field among author:, site:, lang:, source:, url:, followers:, found \"colour\"");
        check("followers:>lots", "error: at character 11: expected a follower count such as >10000, >=500 or <50, found \">lots\"");
        check("lang:english", "error: at character 6: expected a two-letter ISO 639-1 language code (lang:en), found \"english\"");
        check(
            "a OR !!!",
            "error: at character 6: expected a word, hashtag, mention or emoji, found \"!!!\"",
        );
        check("OR a", "error: at character 1: expected a term, \"phrase\", #hashtag, @mention, field:value or '(', found \"OR\"");
    }
}
