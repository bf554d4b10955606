//! A real headless Chromium for the dashboard's browser tests, driven over W3C WebDriver by
//! fantoccini through Debian's `chromedriver` (`apt-get install chromium chromium-driver`;
//! `.ci/run` installs both). Each [`Browser`] has its own chromedriver on a free port and a
//! fresh profile directory; both go away when it is dropped. Only 127.0.0.1 is reached:
//! the flags turn off every background request Chromium makes on its own.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::json;

use super::eventually;

/// A chromedriver process and a browser session on it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

/// The first of `names` found on `PATH` (Debian ships `chromium` and `chromedriver`).
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a 1280×900 window.
    pub async fn start() -> Self {
        let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"]).expect(
            "Chromium is needed for the dashboard's browser tests: apt-get install -y chromium chromium-driver",
        );
        let chromedriver = on_path(&["chromedriver"]).expect(
            "chromedriver is needed for the dashboard's browser tests: apt-get install -y chromium-driver",
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile =
            std::env::temp_dir().join(format!("agentq-chromium-{}", uuid::Uuid::new_v4().simple()));
        let webdriver = format!("http://127.0.0.1:{port}");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--window-size=1280,900",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let client = eventually(
            Duration::from_secs(30),
            "chromedriver to start a session",
            || {
                let (webdriver, capabilities) = (webdriver.clone(), capabilities.clone());
                async move {
                    ClientBuilder::rustls()
                        .expect("a rustls connector")
                        .capabilities(capabilities)
                        .connect(&webdriver)
                        .await
                        .ok()
                }
            },
        )
        .await;
        Self {
            client,
            driver,
            profile,
        }
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// The element `css` matches now, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        self.client.find(Locator::Css(css)).await.ok()
    }

    /// Every element `css` matches now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
    }

    /// The text of the element `css` matches now (`None` when there is none); the element
    /// is looked up afresh, since the dashboard's script replaces the page's content.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.find(css).await?.text().await.ok()
    }

    /// The text of the element `css` matches, waiting up to 20 s for one (a lookup can
    /// miss while the script swaps the content).
    pub async fn read(&self, css: &str) -> String {
        eventually(
            Duration::from_secs(20),
            &format!("`{css}` to be shown"),
            || self.text(css),
        )
        .await
    }

    /// Waits until the page shown is at `path` (a click's navigation can end after the
    /// click returns).
    pub async fn wait_for_path(&self, path: &str) {
        eventually(
            Duration::from_secs(20),
            &format!("the page at {path}"),
            || async { (self.path().await == path).then_some(()) },
        )
        .await;
    }

    /// Waits until the page's text holds `want`, and returns the text.
    pub async fn wait_for_page_text(&self, want: &str) -> String {
        eventually(
            Duration::from_secs(20),
            &format!("a page saying `{want}`"),
            || async {
                let text = self.page_text().await;
                text.contains(want).then_some(text)
            },
        )
        .await
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        self.text("body").await.unwrap_or_default()
    }

    /// Waits until the text of `css` is `want`, without reloading the page.
    pub async fn wait_for_text(&self, css: &str, want: &str, limit: Duration) {
        eventually(limit, &format!("`{css}` to read `{want}`"), || async {
            (self.text(css).await.as_deref() == Some(want)).then_some(())
        })
        .await;
    }

    /// Waits until `css` matches something (`present`) or nothing (`!present`).
    pub async fn wait_for_presence(&self, css: &str, present: bool, limit: Duration) {
        let what = format!("`{css}` to be {}", if present { "shown" } else { "gone" });
        eventually(limit, &what, || async {
            (self.find(css).await.is_some() == present).then_some(())
        })
        .await;
    }

    /// Signs in on `base`'s dashboard with `token`, through the sign-in form.
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.open(&format!("{base}/admin")).await;
        assert_eq!(
            self.path().await,
            "/admin/login",
            "signed out, the dashboard asks for a token"
        );
        let field = self.find("input[name=token]").await.expect("a token field");
        field.send_keys(token).await.unwrap();
        self.find("form.login button[type=submit]")
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// A PNG of the window, written to `$AGENTQ_DASHBOARD_SCREENSHOTS/<name>` when that
    /// variable is set (the README's screenshots come from here:
    /// `AGENTQ_DASHBOARD_SCREENSHOTS=$PWD/docs cargo nextest run -p agentq --test dashboard`).
    pub async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("AGENTQ_DASHBOARD_SCREENSHOTS") else {
            return;
        };
        // The whole page, not only the first screen: the window takes the page's height.
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 2400) as u32;
        self.client.set_window_size(1280, height).await.unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client.set_window_size(1280, 900).await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(PathBuf::from(dir).join(name), png).unwrap();
    }

    /// Ends the session (dropping also stops chromedriver).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
