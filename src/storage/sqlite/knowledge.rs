//! The knowledge base's SQL: `kb_articles` holds each article as it stands, `kb_versions`
//! every version ever saved (a deletion too), written in one transaction with it.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{Sqlite, json_list, parse_list};
use crate::storage::knowledge::{KbArticle, KbDraft, KbVersion, KbWrite};
use crate::storage::{StorageError, parse_timestamp, timestamp};

type RawArticle = (i64, String, String, String, i64, String, String);

fn raw_article(r: &Row<'_>) -> rusqlite::Result<RawArticle> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn number<T: TryFrom<i64>>(column: &'static str, n: i64) -> Result<T, StorageError> {
    T::try_from(n).map_err(|_| StorageError::Corrupt {
        column,
        value: n.to_string(),
    })
}

fn article(
    (id, title, body, tags, version, at, by): RawArticle,
) -> Result<KbArticle, StorageError> {
    Ok(KbArticle {
        id: number("kb_articles.id", id)?,
        title,
        body,
        tags: parse_list("kb_articles.tags", &tags)?,
        version: number("kb_articles.version", version)?,
        updated_at: parse_timestamp("kb_articles.updated_at", &at)?,
        updated_by: by,
    })
}

fn add_version(
    tx: &Transaction<'_>,
    id: i64,
    version: i64,
    draft: &KbDraft,
    deleted: bool,
    by: &str,
    at: &str,
) -> Result<(), StorageError> {
    tx.execute(
        "INSERT INTO kb_versions (article_id, version, title, body, tags, deleted, at, by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            id,
            version,
            draft.title,
            draft.body,
            json_list(&draft.tags),
            deleted,
            at,
            by
        ],
    )?;
    Ok(())
}

/// A new article at version 1, with its first version; its id.
fn insert_article(
    tx: &Transaction<'_>,
    draft: &KbDraft,
    by: &str,
    at: &str,
) -> Result<i64, StorageError> {
    tx.execute(
        "INSERT INTO kb_articles (title, body, tags, version, updated_at, updated_by, deleted)
         VALUES (?1, ?2, ?3, 1, ?4, ?5, 0)",
        params![draft.title, draft.body, json_list(&draft.tags), at, by],
    )?;
    let id = tx.last_insert_rowid();
    add_version(tx, id, 1, draft, false, by, at)?;
    Ok(id)
}

const ARTICLE_COLUMNS: &str = "id, title, body, tags, version, updated_at, updated_by";

impl Sqlite {
    pub(in crate::storage) fn kb_articles(
        &self,
        id: Option<u64>,
    ) -> Result<Vec<KbArticle>, StorageError> {
        let conn = self.lock();
        let raws = match id {
            Some(id) => {
                let Ok(id) = i64::try_from(id) else {
                    return Ok(Vec::new());
                };
                conn.query_row(
                    &format!(
                        "SELECT {ARTICLE_COLUMNS} FROM kb_articles WHERE id = ?1 AND NOT deleted"
                    ),
                    [id],
                    raw_article,
                )
                .optional()?
                .into_iter()
                .collect::<Vec<_>>()
            }
            None => {
                let mut stmt = conn.prepare(&format!(
                    "SELECT {ARTICLE_COLUMNS} FROM kb_articles WHERE NOT deleted ORDER BY id"
                ))?;
                stmt.query_map([], raw_article)?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        drop(conn);
        raws.into_iter().map(article).collect()
    }

    pub(in crate::storage) fn kb_versions(&self, id: u64) -> Result<Vec<KbVersion>, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(Vec::new());
        };
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT version, title, body, tags, deleted, at, by FROM kb_versions
             WHERE article_id = ?1 ORDER BY version DESC",
        )?;
        let raws = stmt
            .query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter()
            .map(|(version, title, body, tags, deleted, at, by)| {
                Ok(KbVersion {
                    version: number("kb_versions.version", version)?,
                    title,
                    body,
                    tags: parse_list("kb_versions.tags", &tags)?,
                    deleted,
                    at: parse_timestamp("kb_versions.at", &at)?,
                    by,
                })
            })
            .collect()
    }

    pub(in crate::storage) fn kb_create(
        &self,
        draft: &KbDraft,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<KbArticle, StorageError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let when = timestamp(at);
        let id = insert_article(&tx, draft, by, &when)?;
        tx.commit()?;
        Ok(KbArticle {
            id: number("kb_articles.id", id)?,
            title: draft.title.clone(),
            body: draft.body.clone(),
            tags: draft.tags.clone(),
            version: 1,
            updated_at: at,
            updated_by: by.to_owned(),
        })
    }

    /// An edit (`Some(draft)`) or a deletion (`None`) of article `id` at version `base`.
    pub(in crate::storage) fn kb_write(
        &self,
        id: u64,
        base: u32,
        draft: Option<&KbDraft>,
        by: &str,
        at: DateTime<Utc>,
    ) -> Result<KbWrite, StorageError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(KbWrite::NotFound);
        };
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let current = tx
            .query_row(
                &format!("SELECT {ARTICLE_COLUMNS} FROM kb_articles WHERE id = ?1 AND NOT deleted"),
                [id],
                raw_article,
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(KbWrite::NotFound);
        };
        let current = article(current)?;
        if current.version != base {
            return Ok(KbWrite::Conflict {
                current: current.version,
            });
        }
        let version = i64::from(base) + 1;
        let when = timestamp(at);
        let kept = KbDraft {
            title: current.title.clone(),
            body: current.body.clone(),
            tags: current.tags.clone(),
        };
        let text = draft.unwrap_or(&kept);
        tx.execute(
            "UPDATE kb_articles SET title = ?2, body = ?3, tags = ?4, version = ?5,
                 updated_at = ?6, updated_by = ?7, deleted = ?8
             WHERE id = ?1",
            params![
                id,
                text.title,
                text.body,
                json_list(&text.tags),
                version,
                when,
                by,
                draft.is_none()
            ],
        )?;
        add_version(&tx, id, version, text, draft.is_none(), by, &when)?;
        tx.commit()?;
        Ok(KbWrite::Done(KbArticle {
            id: number("kb_articles.id", id)?,
            title: text.title.clone(),
            body: text.body.clone(),
            tags: text.tags.clone(),
            version: number("kb_articles.version", version)?,
            updated_at: at,
            updated_by: by.to_owned(),
        }))
    }
}

/// A few made-up articles for the demo clinic, added once to a knowledge base that never
/// had any (deleting them all does not bring them back). Tagged with the demo menu's
/// choices and queues, so the pop suggests them.
pub(super) fn seed_demo_articles(conn: &mut Connection) -> Result<(), StorageError> {
    let ever: i64 = conn.query_row("SELECT COUNT(*) FROM kb_versions", [], |r| r.get(0))?;
    if ever > 0 {
        return Ok(());
    }
    let demo: [(&str, &str, &[&str]); 7] = [
        (
            "预约、改约与取消",
            "电话预约：核对姓名和手机号后选择医生和时段。改约请至少提前一天；当天取消不收费，\
             连续三次爽约需到前台预约。复诊患者优先安排原医生。（演示文章）",
            &["main:1", "appointments", "预约", "改约"],
        ),
        (
            "门诊时间与地址",
            "周一至周五 8:00–20:00，周六、周日 9:00–17:00，法定节假日另行通知。\
             地址：演示路 1 号（示例地址），地铁 1 号线演示站 B 口，地下停车场前两小时免费。（演示文章）",
            &["main:2", "enquiries", "门诊时间", "地址"],
        ),
        (
            "医保与费用",
            "可使用本市医保卡结算洗牙、补牙、拔牙等基础项目；种植牙、正畸、美白为自费项目。\
             发票在缴费后于前台开具，电子发票发送到预留手机号。（演示文章）",
            &["main:2", "enquiries", "医保", "费用"],
        ),
        (
            "种植牙术后护理",
            "术后 24 小时内不要刷牙、不要漱口，可冰敷减轻肿胀；两小时后可进温凉软食。\
             出血不止、剧烈疼痛或发热，请立即按 9 转急诊或到院就诊。（演示文章）",
            &["main:9", "urgent", "种植", "术后"],
        ),
        (
            "拔牙后出血怎么办",
            "咬紧纱布 30–40 分钟；24 小时内唾液带血丝属正常。若出血量大、持续超过一小时，\
             请患者立即到院，夜间请前往合作医院急诊（示例）。（演示文章）",
            &["main:9", "urgent", "拔牙", "出血"],
        ),
        (
            "Rescheduling or cancelling an appointment",
            "Confirm the patient's name and phone number, then offer the same doctor first. \
             Changes need one day's notice; cancelling is free. (Demo article.)",
            &["main:1", "appointments", "english"],
        ),
        (
            "Opening hours, address and parking",
            "Monday to Friday 8:00-20:00, weekends 9:00-17:00. 1 Demo Road (sample address); \
             the first two hours of underground parking are free. (Demo article.)",
            &["main:2", "enquiries", "english"],
        ),
    ];
    let tx = conn.transaction()?;
    let when = timestamp(Utc::now());
    for (title, body, tags) in demo {
        let draft = KbDraft {
            title: title.into(),
            body: body.into(),
            tags: tags.iter().map(|t| (*t).into()).collect(),
        };
        insert_article(&tx, &draft, "demo", &when)?;
    }
    tx.commit()?;
    Ok(())
}
