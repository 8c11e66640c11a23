//! Mail through a real SMTP exchange: lettre talks to a small SMTP server in this process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tollgate_admin::mail::{SmtpSecurity, SmtpSettings, Transport};

use crate::helpers::{PASSWORD, Portal};

/// Messages an SMTP server received: (envelope recipients, data).
type Inbox = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A plain SMTP server on 127.0.0.1:0 (RFC 5321 happy path, no extensions).
async fn smtp_server() -> (u16, Inbox) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let inbox: Inbox = Arc::default();
    let kept = inbox.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(session(socket, kept.clone()));
        }
    });
    (port, inbox)
}

async fn session(socket: tokio::net::TcpStream, inbox: Inbox) {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let _ = write.write_all(b"220 test.invalid ESMTP\r\n").await;
    let mut rcpt = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" | "HELO" => b"250 test.invalid\r\n",
            "MAIL" => b"250 OK\r\n",
            "RCPT" => {
                rcpt.push(line.split(':').nth(1).unwrap_or_default().trim().to_owned());
                b"250 OK\r\n"
            }
            "DATA" => {
                let _ = write.write_all(b"354 go ahead\r\n").await;
                let mut data = String::new();
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "." {
                        break;
                    }
                    data.push_str(&l);
                    data.push('\n');
                }
                if let Ok(mut v) = inbox.lock() {
                    v.push((std::mem::take(&mut rcpt), data));
                }
                b"250 queued\r\n"
            }
            "QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 OK\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

fn smtp(port: u16) -> Transport {
    Transport::Smtp(SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        security: SmtpSecurity::None,
        username: None,
        password: None,
    })
}

#[tokio::test]
async fn sign_up_mail_goes_through_smtp_and_is_kept_in_the_outbox() {
    let (port, inbox) = smtp_server().await;
    let portal = Portal::spawn_with(|c| c.mail_transport = smtp(port)).await;
    let mut b = portal.browser();
    b.get("/signup").await;
    let page = b.post("/signup", &[("name", "Smtp"), ("email", "smtp@example.com"), ("password", PASSWORD)]).await;
    assert!(page.shows("Check your inbox") && !page.shows("printed in the"), "no log hint with a real relay");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (to, data) = loop {
        if let Some(m) = inbox.lock().ok().and_then(|v| v.first().cloned()) {
            break m;
        }
        assert!(Instant::now() < deadline, "no mail reached the SMTP server");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(to, vec!["<smtp@example.com>".to_owned()]);
    assert!(data.contains("Subject: Confirm your e-mail address"), "{data}");
    // Lines longer than 76 characters travel quoted-printable: undo its soft breaks and `=3D`.
    let data = data.replace("=\n", "").replace("=3D", "=");
    assert!(data.contains("/verify?token="), "{data}");
    let link = portal.link_in_mail("smtp@example.com", "/verify?token=").await;
    let (status, transport): (String, String) =
        sqlx::query_as("SELECT status, transport FROM mail_outbox").fetch_one(&portal.pool).await.unwrap_or_default();
    assert_eq!((status.as_str(), transport.as_str()), ("sent", "smtp"));
    let token = link.split("token=").nth(1).unwrap_or_default();
    assert!(data.contains(token), "the mailed link is the one in the outbox: {data}");
}

#[tokio::test]
async fn a_relay_that_is_down_is_recorded_and_the_developer_can_ask_again() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let portal = Portal::spawn_with(|c| c.mail_transport = smtp(port)).await;
    let mut b = portal.browser();
    b.get("/signup").await;
    let page = b.post("/signup", &[("name", "Down"), ("email", "down@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(page.status, 200, "the sign-up itself succeeds");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row: Option<(String, Option<String>)> = sqlx::query_as("SELECT status, error FROM mail_outbox")
            .fetch_optional(&portal.pool)
            .await
            .unwrap_or_default();
        if let Some((status, error)) = row {
            assert_eq!(status, "failed");
            assert!(error.is_some_and(|e| !e.is_empty()));
            break;
        }
        assert!(Instant::now() < deadline, "the failed mail was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(portal.count("developers").await, 1);
}
