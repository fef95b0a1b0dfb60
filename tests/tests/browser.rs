//! The browser chat page in headless Chromium: two browser sessions in one room see each
//! other's messages and the room's member count.

// Test helpers panic on failure by design: a panic is the test failing with a location.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use streampod_tests::webdriver::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_in_one_room() {
    let server = example_server::server().bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}/", server.local_addr());
    let driver = Driver::start().await;
    let ann = driver.browser().await;
    let bob = driver.browser().await;

    for (browser, name) in [(&ann, "ann"), (&bob, "bob")] {
        browser.open(&page).await;
        browser.fill("#name", name).await;
        browser.fill("#room", "lobby").await;
        browser.click("#join").await;
        browser
            .wait_for_text("#status", "the page to connect", |s| s == "online")
            .await;
    }
    ann.wait_for_text("#members", "both members", |s| s == "2 in lobby")
        .await;

    ann.fill("#message", "hello from ann").await;
    ann.click("#send").await;
    for browser in [&ann, &bob] {
        browser
            .wait_for_text("#log", "ann's message", |log| {
                log.contains("ann (guest ") && log.contains("hello from ann")
            })
            .await;
    }
    bob.fill("#message", "hi ann, bob here").await;
    bob.click("#send").await;
    for browser in [&ann, &bob] {
        browser
            .wait_for_text("#log", "bob's reply", |log| {
                log.contains("bob (guest ") && log.contains("hi ann, bob here")
            })
            .await;
    }

    bob.quit().await;
    ann.wait_for_text("#members", "bob to leave", |s| s == "1 in lobby")
        .await;
    ann.quit().await;
    server.shutdown().await;
}
