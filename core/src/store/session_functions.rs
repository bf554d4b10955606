//! Functions a connection defines for itself, in its own temporary schema (`pg_temp`),
//! the first time it calls them: a transition of several statements in one round trip.
//!
//! A transaction of two statements costs four round trips (`BEGIN`, each statement,
//! `COMMIT`), and on a machine whose cores PostgreSQL already fills each costs about as
//! much CPU as a one-row update (bench/RESULTS.md, session 22: `pgbench`, a transaction of two
//! one-row updates ran at 4,640 a second that way against 9,800 as one call of a PL/pgSQL
//! function doing both). A PL/pgSQL function runs its statements in the caller's transaction, each
//! with a snapshot of its own taken when it starts (a `VOLATILE` function's, in `READ
//! COMMITTED`), so a statement after a lock sees what the lock's holder committed, as the
//! next statement of a transaction would.
//!
//! The function is the binary's own: its text is built from the same SQL as the statements
//! it stands for, and a connection defines it in `pg_temp` (gone with the connection), so
//! two versions of agentq during a rolling deploy each run theirs, and no migration holds
//! code. A call on a connection that has not defined it yet fails (`undefined_function`,
//! or `invalid_schema_name` before the connection's first temporary object); the
//! connection then defines it and calls again. A connection
//! needs the `TEMPORARY` privilege on the database (PostgreSQL grants it to every role by
//! default).

use sqlx::{
    Connection, PgConnection, Postgres,
    postgres::{PgArguments, PgRow},
    query::Query,
};

use crate::StoreError;

/// A function a connection defines in `pg_temp` when it first needs it.
pub(super) struct SessionFunction {
    /// `CREATE OR REPLACE FUNCTION pg_temp.…`, built from the statements it stands for.
    pub(super) definition: fn() -> String,
}

/// Runs `query` (a call of `function`, built anew for each try) on `conn`, which must not
/// be in a transaction (a failed call would abort it): if the connection has not defined
/// `function` yet, defines it and runs the query again, both in one transaction.
pub(super) async fn fetch_optional_calling<'q>(
    conn: &mut PgConnection,
    function: &SessionFunction,
    query: impl Fn() -> Query<'q, Postgres, PgArguments>,
) -> Result<Option<PgRow>, StoreError> {
    match query().fetch_optional(&mut *conn).await {
        Err(sqlx::Error::Database(e)) if NOT_DEFINED_YET.contains(&e.code().as_deref()) => {
            // The definition and the call in one transaction: a pooler in transaction
            // mode between agentq and PostgreSQL runs both on the same server connection.
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe((function.definition)()))
                .execute(&mut *tx)
                .await?;
            let row = query().fetch_optional(&mut *tx).await?;
            tx.commit().await?;
            Ok(row)
        }
        other => Ok(other?),
    }
}

/// What calling a function the connection has not defined yet fails with: SQLSTATE
/// `undefined_function`, or `invalid_schema_name` while the connection has no temporary
/// schema yet (PostgreSQL makes it with the connection's first temporary object).
const NOT_DEFINED_YET: [Option<&str>; 2] = [Some("42883"), Some("3F000")];
