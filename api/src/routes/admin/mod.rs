//! `/api/v1/admin/providers` and `/api/v1/admin/models`: providers and models as data, for
//! site owners (every handler takes a [`SiteOwner`](crate::auth::SiteOwner)). One module per
//! resource; what both need to read a request body lives here (control characters are
//! refused by [`refuse_control_chars`](crate::error::refuse_control_chars), as everywhere).

pub(super) mod models;
pub(super) mod organizations;
pub(super) mod providers;
pub(super) mod spend_limits;
pub(super) mod users;

use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;

/// A path id, or a 400 naming `field`.
fn parse_id(raw: &str, field: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub(crate) fn present<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// A field that may be left out but not sent as `null`: `null` is a 400 naming it, so that
/// the document can say "not nullable" and mean it (a `null` read as "absent" would be a
/// request the document calls invalid yet the server takes).
pub(crate) fn not_null<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(de)? {
        Some(value) => Ok(Some(value)),
        None => Err(serde::de::Error::custom(
            "cannot be null: leave it out to keep the value",
        )),
    }
}
