//! The knowledge base's articles and every version of them (who changed what, when).

use chrono::{DateTime, Utc};

use super::{Backend, Storage, StorageError};

/// An article as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbArticle {
    pub id: u64,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    /// 1 when created, one more at every edit.
    pub version: u32,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One version of an article, kept for ever (a deletion is a version too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbVersion {
    pub version: u32,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub deleted: bool,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// What an ops user sends: the article's new text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbDraft {
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
}

/// How an edit or a deletion went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KbWrite {
    /// Written: the article as it now stands (as it last stood, for a deletion).
    Done(KbArticle),
    /// No such article (or it was deleted).
    NotFound,
    /// Someone else saved it since the version the edit started from.
    Conflict { current: u32 },
}

impl Storage {
    /// Every article that stands (not deleted), by id.
    pub fn kb_articles(&self) -> Result<Vec<KbArticle>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.kb_articles(None),
        }
    }

    /// One standing article.
    pub fn kb_article(&self, id: u64) -> Result<Option<KbArticle>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => Ok(db.kb_articles(Some(id))?.pop()),
        }
    }

    /// Every version of an article, newest first (empty: there never was one).
    pub fn kb_versions(&self, id: u64) -> Result<Vec<KbVersion>, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.kb_versions(id),
        }
    }

    /// Creates an article (version 1) by `by` at `at`.
    pub fn kb_create(
        &self,
        draft: &KbDraft,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<KbArticle, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.kb_create(draft, by, at),
        }
    }

    /// Replaces an article's text if it still is at version `base`; the old text stays
    /// among its versions.
    pub fn kb_update(
        &self,
        id: u64,
        base: u32,
        draft: &KbDraft,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<KbWrite, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.kb_write(id, base, Some(draft), by, at),
        }
    }

    /// Deletes an article if it still is at version `base`; its versions stay, the
    /// deletion the newest of them.
    pub fn kb_delete(
        &self,
        id: u64,
        base: u32,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<KbWrite, StorageError> {
        match &*self.backend {
            Backend::Sqlite(db) => db.kb_write(id, base, None, by, at),
        }
    }
}
