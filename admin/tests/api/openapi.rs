//! The OpenAPI document: version 3.1, every operation documented with its security and
//! problem responses; the reference page is served locally.

use crate::helpers::Admin;

#[tokio::test]
async fn openapi_document_is_complete() {
    let admin = Admin::spawn().await;
    let doc = admin
        .http
        .get(admin.url("/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    for schema in ["JwtSettings", "JwtKey", "JwtAlgorithm", "IntrospectionSettings", "TokenBindingInputPatch"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for p in [
        "/apis",
        "/apis/{api_id}/routes/{id}",
        "/consumers/{consumer_id}/keys",
        "/subscriptions",
        "/token-bindings/{id}",
        "/users",
        "/config-events",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    let mut operations = 0;
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            operations += 1;
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(secured, path != "/auth/login", "{method} {path} security");
            assert!(op["responses"]["422"].is_object(), "{method} {path} documents 422");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has a tag");
        }
    }
    assert!(operations >= 40, "{operations} operations");
    for p in ["/usage", "/usage/top", "/subscriptions/{id}/quota"] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // Every reference resolves (a dangling one makes validators refuse the whole document).
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }

    // Merge patches have their own schema: nothing required, defaulted fields nullable.
    let body = &paths["/apis/{id}"]["patch"]["requestBody"]["content"]["application/merge-patch+json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/ApiInputPatch");
    let patch = &doc["components"]["schemas"]["ApiInputPatch"];
    assert!(patch.get("required").is_none(), "{patch}");
    assert!(patch["properties"]["description"]["anyOf"].is_array(), "{patch}");
    assert!(patch["properties"]["name"].get("anyOf").is_none(), "name has no default: {patch}");

    let page = admin.http.get(format!("{}/admin/docs/", admin.app.base_url)).send().await.expect("sent");
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap_or_default();
    assert!(html.contains("swagger"), "the reference page is served");
    assert!(!html.contains("cdn."), "no assets from a CDN");
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                match (k.as_str(), child.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_owned()),
                    _ => collect_refs(child, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}
