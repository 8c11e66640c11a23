//! Retention of the change log: old events go, the newest always stays, audit rows stay.

use std::time::Duration;

use tollgate_admin::prune::prune_config_events;
use tollgate_admin::testkit::test_pool;

async fn event(pool: &sqlx::PgPool, age_hours: i32) -> i64 {
    let (audit,): (i64,) = sqlx::query_as(
        "INSERT INTO audit_log (actor_kind, action, entity_kind, entity_id) \
         VALUES ('system', 'update', 'api', gen_random_uuid()) RETURNING id",
    )
    .fetch_one(pool)
    .await
    .expect("audit row");
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO config_events (at, entity_kind, entity_id, op, audit_id) \
         VALUES (now() - make_interval(hours => $1), 'api', gen_random_uuid(), 'update', $2) RETURNING id",
    )
    .bind(age_hours)
    .bind(audit)
    .fetch_one(pool)
    .await
    .expect("event row");
    id
}

async fn ids(pool: &sqlx::PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM config_events ORDER BY id").fetch_all(pool).await.expect("ids")
}

#[tokio::test]
async fn old_events_are_pruned_but_the_newest_is_kept() {
    let pool = test_pool().await;
    let day = Duration::from_secs(24 * 3600);
    let old = [event(&pool, 200).await, event(&pool, 100).await];
    let recent = event(&pool, 1).await;
    assert_eq!(prune_config_events(&pool, day).await.expect("prune"), 2);
    assert_eq!(ids(&pool).await, [recent]);
    let audits: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(&pool).await.expect("count");
    assert_eq!(audits, 3, "audit rows are never pruned");
    assert!(old.iter().all(|id| *id < recent));

    // Everything old: the newest row survives anyway.
    let pool = test_pool().await;
    let (_, newest) = (event(&pool, 500).await, event(&pool, 400).await);
    assert_eq!(prune_config_events(&pool, day).await.expect("prune"), 1);
    assert_eq!(ids(&pool).await, [newest]);
    assert_eq!(prune_config_events(&pool, day).await.expect("prune again"), 0);
}
