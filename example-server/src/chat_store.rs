//! Chat rooms' messages kept in a SQL database, so a late joiner sees what was said
//! before it came and can page further back (`chat.history`).
//!
//! One table, `chat_messages`, created on first use; a message's `id` is its place in
//! the database (rising in the order messages were stored, across rooms and servers).
//! SQLite (a file: the example's default, nothing to set up) and PostgreSQL (several
//! servers of a cluster share it) through [`sqlx`]'s `Any` driver, so both run the same
//! statements.

use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use streampod::protocol::types::DateTime;

use crate::models::ChatMessage;

/// Most messages one page may hold (`chat.history`'s `limit`).
pub const MAX_PAGE: u32 = 200;

/// Most bytes of messages one page holds (a join's history, a `chat.history` answer):
/// 256 KiB, whatever `limit` says. A page holds at least one message, so a message
/// stored before posts were capped still reaches its readers, alone on its page.
pub const PAGE_BYTES: usize = 256 << 10;

/// The bytes a message counts for against [`PAGE_BYTES`]: its text, and a little for
/// the rest of it.
fn page_bytes(message: &ChatMessage) -> usize {
    message.content.len() + message.sender_name.len() + message.channel_id.len() + 96
}

/// How long a query may wait for a pooled connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The chat database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database this server supports.
    #[error("unsupported database URL '{scheme}:…': use sqlite:PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl {
        /// What came before the URL's first `:`.
        scheme: String,
    },
    /// The database did not accept the connection or the table.
    #[error("cannot open the chat database ({kind}): {source}")]
    Open {
        /// `sqlite` or `postgres`.
        kind: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("chat database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which SQL dialect a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

impl Kind {
    fn of(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(16).collect(),
            }),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// The table; only the key's type differs between the two.
    fn create_table(self) -> &'static str {
        match self {
            Self::Sqlite => {
                "CREATE TABLE IF NOT EXISTS chat_messages (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    channel_id TEXT NOT NULL,
                    sender_name TEXT NOT NULL,
                    sender_id TEXT,
                    content TEXT NOT NULL,
                    sent_at_micros BIGINT NOT NULL)"
            }
            Self::Postgres => {
                "CREATE TABLE IF NOT EXISTS chat_messages (
                    id BIGSERIAL PRIMARY KEY,
                    channel_id TEXT NOT NULL,
                    sender_name TEXT NOT NULL,
                    sender_id TEXT,
                    content TEXT NOT NULL,
                    sent_at_micros BIGINT NOT NULL)"
            }
        }
    }
}

/// A SQLite URL that creates its file when missing (sqlx opens existing files only,
/// unless the URL says `mode=rwc`).
fn creating(url: &str) -> String {
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The chat database: cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct ChatStore {
    pool: AnyPool,
    kind: Kind,
}

impl ChatStore {
    /// Opens the database at `url` (`sqlite:chat.db` creates the file when missing;
    /// `postgres://user:password@host:port/database`) and creates the table if needed.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the URL is of another kind, or the database cannot be
    /// reached or refuses the table.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let kind = Kind::of(url)?;
        sqlx::any::install_default_drivers();
        let url = match kind {
            Kind::Sqlite => creating(url),
            Kind::Postgres => url.to_owned(),
        };
        let open = |source| StoreError::Open {
            kind: kind.name(),
            source,
        };
        let pool = AnyPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if kind == Kind::Sqlite {
                        // A write-ahead log, synced at checkpoints rather than on every
                        // commit: a crash may lose the last moments' messages, never
                        // corrupt the file; writers stop waiting on each other's fsyncs.
                        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"] {
                            connection.execute(pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(open)?;
        sqlx::query(kind.create_table())
            .execute(&pool)
            .await
            .map_err(open)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS chat_messages_by_room ON chat_messages (channel_id, id)",
        )
        .execute(&pool)
        .await
        .map_err(open)?;
        Ok(Self { pool, kind })
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// Stores `message`; answers its id.
    ///
    /// # Errors
    ///
    /// [`StoreError::Query`] when the database refuses it.
    pub async fn save(&self, message: &ChatMessage) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO chat_messages (channel_id, sender_name, sender_id, content, sent_at_micros)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&message.channel_id)
        .bind(&message.sender_name)
        .bind(message.sender_id.clone())
        .bind(&message.content)
        .bind(message.timestamp.timestamp_micros())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// Up to `limit` of `room`'s messages with ids below `before` (the newest when
    /// `None`) and within [`PAGE_BYTES`], oldest first, and whether older ones remain.
    /// Rows are read newest first and reading stops at the budget, so a page costs at
    /// most one message more than it holds.
    ///
    /// # Errors
    ///
    /// [`StoreError::Query`] when the database cannot be read.
    pub async fn page(
        &self,
        room: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let limit = limit.min(MAX_PAGE);
        let mut rows = sqlx::query(
            "SELECT id, channel_id, sender_name, sender_id, content, sent_at_micros
             FROM chat_messages WHERE channel_id = $1 AND id < $2
             ORDER BY id DESC LIMIT $3",
        )
        .bind(room)
        .bind(before.unwrap_or(i64::MAX))
        // One more than asked: whether older messages remain.
        .bind(i64::from(limit) + 1)
        .fetch(&self.pool);
        let (mut messages, mut bytes, mut more) = (Vec::new(), 0, false);
        while let Some(row) = rows.try_next().await? {
            let message = message_of(&row)?;
            bytes += page_bytes(&message);
            if messages.len() == limit as usize || (!messages.is_empty() && bytes > PAGE_BYTES) {
                more = true;
                break;
            }
            messages.push(message);
        }
        messages.reverse();
        Ok((messages, more))
    }
}

fn message_of(row: &AnyRow) -> Result<ChatMessage, sqlx::Error> {
    let micros: i64 = row.try_get("sent_at_micros")?;
    Ok(ChatMessage {
        id: Some(row.try_get("id")?),
        sender_name: row.try_get("sender_name")?,
        content: row.try_get("content")?,
        timestamp: DateTime::from_timestamp_micros(micros).ok_or_else(|| {
            sqlx::Error::Decode(format!("sent_at_micros {micros} is out of range").into())
        })?,
        channel_id: row.try_get("channel_id")?,
        exclude_sender: false,
        sender_id: row.try_get("sender_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Now, to the microsecond the table keeps.
    fn now() -> DateTime {
        let micros = DateTime::from(std::time::SystemTime::now()).timestamp_micros();
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    fn message(room: &str, content: &str) -> ChatMessage {
        ChatMessage {
            id: None,
            sender_name: "ann (user 1)".into(),
            content: content.into(),
            timestamp: now(),
            channel_id: room.into(),
            exclude_sender: false,
            sender_id: Some("1".into()),
        }
    }

    #[tokio::test]
    async fn pages_a_room_oldest_first_and_says_when_more_remain() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("chat.db").display());
        let store = ChatStore::open(&url).await.unwrap();
        for n in 0..5 {
            store.save(&message("a", &format!("a{n}"))).await.unwrap();
            store.save(&message("b", &format!("b{n}"))).await.unwrap();
        }
        let (newest, more) = store.page("a", None, 3).await.unwrap();
        let contents: Vec<&str> = newest.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["a2", "a3", "a4"]);
        assert!(more);
        let (older, more) = store.page("a", newest[0].id, 3).await.unwrap();
        let contents: Vec<&str> = older.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["a0", "a1"]);
        assert!(!more);
        // Everything comes back as it was stored.
        let sent = message("c", "kept");
        let id = store.save(&sent).await.unwrap();
        let (stored, _) = store.page("c", None, 1).await.unwrap();
        assert_eq!(
            stored,
            [ChatMessage {
                id: Some(id),
                ..sent
            }]
        );
        // A second open of the same file finds the table and its rows.
        let again = ChatStore::open(&url).await.unwrap();
        assert_eq!(again.page("b", None, 50).await.unwrap().0.len(), 5);
    }

    #[tokio::test]
    async fn refuses_other_urls_with_a_hint() {
        let error = ChatStore::open("mysql://root@localhost/x")
            .await
            .unwrap_err();
        assert!(error.to_string().contains("sqlite:PATH"), "{error}");
    }
}
