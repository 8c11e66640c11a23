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

use PathError::*;

/// The hostile corpus of the path-parameter review (issue 12), with what each becomes: a
/// canonical path (routed, and sent upstream, as is) or a refusal (400). The whole-proxy
/// test `tests/proxy/paths.rs` sends the same paths through a real gateway; docs/gateway.md
/// ("Request paths") compares the gateway's answers with nginx's.
const CORPUS: &[(&str, Result<&str, PathError>)] = &[
    // Dot segments with `;` parameters: Tomcat, Spring and Jetty cut the parameter and
    // resolve `..`, so the upstream would climb out of the routed prefix.
    ("/public/..;/private", Err(DotSegmentParam)),
    ("/public/..;x=1/private", Err(DotSegmentParam)),
    ("/public/%2e%2e;/private", Err(DotSegmentParam)),
    ("/public/%2E.;/private", Err(DotSegmentParam)),
    ("/public/.%2e;jsessionid=1/private", Err(DotSegmentParam)),
    ("/public/.;/private", Err(DotSegmentParam)),
    ("/public/..%3b/private", Err(DotSegmentParam)),
    ("/public/%2e%2e%3B/private", Err(DotSegmentParam)),
    ("/public/..;", Err(DotSegmentParam)),
    ("/public/..;/../private", Err(DotSegmentParam)),
    // Parameters elsewhere stay: they are part of the segment for routing and upstream.
    ("/public/x;", Ok("/public/x;")),
    ("/public/x;y=1/private", Ok("/public/x;y=1/private")),
    ("/public/;/private", Ok("/public/;/private")),
    ("/public/...;/private", Ok("/public/...;/private")),
    ("/public/x;/../../private", Ok("/private")),
    // Double encoding: refused, so that no upstream decoding twice sees what was not routed.
    ("/public/%252e%252e/private", Err(DoubleEncoded)),
    ("/public/%252E%252E/private", Err(DoubleEncoded)),
    ("/public/..%252fprivate", Err(DoubleEncoded)),
    ("/public/..%255cprivate", Err(DoubleEncoded)),
    ("/public/%25%32%65%25%32%65/private", Err(DoubleEncoded)),
    ("/public/%25252e", Err(DoubleEncoded)),
    ("/public/%2500", Err(DoubleEncoded)),
    ("/public/100%25", Ok("/public/100%25")),
    ("/public/100%25-off", Ok("/public/100%25-off")),
    // Encoded dots are decoded and resolved before routing: the request is routed as
    // /private (which needs a key), and sent as /private.
    ("/public/%2e%2e/private", Ok("/private")),
    ("/public/%2E%2E/private", Ok("/private")),
    ("/public/.%2e/private", Ok("/private")),
    ("/public/./../private", Ok("/private")),
    ("/public//..//private", Ok("/private")),
    ("/public/a/../../private/", Ok("/private/")),
    // Encoded separators, backslashes, NUL and control characters: refused.
    ("/public/..%2fprivate", Err(EncodedSlash)),
    ("/public/..%2Fprivate", Err(EncodedSlash)),
    ("/public/%2e%2e%2fprivate", Err(EncodedSlash)),
    ("/public/..%5cprivate", Err(EncodedBackslash)),
    ("/public/..\\private", Err(Backslash)),
    ("/public/%00/../../private", Err(EncodedNul)),
    ("/public/..\0/private", Err(ControlChar)),
    ("/public/..%09/private", Err(EncodedControlChar)),
    ("/public/%0d%0aX-Injected:%201", Err(EncodedControlChar)),
    ("/public/%7f", Err(EncodedControlChar)),
    // IIS `%u` escapes are not percent-encoding.
    ("/public/%u002e%u002e/private", Err(MalformedPercent)),
    ("/public/%%32%65", Err(MalformedPercent)),
    // Overlong and other invalid UTF-8 (`%c0%ae` is a dot to lax decoders): refused.
    ("/public/%c0%ae%c0%ae/private", Err(NotUtf8)),
    ("/public/%e0%80%ae", Err(NotUtf8)),
    ("/public/%ed%a0%80", Err(NotUtf8)),
    ("/public/%f4%90%80%80", Err(NotUtf8)),
    ("/public/%c3", Err(NotUtf8)),
    ("/public/%c3é", Err(NotUtf8)),
    ("/public/%c3%a9", Ok("/public/%C3%A9")),
    ("/public/%f0%9f%98%80", Ok("/public/%F0%9F%98%80")),
    // `?` and `#` never reach normalisation raw (the URI parser cuts the path there);
    // encoded, they are ordinary characters of a segment.
    ("/public/..%3f/private", Ok("/public/..%3F/private")),
    ("/public/%23/../private", Ok("/public/private")),
    ("/public/a#/../../private", Ok("/private")),
    // Climbing above the root.
    ("/public/../../private", Err(AboveRoot)),
];

#[test]
fn hostile_corpus() {
    for (raw, want) in CORPUS {
        let got = norm(raw);
        assert_eq!(got, want.map(String::from), "{raw:?}");
        if let Ok(p) = &got {
            assert_canonical(p);
        }
    }
}

#[test]
fn very_long_paths() -> Result<(), PathError> {
    let deep = format!("/public{}", "/a".repeat(50_000));
    assert!(matches!(normalize_path(&deep)?, Cow::Borrowed(_)));
    let climbing = format!("/public/{}x", "../".repeat(50_000));
    assert_eq!(norm(&climbing), Err(AboveRoot));
    let resolved = format!("/{}{}/private", "a/".repeat(30_000), "%2e%2e/".repeat(30_000));
    assert_eq!(norm(&resolved)?, "/private");
    let long_segment = format!("/public/{}", "%2E".repeat(100_000));
    assert_eq!(norm(&long_segment)?, format!("/public/{}", ".".repeat(100_000)));
    let buried = format!("/public/{}..;/private", "a/".repeat(20_000));
    assert_eq!(norm(&buried), Err(DotSegmentParam));
    Ok(())
}

/// Deterministic generator of nasty paths from a small alphabet of fragments.
fn generated_paths(count: usize) -> Vec<String> {
    const FRAGMENTS: &[&str] = &[
        "/", "/", "/", "a", "b", ".", "..", "%2e", "%2E", "%2e%2e", "%41", "%7e", "%c3%a9", "%20", "//", "~", "x y",
        "é", "{id}", "%", "%2f", "%5c", "%00", "\\", "\t", ";", "@", "%3A", "%3a", ";", ";x=1", "%3b", "%25", "%252e",
        "%2525", "%c0%ae", "%c3", "%a9", "%0a", "e",
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
    for seg in &segments {
        assert_no_reading_climbs(p, seg);
    }
}

/// However an upstream reads a canonical segment — path parameters cut off at `;` (Tomcat,
/// Spring, Jetty), or not; decoded once or twice — it is never a dot segment, a slash or a
/// backslash, so the upstream resolves the path the gateway routed.
fn assert_no_reading_climbs(p: &str, seg: &str) {
    for cut in [seg, seg.split(';').next().unwrap_or(seg)] {
        let once = crate::router::oracle::percent_decode(cut.as_bytes());
        let twice = crate::router::oracle::percent_decode(&once);
        for reading in [cut.as_bytes(), &once[..], &twice[..]] {
            assert!(reading != b"." && reading != b"..", "{p}: segment {seg:?} reads as a dot segment");
            assert!(!reading.contains(&b'/') && !reading.contains(&b'\\'), "{p}: segment {seg:?} hides a slash");
        }
    }
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
