//! Watchlist matching: every watchlist's query (its `query`, OR-ed with its plain `terms`)
//! compiled into one [`QuerySet`], evaluated on a mention's text and fields, and the result
//! as the `WatchlistMatch` records of the event model.

use earshot_core::config::WatchlistConfig;
use earshot_core::model::{Mention, Span, WatchlistMatch};
use earshot_query::{Document, Node, QuerySet, WatchlistQuery};

pub struct WatchlistMatcher {
    set: QuerySet,
}

impl WatchlistMatcher {
    /// Compiles the watchlists. Config validation rejects a query that does not parse; one
    /// met here anyway (a config built in code) is left out with an error logged, so the
    /// other watchlists still match.
    pub fn new(watchlists: &[WatchlistConfig]) -> Self {
        let queries = watchlists
            .iter()
            .filter_map(|watchlist| match query_of(watchlist) {
                Ok(query) => Some(WatchlistQuery {
                    name: watchlist.name.clone(),
                    query,
                }),
                Err(error) => {
                    tracing::error!(watchlist = %watchlist.name, %error, "watchlist query left out");
                    None
                }
            })
            .collect();
        WatchlistMatcher {
            set: QuerySet::new(queries),
        }
    }

    /// The compiled set, for tracing why a query did or did not match.
    pub fn set(&self) -> &QuerySet {
        &self.set
    }

    /// The watchlists `mention` matches, in configuration order, each with the clause that
    /// held, the spans of the text that made it and its relevance. `lang` is the mention's
    /// language for `lang:`.
    pub fn matches(&self, mention: &Mention, lang: Option<&str>) -> Vec<WatchlistMatch> {
        let document = document(mention, lang);
        self.set
            .matches(&document)
            .into_iter()
            .map(|found| WatchlistMatch {
                watchlist: self.set.queries()[found.index].name.clone(),
                relevance: found.relevance,
                clause: self.set.clause(&found),
                spans: found
                    .spans
                    .into_iter()
                    .map(|(start, end)| Span {
                        start: start as i32,
                        end: end as i32,
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The fields of a mention that queries look at.
pub fn document<'a>(mention: &'a Mention, lang: Option<&'a str>) -> Document<'a> {
    Document {
        text: &mention.text,
        author: &mention.author.handle,
        url: mention.url.as_deref(),
        source: &mention.source.kind,
        lang,
        followers: mention.author.followers,
    }
}

/// The watchlist's `query` OR its `terms`.
pub fn query_of(watchlist: &WatchlistConfig) -> Result<Node, earshot_query::ParseError> {
    let terms = (!watchlist.terms.is_empty())
        .then(|| Node::any_of_terms(&watchlist.terms))
        .transpose()?;
    let query = watchlist
        .query
        .as_deref()
        .map(earshot_query::parse)
        .transpose()?;
    Ok(match (query, terms) {
        (Some(query), Some(terms)) => Node::Or(vec![query, terms]),
        (Some(query), None) => query,
        (None, Some(terms)) => terms,
        (None, None) => Node::Or(Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use earshot_core::model::{mention_id, Author, Engagement, Source};

    use super::*;

    fn matcher() -> WatchlistMatcher {
        let watchlist = |name: &str, terms: &[&str], query: Option<&str>| WatchlistConfig {
            name: name.into(),
            terms: terms.iter().map(|t| t.to_string()).collect(),
            query: query.map(str::to_owned),
            sentiment_lexicon: Default::default(),
        };
        WatchlistMatcher::new(&[
            watchlist("lumora", &["Lumora", "#lumora"], None),
            watchlist("parcelly", &["parcelly"], None),
            watchlist(
                "refunds",
                &["money back guarantee"],
                Some("(refund* OR \"money back\") NEAR/3 (lumora OR parcelly) source:reddit"),
            ),
            watchlist("big-accounts", &[], Some("lamp followers:>=1000")),
        ])
    }

    fn mention(text: &str, followers: i64) -> Mention {
        Mention {
            id: mention_id("test", text),
            native_id: text.into(),
            source: Source {
                kind: "reddit".into(),
                instance: "unit".into(),
            },
            url: None,
            author: Author {
                handle: "@sam".into(),
                name: None,
                followers: Some(followers),
                verified: false,
                id: None,
            },
            text: text.into(),
            lang_hint: None,
            created_at: 0,
            collected_at: 0,
            engagement: Engagement::default(),
            parent_id: None,
            conversation_id: None,
            has_media: false,
            deleted_at: None,
        }
    }

    fn check(text: &str, followers: i64, expected: &[(&str, usize)]) {
        let got: Vec<(String, usize)> = matcher()
            .matches(&mention(text, followers), None)
            .into_iter()
            .map(|m| (m.watchlist, m.spans.len()))
            .collect();
        let expected: Vec<(String, usize)> =
            expected.iter().map(|(w, n)| (w.to_string(), *n)).collect();
        assert_eq!(got, expected, "text: {text:?}");
    }

    #[test]
    fn terms_and_queries_match_together() {
        check("My LUMORA lamp died", 10, &[("lumora", 1)]);
        check("lumora, lumora!", 10, &[("lumora", 2)]);
        check("Lumoras are great", 10, &[]);
        check("illumoraX", 10, &[]);
        check(
            "@Lumora where is my order via parcelly?",
            10,
            &[("lumora", 1), ("parcelly", 1)],
        );
        check("love #lumora", 10, &[("lumora", 1)]);
        check("love#lumora", 10, &[("lumora", 1)]);
        check("#lumora #Lumora lumora", 10, &[("lumora", 3)]);
        check(
            "Parcelly, I want a refund now",
            10,
            &[("parcelly", 1), ("refunds", 2)],
        );
        check(
            "a refund, one day, from the parcelly people",
            10,
            &[("parcelly", 1)],
        );
        check("new lamp", 5000, &[("big-accounts", 1)]);
        check("new lamp", 999, &[]);
        check("nothing here", 10, &[]);
        check("", 10, &[]);
    }

    #[test]
    fn spans_point_at_the_text_and_the_clause_says_what_held() {
        let text = "über Parcelly: money back please";
        let matches = matcher().matches(&mention(text, 1), None);
        let span = matches[0].spans[0];
        assert_eq!(&text[span.start as usize..span.end as usize], "Parcelly");
        assert_eq!(matches[1].watchlist, "refunds");
        assert_eq!(
            matches[1].clause,
            "(refund* OR \"money back\") NEAR/3 (lumora OR parcelly) AND source:reddit"
        );
    }
}
