//! Site settings: anyone reads them, site owners change them, out-of-range values are 400s
//! naming the field.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::app::{TestApp, create_owner};

#[sqlx::test]
async fn site_owners_change_settings_and_bad_values_name_their_field(pool: sqlx::PgPool) {
    let app = TestApp::start_api_only(pool).await;
    let owner = create_owner(&app.services, "root@example.com").await;
    let (status, defaults) = app.get("/api/v1/admin/config").await;
    assert_eq!(status, StatusCode::OK, "members may read");
    assert_eq!(defaults["auto_archive_days"], 0);
    assert_eq!(defaults["auto_archive_limit"], 1000);
    assert_eq!(defaults["chat_retention_days"], 30);
    assert_eq!(defaults["debug_retention_days"], 30);
    assert_eq!(defaults["debug_logging_enabled"], false);

    let (status, _) = app
        .put_as(
            &app.token,
            "/api/v1/admin/config",
            json!({"auto_archive_days": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "members may not change them");

    let (status, updated) = app
        .put_as(
            &owner,
            "/api/v1/admin/config",
            json!({"auto_archive_days": 7, "chat_retention_days": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["auto_archive_days"], 7);
    assert_eq!(updated["chat_retention_days"], 0);
    assert_eq!(
        updated["debug_retention_days"], 30,
        "untouched fields keep their value"
    );

    for (body, field) in [
        (json!({"auto_archive_days": 3651}), "auto_archive_days"),
        (json!({"auto_archive_days": -1}), "auto_archive_days"),
        (json!({"auto_archive_limit": 0}), "auto_archive_limit"),
        (json!({"chat_retention_days": 4000}), "chat_retention_days"),
        (json!({"debug_retention_days": -5}), "debug_retention_days"),
        (
            json!({"debug_logging_enabled": "yes"}),
            "debug_logging_enabled",
        ),
        (json!({"archive_days": 1}), "archive_days"),
    ] {
        let (status, error) = app
            .put_as(&owner, "/api/v1/admin/config", body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["validations"][0]["field"], field, "{body} -> {error}");
    }
    let (_, after) = app.get("/api/v1/admin/config").await;
    assert_eq!(
        after["auto_archive_days"], 7,
        "refused changes change nothing"
    );
    app.stop().await;
}
