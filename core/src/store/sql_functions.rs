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
//! schema the role creates objects in) and calls again. A process whose role may not
//! define it there, or whose calls then still do not find it, gets [`Called::CannotDefine`]
//! from then on, and its callers run the statements as a transaction instead (as many
//! round trips as before the function). Each version's function stays in the database
//! after that version is gone (`DROP FUNCTION agentq_<what>_<digest>` removes one no
//! process runs).
//!
//! Not a temporary function (`pg_temp`): a connection's first temporary object creates
//! its temporary schema, and a new schema makes every connection of the database drop
//! every plan it cached (measured: the finish's statements planned 98 to 320 times a run
//! instead of once a connection, session 22).

use std::sync::atomic::{AtomicBool, Ordering};

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
    /// Set once this process found it may not define the function: its callers then go
    /// straight to the statements it stands for, for the life of the process.
    cannot_define: AtomicBool,
}

impl SqlFunction {
    /// The function `what` whose `CREATE OR REPLACE FUNCTION {name}(...)` statement
    /// `define` writes for a name.
    pub(super) fn new(what: &str, define: impl Fn(&str) -> String) -> Self {
        let digest = hex::encode(Sha256::digest(define("").as_bytes()));
        let name = format!("agentq_{what}_{}", &digest[..12]);
        let definition = define(&name);
        Self {
            name,
            definition,
            cannot_define: AtomicBool::new(false),
        }
    }

    /// Whether this process found it may not define the function: calls answer
    /// [`Called::CannotDefine`] without a connection.
    pub(super) fn cannot_be_called(&self) -> bool {
        self.cannot_define.load(Ordering::Relaxed)
    }
}

/// What [`fetch_optional_calling`] did.
pub(super) enum Called {
    /// The call's row, if any.
    Row(Option<PgRow>),
    /// The function cannot be called here (this role may not define it, or what it
    /// defined is not found by its calls): nothing was written, and the caller runs the
    /// statements it stands for.
    CannotDefine,
}

/// Runs `query` (a call of `function`, built anew for each try) on `conn`, outside any
/// transaction (a failed call would abort it): if the function is missing, defines
/// it and runs the query again. Once that fails for want of the function or of a
/// privilege, every later call in this process answers [`Called::CannotDefine`] at once,
/// and one warning says so.
pub(super) async fn fetch_optional_calling<'q>(
    conn: &mut PgConnection,
    function: &SqlFunction,
    query: impl Fn() -> Query<'q, Postgres, PgArguments>,
) -> Result<Called, StoreError> {
    if function.cannot_be_called() {
        return Ok(Called::CannotDefine);
    }
    match query().fetch_optional(&mut *conn).await {
        Err(e) if sqlstate_in(&e, &[UNDEFINED_FUNCTION]) => {
            // Two connections may define it at once: the one that loses fails (a
            // duplicate key in `pg_proc`) once the other committed, and calls its function.
            if let Err(e) = define(conn, function).await {
                tracing::debug!(function = %function.name, error = %e, "defining a function");
            }
            match query().fetch_optional(&mut *conn).await {
                Err(e) if sqlstate_in(&e, &[UNDEFINED_FUNCTION, INSUFFICIENT_PRIVILEGE]) => {
                    cannot_define(function, &e);
                    Ok(Called::CannotDefine)
                }
                other => Ok(Called::Row(other?)),
            }
        }
        Err(e) if sqlstate_in(&e, &[INSUFFICIENT_PRIVILEGE]) => {
            cannot_define(function, &e);
            Ok(Called::CannotDefine)
        }
        other => Ok(Called::Row(other?)),
    }
}

/// Notes, once, that this process cannot call `function`.
fn cannot_define(function: &SqlFunction, error: &sqlx::Error) {
    if !function.cannot_define.swap(true, Ordering::Relaxed) {
        tracing::warn!(function = %function.name, %error,
            "cannot define or call a function (the database role needs CREATE on its schema); \
             running its statements as a transaction instead");
    }
}

/// Whether `error` is a database error with one of these SQLSTATEs.
fn sqlstate_in(error: &sqlx::Error, codes: &[&str]) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.code().is_some_and(|c| codes.contains(&c.as_ref())))
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
