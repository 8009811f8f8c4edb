//! The queries of a set compiled into one array of operations, each query's contiguous and
//! in pre-order, so that evaluating a candidate reads a few adjacent cache lines instead of
//! following the pointers of its [`Node`] tree (with 10,000 queries, those pointers miss the
//! cache and cost more than the rest of matching).

use crate::parse::{Comparison, FieldTest, Node};
use crate::text::TokenKind;

/// A query word as evaluation needs it: its vocabulary number and the tokens it may match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Word {
    pub(crate) id: u32,
    pub(crate) kind: TokenKind,
}

/// One node of a query, in eight bytes (eight to a cache line). The children of a node
/// follow it; `end` is the index after its last descendant.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    /// A one-word text pattern.
    Word(Word),
    /// A phrase: the words `phrases[phrase]` says.
    Phrase {
        phrase: u32,
    },
    Or {
        end: u32,
    },
    And {
        end: u32,
    },
    /// The child is the next operation.
    Not {
        end: u32,
    },
    /// The left side is the next operation, the right side the one after it (at the left
    /// side's end); the rest is `nears[near]`.
    Near {
        near: u32,
    },
    /// `lang:` with two letters, here rather than behind an index.
    Lang([u8; 2]),
    /// `followers:>n` (and `followers:>=n+1`) for an `n` of 32 bits, here rather than
    /// behind an index.
    FollowersOver(i32),
    /// `followers:<n` (and `followers:<=n-1`) for an `n` of 32 bits.
    FollowersUnder(i32),
    /// The other field tests: `fields[test]`.
    Field {
        test: u32,
    },
}

const _: () = assert!(std::mem::size_of::<Op>() == 8);

/// `followers:` `comparison` `count` as an inline operation, when the count fits: `>= n` is
/// `> n - 1` and `<= n` is `< n + 1` on whole numbers; `=` stays a field test.
fn followers_op(comparison: Comparison, count: i64) -> Option<Op> {
    let fits = |n: i64| i32::try_from(n).ok();
    match comparison {
        Comparison::Greater => fits(count).map(Op::FollowersOver),
        Comparison::GreaterOrEqual => fits(count.checked_sub(1)?).map(Op::FollowersOver),
        Comparison::Less => fits(count).map(Op::FollowersUnder),
        Comparison::LessOrEqual => fits(count.checked_add(1)?).map(Op::FollowersUnder),
        Comparison::Equal => None,
    }
}

/// What a NEAR operation holds beside its place.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Near {
    /// The index after its right side.
    pub(crate) end: u32,
    pub(crate) distance: u32,
    pub(crate) ordered: bool,
}

#[derive(Debug, Default)]
pub(crate) struct Program {
    ops: Vec<Op>,
    /// Per query, the index of its root operation.
    roots: Vec<u32>,
    /// The words of every phrase, one phrase after the other.
    phrase_words: Vec<Word>,
    /// Per phrase, its range in `phrase_words`.
    phrases: Vec<(u32, u32)>,
    nears: Vec<Near>,
    fields: Vec<FieldTest>,
    /// The clause of each operation as it reads in a match, one after the other (those of
    /// a query together): the pattern as written for text, the whole clause for NOT, NEAR
    /// and fields; empty for OR and AND, whose clause depends on which children held.
    clauses: String,
    /// Where the clause of operation `i` starts in `clauses`; it ends where the next starts.
    clause_starts: Vec<u32>,
}

impl Program {
    /// Appends `query`, whose words are numbered, as the next query.
    pub(crate) fn push(&mut self, query: &Node) {
        self.roots.push(self.ops.len() as u32);
        self.compile(query);
    }

    fn compile(&mut self, node: &Node) {
        let at = self.ops.len();
        match node {
            Node::Text(pattern) => {
                let mut words = pattern.words.iter().map(|w| Word {
                    id: w.id,
                    kind: w.kind,
                });
                let op = if let [_] = pattern.words.as_slice() {
                    Op::Word(words.next().expect("one word"))
                } else {
                    let from = self.phrase_words.len() as u32;
                    self.phrase_words.extend(words);
                    self.phrases.push((from, self.phrase_words.len() as u32));
                    Op::Phrase {
                        phrase: self.phrases.len() as u32 - 1,
                    }
                };
                self.ops.push(op);
                self.clause(&pattern.source);
            }
            Node::Or(children) | Node::And(children) => {
                // Placeholders, like the others below, until `end` is known.
                self.ops.push(Op::Or { end: 0 });
                self.clause("");
                for child in children {
                    self.compile(child);
                }
                let end = self.ops.len() as u32;
                self.ops[at] = match node {
                    Node::Or(_) => Op::Or { end },
                    _ => Op::And { end },
                };
            }
            Node::Not(child) => {
                self.ops.push(Op::Or { end: 0 });
                self.clause(&format!("NOT {}", crate::grouped(child, child.to_string())));
                self.compile(child);
                self.ops[at] = Op::Not {
                    end: self.ops.len() as u32,
                };
            }
            Node::Near {
                left,
                right,
                distance,
                ordered,
            } => {
                // A placeholder until the right side's place is known.
                self.ops.push(Op::Or { end: 0 });
                self.clause(&node.to_string());
                self.compile(left);
                self.compile(right);
                self.nears.push(Near {
                    end: self.ops.len() as u32,
                    distance: *distance,
                    ordered: *ordered,
                });
                self.ops[at] = Op::Near {
                    near: self.nears.len() as u32 - 1,
                };
            }
            Node::Field(test) => {
                let inline = match test {
                    FieldTest::Lang(lang) if lang.len() == 2 => {
                        Some(Op::Lang([lang.as_bytes()[0], lang.as_bytes()[1]]))
                    }
                    &FieldTest::Followers(comparison, count) => followers_op(comparison, count),
                    _ => None,
                };
                let op = inline.unwrap_or_else(|| {
                    self.fields.push(test.clone());
                    Op::Field {
                        test: self.fields.len() as u32 - 1,
                    }
                });
                self.ops.push(op);
                self.clause(&node.to_string());
            }
        }
    }

    /// Records the clause of the operation just pushed.
    fn clause(&mut self, clause: &str) {
        if self.clause_starts.is_empty() {
            self.clause_starts.push(0);
        }
        self.clauses.push_str(clause);
        self.clause_starts.push(self.clauses.len() as u32);
    }

    /// The root operation of query `index`.
    pub(crate) fn root(&self, index: usize) -> usize {
        self.roots[index] as usize
    }

    pub(crate) fn op(&self, i: usize) -> Op {
        self.ops[i]
    }

    /// The index after operation `i` and its descendants.
    pub(crate) fn end(&self, i: usize) -> usize {
        match self.ops[i] {
            Op::Word(_)
            | Op::Phrase { .. }
            | Op::Lang(_)
            | Op::FollowersOver(_)
            | Op::FollowersUnder(_)
            | Op::Field { .. } => i + 1,
            Op::Or { end } | Op::And { end } | Op::Not { end } => end as usize,
            Op::Near { near } => self.nears[near as usize].end as usize,
        }
    }

    /// The NEAR operation `i`'s right side, distance and order.
    pub(crate) fn near(&self, i: usize, near: u32) -> (usize, Near) {
        (self.end(i + 1), self.nears[near as usize])
    }

    /// The children of operation `i`, which ends at `end`.
    pub(crate) fn children(&self, i: usize, end: u32) -> impl Iterator<Item = usize> + '_ {
        let mut next = i + 1;
        std::iter::from_fn(move || {
            (next < end as usize).then(|| {
                let child = next;
                next = self.end(child);
                child
            })
        })
    }

    /// The words of a text operation; none for the others.
    pub(crate) fn words(&self, i: usize) -> &[Word] {
        match &self.ops[i] {
            Op::Word(word) => std::slice::from_ref(word),
            Op::Phrase { phrase } => {
                let (from, to) = self.phrases[*phrase as usize];
                &self.phrase_words[from as usize..to as usize]
            }
            _ => &[],
        }
    }

    pub(crate) fn field(&self, test: u32) -> &FieldTest {
        &self.fields[test as usize]
    }

    pub(crate) fn clause_of(&self, i: usize) -> &str {
        &self.clauses[self.clause_starts[i] as usize..self.clause_starts[i + 1] as usize]
    }

    /// The operations of query `index`: from its root to where the next query starts.
    pub(crate) fn query(&self, index: usize) -> (usize, usize) {
        let end = self
            .roots
            .get(index + 1)
            .map_or(self.ops.len(), |&next| next as usize);
        (self.roots[index] as usize, end)
    }

    /// Appends the clause of operation `i` as it held: `held(j)` says whether operation `j`
    /// did. One branch of an OR held: it is the clause, as it would read on its own; more:
    /// each grouped, joined by OR. An AND held: each child grouped, joined by AND.
    pub(crate) fn render(&self, i: usize, held: &dyn Fn(usize) -> bool, clause: &mut String) {
        match self.ops[i] {
            Op::Or { end } => {
                let start = clause.len();
                let mut first: Option<(usize, usize)> = None;
                for child in self.children(i, end).filter(|&child| held(child)) {
                    let Some((first_child, first_end)) = first else {
                        self.render(child, held, clause);
                        first = Some((child, clause.len()));
                        continue;
                    };
                    if first_end == clause.len() {
                        // The second branch: the first is grouped too.
                        self.group(first_child, clause, start);
                    }
                    clause.push_str(" OR ");
                    let at = clause.len();
                    self.render(child, held, clause);
                    self.group(child, clause, at);
                    first = Some((first_child, usize::MAX));
                }
            }
            Op::And { end } => {
                for (k, child) in self.children(i, end).enumerate() {
                    if k > 0 {
                        clause.push_str(" AND ");
                    }
                    let at = clause.len();
                    self.render(child, held, clause);
                    self.group(child, clause, at);
                }
            }
            _ => clause.push_str(self.clause_of(i)),
        }
    }

    /// Room enough for any clause of the query at `root`: its texts, and at most `" AND "`
    /// and a pair of parentheses per operation.
    pub(crate) fn clause_capacity(&self, root: usize) -> usize {
        let end = self.end(root);
        let texts = self.clause_starts[end] - self.clause_starts[root];
        texts as usize + 7 * (end - root)
    }

    /// Puts the end of `clause` from `at` on, the clause of operation `i`, in parentheses
    /// when it is an OR or AND of more than one word.
    fn group(&self, i: usize, clause: &mut String, at: usize) {
        if self.is_group(i) && clause[at..].contains(' ') {
            clause.insert(at, '(');
            clause.push(')');
        }
    }

    /// Whether operation `i` is an OR or AND, whose clause is grouped within another.
    pub(crate) fn is_group(&self, i: usize) -> bool {
        matches!(self.ops[i], Op::Or { .. } | Op::And { .. })
    }
}
