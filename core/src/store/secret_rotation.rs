//! Re-sealing every stored secret under a new key (`agentq admin rotate-key`,
//! ARCHITECTURE.md §11). [`SEALED_COLUMNS`] lists every column that holds a value sealed
//! by `core::secrets`; `tests/provider_keys.rs` fails when the schema has a `*_ciphertext`
//! column this list lacks, so a new secret cannot be forgotten by a rotation.
//!
//! Each table is walked in primary-key order, a batch at a time: one transaction locks the
//! batch's rows (`FOR UPDATE`, found by a range scan of the primary-key index from the last
//! batch's key, see [`Store::reseal_batch_sql`]), re-seals each value (`SecretBox::reseal`: values the new key
//! already opens are left alone) and commits. A rotation that stops halfway (a crash, a
//! lost connection) is simply run again: what was done is skipped, what was not is done.

use super::Store;
use crate::{
    StoreError,
    secrets::{Resealed, SecretBox},
};

/// A table holding sealed values: its primary-key columns and its sealed columns.
#[derive(Debug, Clone, Copy)]
pub struct SealedTable {
    /// Table name.
    pub table: &'static str,
    /// Primary-key columns (the walk's order).
    pub key: &'static [&'static str],
    /// Columns of nonce || ciphertext (nullable or not).
    pub columns: &'static [&'static str],
}

/// Every column of the schema that holds a sealed value.
pub const SEALED_COLUMNS: &[SealedTable] = &[
    SealedTable {
        table: "providers",
        key: &["id"],
        columns: &["api_key_ciphertext", "headers_ciphertext"],
    },
    SealedTable {
        table: "user_provider_keys",
        key: &["user_id", "provider_id"],
        columns: &["api_key_ciphertext"],
    },
    SealedTable {
        table: "mcp_servers",
        key: &["id"],
        columns: &[
            "api_key_ciphertext",
            "custom_headers_ciphertext",
            "oauth_client_secret_ciphertext",
        ],
    },
    SealedTable {
        table: "mcp_oauth_tokens",
        key: &["server_id", "user_id"],
        columns: &["access_token_ciphertext", "refresh_token_ciphertext"],
    },
    SealedTable {
        table: "mcp_oauth_states",
        key: &["state_sha256"],
        columns: &["code_verifier_ciphertext"],
    },
    SealedTable {
        table: "user_oidc_tokens",
        key: &["user_id"],
        columns: &["access_token_ciphertext", "refresh_token_ciphertext"],
    },
    SealedTable {
        table: "oidc_client",
        key: &["id"],
        columns: &["client_secret_ciphertext"],
    },
];

/// What a rotation did to one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationCount {
    /// Table name.
    pub table: &'static str,
    /// Values re-sealed under the new key.
    pub resealed: u64,
    /// Values already under the new key (left alone).
    pub current: u64,
    /// Values neither key opens (left alone; the command fails when there are any).
    pub unreadable: u64,
}

/// One fetched row: its physical address (for the update, stable while the batch holds
/// the row's lock), its key columns as text (the walk's cursor) and its sealed values.
type SealedRow = (String, Vec<String>, Vec<Option<Vec<u8>>>);

impl Store {
    /// Re-seals every value of every [`SEALED_COLUMNS`] table under `secrets`' own key,
    /// opening old ones with its previous key, `batch` rows per transaction.
    pub async fn reseal_all(
        &self,
        secrets: &SecretBox,
        batch: u32,
    ) -> Result<Vec<RotationCount>, StoreError> {
        let mut counts = Vec::new();
        for table in SEALED_COLUMNS {
            counts.push(self.reseal_table(table, secrets, batch.max(1)).await?);
        }
        Ok(counts)
    }

    /// The batch query of `t`: the first page, and the page after a cursor (`$2`, the key
    /// columns as text, cast back to their own types). Both compare and order the primary
    /// key's own columns as a row, so each page is a range scan of the primary-key index
    /// that stops after `$1` rows, whatever the table's size.
    pub async fn reseal_batch_sql(&self, t: &SealedTable) -> Result<[String; 2], StoreError> {
        let mut typed = Vec::with_capacity(t.key.len());
        for (i, column) in t.key.iter().enumerate() {
            let ty: String = sqlx::query_scalar(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = $1::regclass AND attname = $2 AND NOT attisdropped",
            )
            .bind(t.table)
            .bind(column)
            .fetch_one(&self.pool)
            .await?;
            typed.push(format!("($2::text[])[{}]::{ty}", i + 1));
        }
        // Identifiers and types come from the constant list above and the catalog, never
        // from input.
        let key = t.key.join(", ");
        let head = format!(
            "SELECT ctid::text, ARRAY[{as_text}], ARRAY[{cols}] FROM {table}",
            as_text = t
                .key
                .iter()
                .map(|k| format!("{k}::text"))
                .collect::<Vec<_>>()
                .join(", "),
            cols = t.columns.join(", "),
            table = t.table,
        );
        let tail = format!("ORDER BY {key} LIMIT $1 FOR UPDATE");
        Ok([
            format!("{head} {tail}"),
            format!("{head} WHERE ({key}) > ({}) {tail}", typed.join(", ")),
        ])
    }

    async fn reseal_table(
        &self,
        t: &SealedTable,
        secrets: &SecretBox,
        batch: u32,
    ) -> Result<RotationCount, StoreError> {
        let [first, next] = self.reseal_batch_sql(t).await?;
        let sets = t
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c} = coalesce(${}, {c})", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        // The row was locked by this transaction's SELECT, so its ctid still names it.
        let update = format!("UPDATE {} SET {sets} WHERE ctid = $1::tid", t.table);
        let mut count = RotationCount {
            table: t.table,
            ..RotationCount::default()
        };
        let mut after: Option<Vec<String>> = None;
        loop {
            let mut tx = self.pool.begin().await?;
            let sql = if after.is_some() { &next } else { &first };
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(i64::from(batch));
            if let Some(cursor) = &after {
                query = query.bind(cursor.clone());
            }
            let rows: Vec<SealedRow> = query.fetch_all(&mut *tx).await?;
            let Some((_, last, _)) = rows.last() else {
                tx.commit().await?;
                return Ok(count);
            };
            after = Some(last.clone());
            for (ctid, _, values) in &rows {
                let mut replaced = Vec::with_capacity(values.len());
                for value in values {
                    replaced.push(match value.as_deref().map(|v| secrets.reseal(v)) {
                        None => None,
                        Some(Resealed::Current) => {
                            count.current += 1;
                            None
                        }
                        Some(Resealed::Unreadable) => {
                            count.unreadable += 1;
                            None
                        }
                        Some(Resealed::Replaced(new)) => {
                            count.resealed += 1;
                            Some(new)
                        }
                    });
                }
                if replaced.iter().all(Option::is_none) {
                    continue;
                }
                let mut query = sqlx::query(sqlx::AssertSqlSafe(update.clone())).bind(ctid);
                for value in replaced {
                    query = query.bind(value);
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
    }

    /// Every `bytea` column named `*_ciphertext` in the schema, as `table.column` (what
    /// [`SEALED_COLUMNS`] must cover).
    pub async fn ciphertext_columns(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT table_name || '.' || column_name FROM information_schema.columns
             WHERE table_schema = current_schema() AND data_type = 'bytea'
               AND column_name LIKE '%\\_ciphertext'
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
