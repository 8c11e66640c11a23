//! Generic storage for the entities the admin API manages. Each entity names its table,
//! kind and writable columns; insert, update, fetch, list and delete are written once here.
//! Table and column names are compile-time constants; every value is a bound parameter.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::PgRow;
use sqlx::{Encode, FromRow, PgConnection, Postgres, QueryBuilder, Type};
use uuid::Uuid;

use crate::error::ApiError;
use crate::page::{Page, PageQuery};
use crate::state::AppState;
use crate::validate::Validate;

/// An entity stored in one table with `id`, `version`, `created_at` and `updated_at`.
pub trait Resource: Serialize + for<'r> FromRow<'r, PgRow> + Send + Sync + Unpin + 'static {
    /// Name used in audit rows, config events and error messages (`api`, `route`, ...).
    const KIND: &'static str;
    /// Table name.
    const TABLE: &'static str;
    /// Column holding the owning entity's id, for entities nested under another.
    const PARENT: Option<&'static str> = None;
    /// Whether gateways enforce this entity (changes go to `config_events`), or only the
    /// admin cares (changes are audited only).
    const CONFIG: bool = true;
    /// The writable part, as clients send it.
    type Input: Columns + Validate + Serialize + DeserializeOwned + Send + Sync;

    fn id(&self) -> Uuid;
    fn version(&self) -> i64;
    /// The writable part of the current state: the base a merge patch applies to.
    fn to_input(&self) -> Self::Input;

    /// Completes `input` from the stored entity (`current`; `None` on create) before it is
    /// validated: a placeholder the client may send back, such as a redacted secret, takes
    /// the stored value.
    fn carry_over(_input: &mut Self::Input, _current: Option<&Self>) -> Result<(), ApiError> {
        Ok(())
    }

    /// Opens the secrets sealed at rest in a stored entity, before it is the base of an
    /// update (the client sees them redacted; the write seals them again).
    fn open_secrets(&mut self, _state: &AppState) -> Result<(), ApiError> {
        Ok(())
    }

    /// Seals the secrets of `input` for entity `id` just before it is written.
    fn seal_secrets(_input: &mut Self::Input, _id: Uuid, _state: &AppState) -> Result<(), ApiError> {
        Ok(())
    }

    /// Rules beyond [`Validate`] that need the database, the network or the service's
    /// settings; runs in the write's transaction, after validation, before the write.
    fn check<'a>(
        _write: Write<'a, Self>,
        _input: &'a Self::Input,
    ) -> impl Future<Output = Result<(), ApiError>> + Send + 'a {
        async { Ok(()) }
    }
}

/// What [`Resource::check`] may consult about the write in progress.
pub struct Write<'a, R> {
    /// The write's transaction.
    pub conn: &'a mut PgConnection,
    pub state: &'a AppState,
    /// The owning entity's id, for nested entities.
    pub parent: Option<Uuid>,
    /// The stored state, on update.
    pub current: Option<&'a R>,
}

/// The `id` and `version` accessors of a [`Resource`] whose struct has fields of those names.
macro_rules! id_and_version {
    () => {
        fn id(&self) -> uuid::Uuid {
            self.id
        }
        fn version(&self) -> i64 {
            self.version
        }
    };
}
pub(crate) use id_and_version;

/// Writes an input's columns; called once per statement.
pub trait Columns {
    fn columns(&self, w: &mut ColumnWriter<'_>);
}

#[derive(Clone, Copy)]
enum Mode {
    Names,
    Values,
    Assign,
}

/// Emits `name`, `$n` or `name = $n` lists depending on the statement being built.
pub struct ColumnWriter<'q> {
    qb: &'q mut QueryBuilder<Postgres>,
    mode: Mode,
    count: usize,
}

impl ColumnWriter<'_> {
    /// One column and its value.
    pub fn col<'t, T: Encode<'t, Postgres> + Type<Postgres>>(&mut self, name: &'static str, value: T) -> &mut Self {
        if self.count > 0 {
            self.qb.push(", ");
        }
        self.count += 1;
        match self.mode {
            Mode::Names => self.qb.push(name),
            Mode::Values => self.qb.push_bind(value),
            Mode::Assign => self.qb.push(name).push(" = ").push_bind(value),
        };
        self
    }
}

fn write(qb: &mut QueryBuilder<Postgres>, mode: Mode, input: &impl Columns) {
    let mut w = ColumnWriter { qb, mode, count: 1 };
    input.columns(&mut w);
}

/// Inserts a new row with `id` (under `parent`, for nested entities) and returns it.
pub async fn insert<R: Resource>(
    conn: &mut PgConnection,
    id: Uuid,
    parent: Option<Uuid>,
    input: &impl Columns,
) -> Result<R, sqlx::Error> {
    let mut qb = QueryBuilder::new(format!("INSERT INTO {} (id", R::TABLE));
    if let Some(col) = R::PARENT {
        qb.push(", ").push(col);
    }
    write(&mut qb, Mode::Names, input);
    qb.push(") VALUES (").push_bind(id);
    if R::PARENT.is_some() {
        qb.push(", ").push_bind(parent);
    }
    write(&mut qb, Mode::Values, input);
    qb.push(") RETURNING *");
    qb.build_query_as::<R>().fetch_one(conn).await
}

/// Replaces the writable columns of row `id`, bumping its version.
pub async fn update<R: Resource>(conn: &mut PgConnection, id: Uuid, input: &impl Columns) -> Result<R, sqlx::Error> {
    let mut qb = QueryBuilder::new(format!("UPDATE {} SET version = version + 1, updated_at = now()", R::TABLE));
    write(&mut qb, Mode::Assign, input);
    qb.push(" WHERE id = ").push_bind(id).push(" RETURNING *");
    qb.build_query_as::<R>().fetch_one(conn).await
}

fn select<R: Resource>(id: Uuid, parent: Option<Uuid>) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new(format!("SELECT * FROM {} WHERE id = ", R::TABLE));
    qb.push_bind(id);
    if let (Some(col), Some(parent)) = (R::PARENT, parent) {
        qb.push(" AND ").push(col).push(" = ").push_bind(parent);
    }
    qb
}

/// Row `id` (which must belong to `parent`, when given).
pub async fn fetch<R: Resource>(
    conn: &mut PgConnection,
    id: Uuid,
    parent: Option<Uuid>,
) -> Result<Option<R>, sqlx::Error> {
    select::<R>(id, parent).build_query_as::<R>().fetch_optional(conn).await
}

/// Row `id`, locked until the transaction ends.
pub async fn fetch_for_update<R: Resource>(
    conn: &mut PgConnection,
    id: Uuid,
    parent: Option<Uuid>,
) -> Result<Option<R>, sqlx::Error> {
    let mut qb = select::<R>(id, parent);
    qb.push(" FOR UPDATE");
    qb.build_query_as::<R>().fetch_optional(conn).await
}

/// Deletes row `id`.
pub async fn delete<R: Resource>(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    let mut qb = QueryBuilder::new(format!("DELETE FROM {} WHERE id = ", R::TABLE));
    qb.push_bind(id).build().execute(conn).await.map(|_| ())
}

/// Extra `WHERE` conditions of a list request.
pub trait Filter {
    /// Appends ` AND ...` conditions with bound values.
    fn apply(&self, qb: &mut QueryBuilder<Postgres>);
}

/// No filters.
impl Filter for () {
    fn apply(&self, _: &mut QueryBuilder<Postgres>) {}
}

/// Appends ` AND column = value` when `value` is set.
pub fn eq<'t, T: Encode<'t, Postgres> + Type<Postgres>>(
    qb: &mut QueryBuilder<Postgres>,
    column: &str,
    value: Option<T>,
) {
    if let Some(v) = value {
        qb.push(" AND ").push(column).push(" = ").push_bind(v);
    }
}

/// One page of rows in id order (ids are UUIDv7, so creation order).
pub async fn list<R: Resource>(
    conn: &mut PgConnection,
    parent: Option<Uuid>,
    filter: &impl Filter,
    page: &PageQuery,
) -> Result<Page<R>, crate::error::ApiError> {
    let limit = page.limit()?;
    let mut qb = QueryBuilder::new(format!("SELECT * FROM {} WHERE TRUE", R::TABLE));
    if let (Some(col), Some(parent)) = (R::PARENT, parent) {
        qb.push(" AND ").push(col).push(" = ").push_bind(parent);
    }
    filter.apply(&mut qb);
    if let Some(after) = page.after()? {
        qb.push(" AND id > ").push_bind(after);
    }
    qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(limit) + 1);
    let rows = qb.build_query_as::<R>().fetch_all(conn).await?;
    Ok(Page::from_rows(rows, limit, R::id))
}
