//! Tests of [`super::normalize_path`]: canonical forms, refusals, bypass attempts, and
//! generated inputs for idempotence and invariants.

use std::borrow::Cow;

use super::{PathError, normalize_path};

fn norm(raw: &str) -> Result<String, PathError> {
    normalize_path(raw).map(Cow::into_owned)
}

#[test]
fn canonical_paths_are_borrowed() {
    for p in ["/", "/a", "/a/", "/orders/42/items", "/a%20b", "/caf%C3%A9", "/x;y=1:@!$&'()*+,=", "/a/.b/..c/b.."] {
        assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
    }
}

#[test]
fn rewrites_to_canonical_form() {
    let cases = [
        ("/a/./b", "/a/b"),
        ("/a/b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/.", "/"),
        ("/a/..", "/"),
        ("//", "/"),
        ("//a//b//", "/a/b/"),
        ("/a%7Eb%7e", "/a~b~"),
        ("/%41%2d%5F", "/A-_"),
        ("/a%c3%a9", "/a%C3%A9"),
        ("/a b", "/a%20b"),
        ("/{id}", "/%7Bid%7D"),
        ("/é", "/%C3%A9"),
        ("/a/%2e/b", "/a/b"),
        ("/a/.%2E/b", "/b"),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn bypass_attempts_resolve_or_fail() {
    assert_eq!(norm("/admin/../secret").as_deref(), Ok("/secret"));
    assert_eq!(norm("/public/%2e%2e/admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/public/%2E%2E/admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("//admin").as_deref(), Ok("/admin"));
    assert_eq!(norm("/public/..%2fadmin"), Err(PathError::EncodedSlash));
    assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
    assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
    assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedBackslash));
    assert_eq!(norm("/a%5cb"), Err(PathError::EncodedBackslash));
    assert_eq!(norm("/%00"), Err(PathError::EncodedNul));
    assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
    assert_eq!(norm("/public/%2e%2e/%2e%2e/etc"), Err(PathError::AboveRoot));
}

#[test]
fn refusals() {
    let cases = [
        ("", PathError::NotAbsolute),
        ("a/b", PathError::NotAbsolute),
        ("*", PathError::NotAbsolute),
        ("/..", PathError::AboveRoot),
        ("/a/../..", PathError::AboveRoot),
        ("/../a", PathError::AboveRoot),
        ("/%2e%2e", PathError::AboveRoot),
        ("/a\nb", PathError::ControlChar),
        ("/a\rb", PathError::ControlChar),
        ("/a\u{7f}", PathError::ControlChar),
        ("/a\0", PathError::ControlChar),
        ("/%", PathError::MalformedPercent),
        ("/%4", PathError::MalformedPercent),
        ("/%zz", PathError::MalformedPercent),
        ("/%4g/x", PathError::MalformedPercent),
        ("/ok/../%", PathError::MalformedPercent),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw), Err(want), "{raw:?}");
    }
}

#[test]
fn errors_have_reasons() {
    assert_eq!(PathError::AboveRoot.reason(), "path climbs above the root");
    assert_eq!(PathError::EncodedSlash.to_string(), "encoded slash (%2F) in path");
}

/// Deterministic generator of nasty paths from a small alphabet of fragments.
fn generated_paths(count: usize) -> Vec<String> {
    const FRAGMENTS: &[&str] = &[
        "/", "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%2e%2e", "%41", "%7e", "%c3%a9", "%20", "//", "~", "x y",
        "é", "{id}", "%", "%2f", "%5c", "%00", "\\", "\t", ";", "@", "%3A", "%3a",
    ];
    let mut rng = fastrand::Rng::with_seed(0x7011_9a7e);
    (0..count)
        .map(|_| {
            let mut p = String::from(if rng.u8(..10) == 0 { "" } else { "/" });
            for _ in 0..rng.usize(0..10) {
                p.push_str(FRAGMENTS[rng.usize(..FRAGMENTS.len())]);
            }
            p
        })
        .collect()
}

#[test]
fn normalization_is_idempotent_and_canonical() -> Result<(), PathError> {
    let mut accepted = 0;
    for raw in generated_paths(50_000) {
        let Ok(once) = normalize_path(&raw) else { continue };
        accepted += 1;
        let twice = normalize_path(&once)?;
        assert!(matches!(twice, Cow::Borrowed(_)), "not a fixed point: {raw:?} -> {once:?} -> {twice:?}");
        assert_canonical(&once);
    }
    assert!(accepted > 10_000, "generator too hostile: {accepted} accepted");
    Ok(())
}

fn assert_canonical(p: &str) {
    assert!(p.starts_with('/'), "{p}");
    assert!(!p.contains("//"), "{p}");
    assert!(!p.contains('\\'), "{p}");
    let segments: Vec<&str> = p[1..].split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        assert!(*seg != "." && *seg != "..", "{p}");
        assert!(!seg.is_empty() || i + 1 == segments.len(), "{p}");
    }
    let lower = p.to_ascii_lowercase();
    for bad in ["%2e", "%2f", "%5c", "%00", "%7e", "%41"] {
        assert!(!lower.contains(bad), "{p} contains {bad}");
    }
    assert!(p.bytes().all(|c| c.is_ascii_graphic()), "{p}");
}

/// Normalisation agrees with a naive reference model on accepted inputs.
#[test]
fn matches_reference_model() -> Result<(), PathError> {
    for raw in generated_paths(20_000) {
        if let Ok(got) = normalize_path(&raw) {
            assert_eq!(Ok(got.as_ref()), reference(&raw).as_deref(), "{raw:?}");
        }
    }
    Ok(())
}

/// Stack-based model: decode each segment, drop empty and `.`, pop on `..`.
fn reference(raw: &str) -> Result<String, PathError> {
    let mut stack: Vec<String> = Vec::new();
    let parts: Vec<&str> = raw[1..].split('/').collect();
    let mut trailing = false;
    for (i, part) in parts.iter().enumerate() {
        let dots = part.replace("%2e", ".").replace("%2E", ".");
        let decoded = if dots == ".." { String::from("/..") } else { norm(&format!("/{part}"))? };
        let seg = &decoded[1..];
        let last = i + 1 == parts.len();
        match seg {
            ".." => {
                stack.pop().ok_or(PathError::AboveRoot)?;
                trailing = last;
            }
            "" | "." => trailing = last,
            _ => {
                stack.push(seg.to_owned());
                trailing = false;
            }
        }
    }
    let mut out = format!("/{}", stack.join("/"));
    if trailing && !stack.is_empty() {
        out.push('/');
    }
    Ok(out)
}
