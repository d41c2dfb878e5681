//! [`KnowledgeIndex`]: the articles in a tantivy index held in memory, searched by
//! words (fuzzy in English, by bigrams in Chinese) or by tag.
//!
//! The database is the record of the articles and their versions; this index is built
//! from it at start-up and told of every edit. Writes are rare (an ops edit), so each
//! one opens a writer, commits and closes it, and idle memory is the index alone.

use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::{LowerCaser, RawTokenizer, TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::tokenizer::{Mode, analyzer, is_cjk};
use crate::{Article, Hit, KbError};

/// The most hits one search returns.
pub const MAX_HITS: usize = 50;
/// Words of a query looked up (a pasted page asks for its first ones).
const MAX_QUERY_TERMS: usize = 32;
/// Characters in a hit's snippet.
const SNIPPET_CHARS: usize = 120;
/// The indexing arena (tantivy's minimum is 15 MB; it is freed when the writer closes).
const WRITER_BUDGET: usize = 20_000_000;

/// Tokenizer names registered on the index.
const TEXT: &str = "kb_text";
const TAG: &str = "kb_tag";

#[derive(Debug, Clone, Copy)]
struct Fields {
    id: Field,
    title: Field,
    body: Field,
    /// The tags, searchable as words.
    tags: Field,
    /// The tags as whole lowercased terms, for [`KnowledgeIndex::suggest`].
    tag: Field,
}

/// The searchable articles; see the module documentation. `Sync`: searches run from
/// any thread while an edit is written.
pub struct KnowledgeIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// Serialises writers (tantivy allows one at a time).
    writing: Mutex<()>,
    query_analyzer: Mutex<TextAnalyzer>,
}

impl std::fmt::Debug for KnowledgeIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeIndex")
            .field("articles", &self.len())
            .finish()
    }
}

impl KnowledgeIndex {
    /// An empty index.
    pub fn new() -> Result<Self, KbError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_stored().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TEXT)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let tag = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TAG)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            id: schema.add_u64_field("id", INDEXED | STORED),
            title: schema.add_text_field("title", text.clone()),
            body: schema.add_text_field("body", text.clone()),
            tags: schema.add_text_field("tags", text),
            tag: schema.add_text_field("tag", tag),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(TEXT, analyzer(Mode::Index));
        index.tokenizers().register(
            TAG,
            TextAnalyzer::builder(RawTokenizer::default())
                .filter(LowerCaser)
                .build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            reader,
            fields,
            writing: Mutex::new(()),
            query_analyzer: Mutex::new(analyzer(Mode::Query)),
        })
    }

    /// How many articles are searchable.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `articles`, replacing any with the same id, in one commit; searchable when
    /// this returns.
    pub fn put(&self, articles: &[Article]) -> Result<(), KbError> {
        self.write(|writer, f| {
            for a in articles {
                writer.delete_term(Term::from_field_u64(f.id, a.id));
                let mut doc = TantivyDocument::default();
                doc.add_u64(f.id, a.id);
                doc.add_text(f.title, &a.title);
                doc.add_text(f.body, &a.body);
                for t in &a.tags {
                    doc.add_text(f.tags, t);
                    doc.add_text(f.tag, t);
                }
                writer.add_document(doc)?;
            }
            Ok(())
        })
    }

    /// Takes the article with this id out of the search; searchable no more when this returns.
    pub fn remove(&self, id: u64) -> Result<(), KbError> {
        self.write(|writer, f| {
            writer.delete_term(Term::from_field_u64(f.id, id));
            Ok(())
        })
    }

    fn write(
        &self,
        edit: impl FnOnce(&IndexWriter, Fields) -> Result<(), KbError>,
    ) -> Result<(), KbError> {
        let _one_writer = self
            .writing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut writer: IndexWriter = self.index.writer_with_num_threads(1, WRITER_BUDGET)?;
        edit(&writer, self.fields)?;
        writer.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The best `limit` articles for what an agent typed, best first. English words
    /// match stemmed and with a typo or two (one in a word of 4–7 letters, two from 8);
    /// the last word also as a prefix, for a query still being typed. Chinese matches by
    /// bigrams, so most of a phrase is enough. Title counts most, then tags, then body.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>, KbError> {
        let terms = self.query_terms(query);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, weight) in [(f.title, 3.0), (f.tags, 2.0), (f.body, 1.0)] {
            for term in &terms {
                let t = Term::from_field_text(field, &term.text);
                let exact = TermQuery::new(t.clone(), IndexRecordOption::WithFreqs);
                clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(exact), weight)),
                ));
                if term.cjk {
                    continue;
                }
                let letters = term.text.chars().count();
                let distance = match letters {
                    0..=3 => 0,
                    4..=7 => 1,
                    _ => 2,
                };
                // Fuzzy and prefix matches score a constant, below any exact match.
                if distance > 0 {
                    let fuzzy = FuzzyTermQuery::new(t.clone(), distance, true);
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(fuzzy), 0.3 * weight)),
                    ));
                }
                if term.last && letters >= 2 {
                    let prefix = FuzzyTermQuery::new_prefix(t, distance.min(1), true);
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(prefix), 0.3 * weight)),
                    ));
                }
            }
        }
        let query = BooleanQuery::new(clauses);
        self.hits(&query, limit, true)
    }

    /// Articles carrying any of `tags` (compared whole, case aside) — what the pop
    /// suggests from the IVR path and queue — those with the rarer tags first.
    pub fn suggest(&self, tags: &[String], limit: usize) -> Result<Vec<Hit>, KbError> {
        let clauses: Vec<(Occur, Box<dyn Query>)> = tags
            .iter()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty())
            .map(|t| {
                let q = TermQuery::new(
                    Term::from_field_text(self.fields.tag, &t),
                    IndexRecordOption::WithFreqs,
                );
                (Occur::Should, Box::new(q) as Box<dyn Query>)
            })
            .collect();
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        self.hits(&BooleanQuery::new(clauses), limit, false)
    }

    fn hits(&self, query: &dyn Query, limit: usize, snippets: bool) -> Result<Vec<Hit>, KbError> {
        let limit = limit.clamp(1, MAX_HITS);
        let searcher = self.reader.searcher();
        let top = searcher.search(query, &TopDocs::with_limit(limit).order_by_score())?;
        let f = self.fields;
        let snippet = if snippets {
            let mut g = SnippetGenerator::create(&searcher, query, f.body)?;
            g.set_max_num_chars(SNIPPET_CHARS);
            Some(g)
        } else {
            None
        };
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let body = text(f.body);
            let mut excerpt = snippet
                .as_ref()
                .map(|g| g.snippet_from_doc(&doc).fragment().to_owned())
                .unwrap_or_default();
            if excerpt.is_empty() {
                excerpt = body.chars().take(SNIPPET_CHARS).collect();
            }
            hits.push(Hit {
                id: doc
                    .get_first(f.id)
                    .and_then(|v| v.as_u64())
                    .unwrap_or_default(),
                title: text(f.title),
                tags: doc
                    .get_all(f.tags)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                snippet: excerpt,
                score,
            });
        }
        Ok(hits)
    }

    fn query_terms(&self, query: &str) -> Vec<QueryTerm> {
        let mut analyzer = self
            .query_analyzer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Still being typed: the query does not end in a space or punctuation.
        let typing = query.chars().last().is_some_and(char::is_alphanumeric);
        let end = query.len();
        let mut stream = analyzer.token_stream(query);
        let mut terms: Vec<QueryTerm> = Vec::new();
        while stream.advance() {
            let token = stream.token();
            let cjk = token.text.chars().next().is_some_and(is_cjk);
            if terms.iter().any(|t| t.text == token.text) {
                continue;
            }
            if terms.len() == MAX_QUERY_TERMS {
                break;
            }
            terms.push(QueryTerm {
                text: token.text.clone(),
                cjk,
                last: typing && !cjk && token.offset_to == end,
            });
        }
        terms
    }
}

/// One word of a query, as indexed.
#[derive(Debug)]
struct QueryTerm {
    text: String,
    cjk: bool,
    /// The last word of a query still being typed: matched as a prefix too.
    last: bool,
}
