//! The knowledge base's search engine: articles agents look things up in while a
//! patient is on the line.
//!
//! - [`tokenizer`]: how Chinese and English text is cut into searchable words.
//! - [`index`]: [`KnowledgeIndex`], the articles in a tantivy index in memory.
//!
//! The articles themselves, their versions and who edited them live in the
//! application's database; this crate only finds them.

pub mod index;
pub mod tokenizer;

pub use index::{KnowledgeIndex, MAX_HITS};

/// What the index holds of an article.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hit {
    pub id: u64,
    pub title: String,
    pub tags: Vec<String>,
    /// The part of the body around the words asked for (its start when they are only
    /// in the title or tags).
    pub snippet: String,
    /// Relevance; higher is better, comparable only within one answer.
    pub score: f32,
}

/// Why the index could not be searched or written.
#[derive(Debug, thiserror::Error)]
#[error("knowledge base index: {0}")]
pub struct KbError(#[from] tantivy::TantivyError);

#[cfg(test)]
mod tests;
