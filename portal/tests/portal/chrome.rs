//! Headless Chromium driven over WebDriver (Debian's `chromium` and `chromium-driver`).
//! Without them the browser tests print a loud notice and pass as skipped — unless `CI` is
//! set, where they fail: CI installs both (`.ci/run`).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A browser session and the chromedriver serving it; both end on drop, with every process
/// Chromium started (ChromeDriver runs in a process group of its own, killed whole).
pub struct Chrome {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // The group: ChromeDriver, Chromium and its renderer, GPU and zygote processes, which
        // would otherwise outlive the test (and the CI run).
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file()).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|d| candidates.iter().map(move |c| d.join(c))).find(|p| p.is_file())
    })
}

/// The browser, or `None` (after a loud notice) when Chromium is missing outside CI.
pub async fn start(dark: bool, width: u32, height: u32) -> Option<Chrome> {
    let chromium = find(&["/usr/bin/chromium", "chromium", "chromium-browser"]);
    let driver = find(&["/usr/bin/chromedriver", "chromedriver"]);
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        let msg = "browser tests need Chromium and ChromeDriver: apt-get install chromium chromium-driver";
        if std::env::var_os("CI").is_some() {
            panic!("{msg} (CI is set, so this fails instead of skipping)");
        }
        eprintln!("\n!!!!!!!! SKIPPED: {msg} !!!!!!!!\n");
        return None;
    };
    Some(launch(&chromium, &driver, dark, width, height).await)
}

async fn launch(chromium: &Path, driver: &Path, dark: bool, width: u32, height: u32) -> Chrome {
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
    let driver = Command::new(driver)
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = std::env::temp_dir().join(format!("tollgate-chrome-{}", uuid::Uuid::new_v4()));
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        format!("--user-data-dir={}", profile.display()),
        format!("--window-size={width},{height}"),
    ];
    if dark {
        args.push("--force-dark-mode".into());
    }
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": args}});
    let caps = caps.as_object().cloned().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = format!("http://127.0.0.1:{port}");
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("no WebDriver session: {e}"),
        }
    };
    let chrome = Chrome { client, driver, profile };
    chrome.client.set_window_size(width, height).await.expect("window size");
    chrome
}

impl Chrome {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// Types `text` into the field with id `id`.
    pub async fn fill(&self, id: &str, text: &str) {
        let field = self.client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("no field #{id}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the element `css` and waits until the page's URL contains `then`.
    pub async fn click(&self, css: &str, then: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.click().await.expect("click");
        self.wait_url(then).await;
    }

    /// Waits until the URL contains `part`.
    pub async fn wait_url(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.client.current_url().await.expect("url").to_string();
            if url.contains(part) {
                return;
            }
            assert!(Instant::now() < deadline, "still at {url}, waiting for {part}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let el = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        el.text().await.expect("text")
    }

    /// Waits until an element matching `css` exists (the page's script may add it).
    pub async fn wait_for(&self, css: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.client.find_all(Locator::Css(css)).await.map(|v| v.is_empty()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "nothing matched {css} within {secs} s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Evaluates `js` (a function body returning a value).
    pub async fn eval(&self, js: &str) -> serde_json::Value {
        self.client.execute(js, vec![]).await.expect("script")
    }
}
