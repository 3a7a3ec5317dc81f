//! The admin dashboard in a real browser: headless Chromium through chromedriver signs
//! in with the form, sees the connections, closes one with its button, and the server
//! closes that connection. A screenshot goes to `target/admin-dashboard.png`.
//!
//! Needs chromedriver: `OPENCORE_CHROMEDRIVER`, else `/usr/bin/chromedriver`; without
//! either the test says so loudly and returns (CI always sets it).

mod admin_support;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use admin_support::*;
use common::*;
use fantoccini::{ClientBuilder, Locator};
use serde_json::json;

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("OPENCORE_CHROMEDRIVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let default = PathBuf::from("/usr/bin/chromedriver");
    default.exists().then_some(default)
}

async fn start_driver(path: &PathBuf) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, port };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    eventually("chromedriver listening", || async move {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    driver
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_signs_in_lists_and_closes_connections() {
    let Some(chromedriver) = chromedriver_path() else {
        eprintln!("\n!!!!!!!! SKIPPED admin_dashboard: no chromedriver (set OPENCORE_CHROMEDRIVER or install /usr/bin/chromedriver) !!!!!!!!\n");
        return;
    };
    let server = TestServer::start();
    let http_addr = server.http();
    let mut admin = RawClient::connect(server.tcp()).await;
    let jwt = admin.signin(ADMIN, ADMIN_PASSWORD).await.jwt;
    let mut other = RawClient::connect(server.tcp()).await;
    // The server registers an accepted connection asynchronously.
    eventually("both connections registered", || async {
        get(http_addr, "/admin/api/connections", &bearer(&jwt))
            .await
            .json()["total"]
            == 2
    })
    .await;
    let list = get(http_addr, "/admin/api/connections", &bearer(&jwt))
        .await
        .json();
    let items = list["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 2, "{list}");
    let admin_id = items.iter().find(|c| !c["user"].is_null()).expect("admin")["id"].clone();
    let other_id = items.iter().find(|c| c["user"].is_null()).expect("other")["id"].clone();

    let driver = start_driver(&chromedriver).await;
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": std::env::var("OPENCORE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"],
        }
    });
    let capabilities = capabilities.as_object().expect("object").clone();
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("webdriver session");

    let result = async {
        client.goto(&format!("http://{http_addr}/admin/")).await?;
        let username = client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#username"))
            .await?;
        // The form shows once the page found it is not signed in.
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#signin-view:not([hidden])"))
            .await?;
        username.send_keys(ADMIN).await?;
        client
            .find(Locator::Css("#password"))
            .await?
            .send_keys(ADMIN_PASSWORD)
            .await?;
        client.find(Locator::Css("#signin")).await?.click().await?;
        let other_row = format!("#connections tr[data-id=\"{other_id}\"]");
        let admin_row = format!("#connections tr[data-id=\"{admin_id}\"]");
        for row in [&admin_row, &other_row] {
            client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css(row))
                .await?;
        }
        let text = client.find(Locator::Css(&admin_row)).await?.text().await?;
        assert!(text.contains(ADMIN), "{text}");
        // The actor tree lists the connections under their supervisors.
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#actors li ul li"))
            .await?;
        client
            .find(Locator::Css(&format!("{other_row} button.close")))
            .await?
            .click()
            .await?;
        Ok::<_, fantoccini::error::CmdError>((other_row, admin_row))
    }
    .await;
    let (other_row, admin_row) = match result {
        Ok(rows) => rows,
        Err(err) => {
            let _ = client.close().await;
            panic!("browser step failed: {err}");
        }
    };

    assert!(
        other.closed().await,
        "the server closed the other connection"
    );
    eventually("row removed after the next refresh", || {
        let client = client.clone();
        let other_row = other_row.clone();
        async move { client.find(Locator::Css(&other_row)).await.is_err() }
    })
    .await;
    assert!(client.find(Locator::Css(&admin_row)).await.is_ok());
    let after = get(http_addr, "/admin/api/connections", &bearer(&jwt))
        .await
        .json();
    assert_eq!(after["total"], 1, "{after}");

    let png = client.screenshot().await.expect("screenshot");
    let _ = client.close().await;
    drop(driver);
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "a PNG"
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/admin-dashboard.png");
    std::fs::write(&path, &png).expect("screenshot written");
    assert!(std::fs::metadata(&path).expect("written").len() > 1000);
    drop(admin);
}
