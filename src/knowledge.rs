//! The knowledge base: articles ops write and agents look up during a call.
//!
//! [`Knowledge`] keeps the database (the record: every article and every version of it)
//! and the search index (the `kb` crate, in memory, built from the database at start-up)
//! in step: each edit is written to the database first, then to the index, one edit at
//! a time, so the index never shows an older text than the database holds.

use std::sync::Mutex;

use chrono::Utc;
use kb::{Article, Hit, KnowledgeIndex};

use crate::storage::{KbArticle, KbDraft, KbWrite, Storage, StorageError};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest body, in characters.
pub const MAX_BODY_CHARS: usize = 100_000;
/// Most tags on one article, and the longest tag.
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 64;

/// Why the knowledge base could not answer or save.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Index(#[from] kb::KbError),
}

/// See the module documentation.
#[derive(Debug)]
pub struct Knowledge {
    storage: Storage,
    index: KnowledgeIndex,
    /// One edit at a time, database then index.
    editing: Mutex<()>,
}

fn searchable(a: &KbArticle) -> Article {
    Article {
        id: a.id,
        title: a.title.clone(),
        body: a.body.clone(),
        tags: a.tags.clone(),
    }
}

impl Knowledge {
    /// Builds the index from every standing article in `storage`.
    pub fn load(storage: Storage) -> Result<Self, KnowledgeError> {
        let index = KnowledgeIndex::new()?;
        let articles = storage.kb_articles()?;
        let docs: Vec<Article> = articles.iter().map(searchable).collect();
        for chunk in docs.chunks(1_000) {
            index.put(chunk)?;
        }
        Ok(Self {
            storage,
            index,
            editing: Mutex::new(()),
        })
    }

    /// How many articles are searchable.
    pub fn len(&self) -> u64 {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// What an agent typed, best first (see [`KnowledgeIndex::search`]).
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<Hit>, KnowledgeError> {
        Ok(self.index.search(query, limit)?)
    }

    /// Articles tagged with a step of the call's way in (`main:1`) or its queue.
    pub fn suggest(&self, tags: &[String], limit: usize) -> Result<Vec<Hit>, KnowledgeError> {
        Ok(self.index.suggest(tags, limit)?)
    }

    pub fn create(&self, draft: &KbDraft, by: &str) -> Result<KbArticle, KnowledgeError> {
        let _one = self.lock();
        let article = self.storage.kb_create(draft, by, Utc::now())?;
        self.index.put(&[searchable(&article)])?;
        Ok(article)
    }

    pub fn update(
        &self,
        id: u64,
        base: u32,
        draft: &KbDraft,
        by: &str,
    ) -> Result<KbWrite, KnowledgeError> {
        let _one = self.lock();
        let written = self.storage.kb_update(id, base, draft, by, Utc::now())?;
        if let KbWrite::Done(a) = &written {
            self.index.put(&[searchable(a)])?;
        }
        Ok(written)
    }

    pub fn delete(&self, id: u64, base: u32, by: &str) -> Result<KbWrite, KnowledgeError> {
        let _one = self.lock();
        let written = self.storage.kb_delete(id, base, by, Utc::now())?;
        if matches!(written, KbWrite::Done(_)) {
            self.index.remove(id)?;
        }
        Ok(written)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.editing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `draft` trimmed, its tags trimmed and without repeats, or what is wrong with it.
pub fn check(draft: KbDraft) -> Result<KbDraft, String> {
    let title = draft.title.trim().to_owned();
    if title.is_empty() {
        return Err("title: empty".into());
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(format!("title: longer than {MAX_TITLE_CHARS} characters"));
    }
    if draft.body.chars().count() > MAX_BODY_CHARS {
        return Err(format!("body: longer than {MAX_BODY_CHARS} characters"));
    }
    let mut tags: Vec<String> = Vec::new();
    for tag in &draft.tags {
        let tag = tag.trim();
        if tag.is_empty() {
            return Err("tags: an empty tag".into());
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(format!(
                "tags: {tag:?} is longer than {MAX_TAG_CHARS} characters"
            ));
        }
        if !tags.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
            tags.push(tag.to_owned());
        }
    }
    if tags.len() > MAX_TAGS {
        return Err(format!("tags: more than {MAX_TAGS}"));
    }
    Ok(KbDraft {
        title,
        body: draft.body.trim_end().to_owned(),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(title: &str, body: &str, tags: &[&str]) -> KbDraft {
        KbDraft {
            title: title.into(),
            body: body.into(),
            tags: tags.iter().map(|t| (*t).into()).collect(),
        }
    }

    #[test]
    fn edits_reach_the_search_and_every_version_is_kept() {
        let storage = Storage::open(":memory:").expect("storage");
        let kb = Knowledge::load(storage.clone()).expect("load");
        // The demo articles were seeded and indexed.
        assert_eq!(kb.len(), 7);
        assert!(!kb.search("医保", 5).expect("search").is_empty());

        let a = kb
            .create(
                &draft("洗牙须知", "洗牙前一小时不要进食。", &["main:1"]),
                "ops",
            )
            .expect("create");
        assert_eq!(a.version, 1);
        assert_eq!(kb.search("进食", 5).expect("search")[0].id, a.id);

        let edited = kb
            .update(
                a.id,
                1,
                &draft("洗牙须知", "洗牙前请刷牙。", &["main:1"]),
                "ops2",
            )
            .expect("update");
        let KbWrite::Done(edited) = edited else {
            panic!("not saved: {edited:?}")
        };
        assert_eq!((edited.version, edited.updated_by.as_str()), (2, "ops2"));
        assert!(kb.search("进食", 5).expect("search").is_empty());
        assert_eq!(kb.search("刷牙", 5).expect("search")[0].id, a.id);

        // An edit from the old version loses nothing: it is refused.
        let stale = kb
            .update(a.id, 1, &draft("x", "", &[]), "ops")
            .expect("update");
        assert_eq!(stale, KbWrite::Conflict { current: 2 });

        assert!(matches!(
            kb.delete(a.id, 2, "ops").expect("delete"),
            KbWrite::Done(_)
        ));
        assert!(
            kb.search("刷牙", 5)
                .expect("search")
                .iter()
                .all(|h| h.id != a.id)
        );
        assert_eq!(storage.kb_article(a.id).expect("read"), None);
        assert_eq!(
            kb.update(a.id, 3, &draft("y", "", &[]), "ops").expect("u"),
            KbWrite::NotFound
        );

        let versions = storage.kb_versions(a.id).expect("versions");
        let seen: Vec<(u32, &str, &str, bool)> = versions
            .iter()
            .map(|v| (v.version, v.body.as_str(), v.by.as_str(), v.deleted))
            .collect();
        assert_eq!(
            seen,
            [
                (3, "洗牙前请刷牙。", "ops", true),
                (2, "洗牙前请刷牙。", "ops2", false),
                (1, "洗牙前一小时不要进食。", "ops", false),
            ]
        );

        // Rebuilt from the database, the index holds what stands.
        let again = Knowledge::load(storage).expect("reload");
        assert_eq!(again.len(), 7);
        assert!(
            again
                .search("刷牙", 5)
                .expect("search")
                .iter()
                .all(|h| h.id != a.id)
        );
    }

    #[test]
    fn drafts_are_checked_and_tidied() {
        let ok = check(draft("  Title ", "body  \n", &[" main:1", "Main:1", "x"])).expect("ok");
        assert_eq!(ok, draft("Title", "body", &["main:1", "x"]));
        assert!(
            check(draft(" ", "", &[]))
                .expect_err("refused")
                .starts_with("title")
        );
        assert!(
            check(draft("t", "", &[""]))
                .expect_err("refused")
                .starts_with("tags")
        );
        assert!(
            check(draft(&"长".repeat(201), "", &[]))
                .expect_err("refused")
                .starts_with("title")
        );
        let many: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(
            check(draft("t", "", &many))
                .expect_err("refused")
                .starts_with("tags")
        );
    }
}
