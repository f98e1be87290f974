//! The transform pipeline through the real server: a POST answers with the
//! transformed message, every subscriber receives exactly that, and a
//! refusal is a 422 that stores and delivers nothing.

mod support;

use support::Server;

#[test]
fn the_default_pipeline_masks_converts_and_splits_code_for_everyone() {
    let s = Server::start(&["--rate", "0"]);
    let mut subs: Vec<_> = (0..2).map(|_| s.sse("/rooms/t/events")).collect();
    for sub in &mut subs {
        sub.until("hello");
    }
    let posted = s.say("t", "ana", "well shit :) see `shit :)` ok");
    assert_eq!(posted.status, 201, "{}", posted.text());
    let m = posted.json();
    assert_eq!(m["text"], "well **** 🙂 see `shit :)` ok");
    assert_eq!(
        m["spans"],
        serde_json::json!([{"text": "well **** 🙂 see "}, {"code": "shit :)"}, {"text": " ok"}])
    );
    for sub in &mut subs {
        assert_eq!(
            sub.until("message").json(),
            m,
            "subscribers get what the poster got"
        );
    }
    // History holds the transformed message too.
    assert_eq!(s.get("/rooms/t/messages").json()[0], m);
    // No code, no spans field.
    let plain = s.say("t", "ana", "just words").json();
    assert!(plain.get("spans").is_none(), "{plain}");
}

#[test]
fn refuse_mode_answers_422_and_stores_nothing() {
    let s = Server::start(&["--censor-mode", "refuse"]);
    let mut sub = s.sse("/rooms/r/events");
    sub.until("hello");
    let r = s.say("r", "ana", "oh shit");
    assert_eq!(r.status, 422);
    assert!(r.error().starts_with("censor: "), "{}", r.error());
    assert_eq!(
        s.say("r", "ana", "sorry").json()["id"],
        1,
        "the refused post used no id"
    );
    assert_eq!(sub.until("message").json()["text"], "sorry");
    assert_eq!(
        s.get("/rooms/r/messages").json().as_array().unwrap().len(),
        1
    );
    assert_eq!(s.metric("smolchat_posts_refused_total{status=\"422\"}"), 1);
}

#[test]
fn transforms_and_word_lists_come_from_flags() {
    let none = Server::start(&["--transforms", ""]);
    assert_eq!(
        none.say("x", "a", "shit :) `x`").json()["text"],
        "shit :) `x`"
    );
    assert!(none.say("x", "a", "`x`").json().get("spans").is_none());

    let dir = std::env::temp_dir().join(format!("smolchat-words-{}", std::process::id()));
    std::fs::write(&dir, "# house rules\nbroccoli\n").unwrap();
    let custom = Server::start(&[
        "--censor-words",
        dir.to_str().unwrap(),
        "--transforms",
        "autocorrect,censor",
    ]);
    let m = custom.say("x", "a", "teh broccoli, shit").json();
    assert_eq!(
        m["text"], "the ********, shit",
        "the file replaces the built-in list"
    );
    let _ = std::fs::remove_file(&dir);
}

#[test]
fn bad_transform_flags_exit_2() {
    for args in [
        &["--transforms", "censor,glitter"][..],
        &["--censor-words", "/nonexistent/words.txt"],
    ] {
        let out = support::smolchat_command().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
    }
}
