//! PL/pgSQL functions agentq defines in the database from its own SQL, one per version of
//! that SQL: a transition of several statements in one round trip.
//!
//! A transaction of two statements costs four round trips (`BEGIN`, each statement,
//! `COMMIT`), and on a machine whose cores PostgreSQL already fills each costs about as
//! much CPU as a one-row update (bench/RESULTS.md, session 22: `pgbench`, a transaction of
//! two one-row updates ran at 4,640 a second that way against 9,800 as one call of a
//! PL/pgSQL function doing both). A PL/pgSQL function runs its statements in the caller's
//! transaction, each with a snapshot of its own taken when it starts (a `VOLATILE`
//! function's, in `READ COMMITTED`), so a statement after a lock sees what the lock's
//! holder committed, as the next statement of a transaction would.
//!
//! The function is the binary's own: its text is built from the same SQL as the statements
//! it stands for, and its name ends in a digest of that text, so two versions of agentq
//! during a rolling deploy each call theirs, and no migration holds code. The first call
//! that finds it missing (`undefined_function`) defines it (`CREATE OR REPLACE`, in the
//! schema the role's tables are created in) and calls again. A role that may not create
//! it there (`insufficient_privilege`) gets [`Called::CannotDefine`], and the caller runs
//! the statements as a transaction instead.
//!
//! Not a temporary function (`pg_temp`): a connection's first temporary object creates
//! its temporary schema, and a new schema makes every connection of the database drop
//! every plan it cached (measured: the finish's statements planned 98 to 320 times a run
//! instead of once a connection, session 22).

use sha2::{Digest, Sha256};
use sqlx::{
    Connection, PgConnection, Postgres,
    postgres::{PgArguments, PgRow},
    query::Query,
};

use crate::StoreError;

/// A function agentq defines when it first needs it: its name and its definition.
pub(super) struct SqlFunction {
    /// `agentq_<what>_<12 hex digits of the definition's SHA-256>`.
    pub(super) name: String,
    definition: String,
}

impl SqlFunction {
    /// The function `what` whose `CREATE OR REPLACE FUNCTION {name}(...)` statement
    /// `define` writes for a name.
    pub(super) fn new(what: &str, define: impl Fn(&str) -> String) -> Self {
        let digest = hex::encode(Sha256::digest(define("").as_bytes()));
        let name = format!("agentq_{what}_{}", &digest[..12]);
        let definition = define(&name);
        Self { name, definition }
    }
}

/// What [`fetch_optional_calling`] did.
pub(super) enum Called {
    /// The call's row, if any.
    Row(Option<PgRow>),
    /// The function is missing and this role may not define it.
    CannotDefine,
}

/// Runs `query` (a call of `function`, built anew for each try) on `conn`, which must not
/// be in a transaction (a failed call would abort it): if the function is missing, defines
/// it and runs the query again.
pub(super) async fn fetch_optional_calling<'q>(
    conn: &mut PgConnection,
    function: &SqlFunction,
    query: impl Fn() -> Query<'q, Postgres, PgArguments>,
) -> Result<Called, StoreError> {
    match query().fetch_optional(&mut *conn).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_FUNCTION) => {
            // Two connections may define it at once: the one that loses may fail
            // (`tuple concurrently updated`), and calls what the other defined.
            if let Err(e) = define(conn, function).await {
                if let sqlx::Error::Database(d) = &e
                    && d.code().as_deref() == Some(INSUFFICIENT_PRIVILEGE)
                {
                    tracing::warn!(function = %function.name, error = %d,
                        "cannot define a function; running its statements one by one");
                    return Ok(Called::CannotDefine);
                }
                tracing::debug!(function = %function.name, error = %e, "defining a function");
            }
            Ok(Called::Row(query().fetch_optional(&mut *conn).await?))
        }
        other => Ok(Called::Row(other?)),
    }
}

/// `function`'s definition, committed on its own.
async fn define(conn: &mut PgConnection, function: &SqlFunction) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(function.definition.as_str()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// SQLSTATE `undefined_function`.
const UNDEFINED_FUNCTION: &str = "42883";

/// SQLSTATE `insufficient_privilege`.
const INSUFFICIENT_PRIVILEGE: &str = "42501";
