//! Bodies stream both ways: nothing waits for a whole body before passing it on.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::json;
use tokio::sync::mpsc;

use crate::helpers::client::collect;
use crate::helpers::upstream::{Body, BoxError, sha256_hex, text};
use crate::helpers::{Client, Gate, Gateway, Upstream, WAIT, api, config, paths, within};

const CHUNK: usize = 64 * 1024;

/// A request body fed chunk by chunk through the returned sender.
fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = tokio_stream(rx).map(|b| Ok::<_, BoxError>(Frame::data(b)));
    (tx, BodyExt::boxed(StreamBody::new(stream)))
}

fn tokio_stream(mut rx: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Deterministic, non-repeating-looking test data.
fn chunk(n: usize) -> Bytes {
    Bytes::from((0..CHUNK).map(|i| (i.wrapping_mul(31) ^ n.wrapping_mul(7)) as u8).collect::<Vec<u8>>())
}

async fn gateway_for(up: &Upstream) -> Gateway {
    Gateway::start(config(vec![api("stream", &[up], json!([paths("all", &["/*"])]), json!({}))])).await
}

#[tokio::test]
async fn a_multi_megabyte_chunked_upload_streams_through_to_the_upstream() {
    const FIRST: usize = 16; // 1 MiB before the client waits for the upstream
    const TOTAL: usize = 64; // 4 MiB in all
    let got_first_mib = Gate::default();
    let signal = got_first_mib.clone();
    let up = Upstream::start("sink", move |req| {
        let signal = signal.clone();
        async move {
            let chunked = req.headers().get("transfer-encoding").is_some_and(|v| v == "chunked");
            let mut body = req.into_body();
            let (mut len, mut all) = (0usize, Vec::new());
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map(|f| f.into_data().unwrap_or_default()) else { return text(500, "body error") };
                len += data.len();
                all.extend_from_slice(&data);
                if len >= FIRST * CHUNK {
                    signal.open();
                }
            }
            let doc = json!({ "len": len, "sha256": sha256_hex(&all), "chunked": chunked });
            text(200, &doc.to_string())
        }
    })
    .await;
    let gw = gateway_for(&up).await;
    let (tx, body) = channel_body();
    let feeder = got_first_mib.clone();
    let feed = tokio::spawn(async move {
        for n in 0..TOTAL {
            if n == FIRST {
                // The rest is held back until the upstream has the first MiB: a gateway that
                // buffered the whole body would never get there.
                feeder.opened("the upstream to receive the first MiB while the client holds the rest").await;
            }
            tx.send(chunk(n)).await.expect("body channel");
        }
    });
    let req = Request::builder().method(Method::POST).uri(gw.url("/upload")).body(body).expect("request");
    let reply = Client::http1().send(req).await;
    within(WAIT, "the feeder", feed).await.expect("feeder");
    let expected: Vec<u8> = (0..TOTAL).flat_map(|n| chunk(n).to_vec()).collect();
    let doc = serde_json::from_slice::<serde_json::Value>(&reply.body).expect("json");
    assert_eq!(reply.status, 200, "{doc}");
    assert_eq!(doc["len"], TOTAL * CHUNK);
    assert_eq!(doc["sha256"], sha256_hex(&expected));
    assert_eq!(doc["chunked"], true, "an unknown length stays chunked upstream");
}

/// An upstream that sends `first`, then holds the rest of its body until `release` opens.
async fn held_stream_upstream(release: Gate) -> Upstream {
    Upstream::start("dribble", move |_req| {
        let release = release.clone();
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first chunk;")).await;
                release.wait().await;
                let _ = tx.send(Bytes::from_static(b"second chunk;")).await;
                let _ = tx.send(Bytes::from_static(b"end")).await;
            });
            Response::new(body)
        }
    })
    .await
}

async fn response_streams_chunk_by_chunk(client: Client) {
    let release = Gate::default();
    let up = held_stream_upstream(release.clone()).await;
    let gw = gateway_for(&up).await;
    let res = client
        .stream(crate::helpers::client::get(&gw.url("/slow")).body(crate::helpers::client::empty()).expect("req"))
        .await;
    assert_eq!(res.status(), 200);
    let (parts, mut body) = res.into_parts();
    let first = within(WAIT, "the first chunk while the upstream holds the rest", body.frame())
        .await
        .expect("a frame")
        .expect("frame ok")
        .into_data()
        .expect("data");
    assert_eq!(first, "first chunk;");
    assert!(!release.is_open(), "the upstream had not finished");
    release.open();
    let rest = collect(Response::from_parts(parts, body)).await;
    assert_eq!(rest.text(), "second chunk;end");
}

#[tokio::test]
async fn a_slow_response_reaches_the_client_chunk_by_chunk() {
    response_streams_chunk_by_chunk(Client::http1()).await;
}

#[tokio::test]
async fn a_slow_response_reaches_an_http2_client_chunk_by_chunk() {
    response_streams_chunk_by_chunk(Client::h2c()).await;
}
