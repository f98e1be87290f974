//! smolchat: one small binary that turns a Raspberry Pi (or any Linux box)
//! into a chat server. Browsers and `curl` post messages; every client of a
//! room receives them live over Server-Sent Events.
//!
//! # Crate map
//!
//! ```text
//! main.rs        config -> bind -> server::run(listener, app)
//! config.rs      flags + SMOLCHAT_* env -> validated Config (pure)
//! server.rs      executor threads, accept loop, connection limit, signals, drain
//! shutdown.rs    shutdown signal and open-connection tracker
//! app.rs         App: Clone handle on shared state (rooms, metrics, limits)
//! http/          conn.rs keep-alive loop and stream driver, head.rs the guard,
//!                chunked.rs, body.rs POST decoding, mod.rs the router,
//!                reply.rs errors + CORS, sse.rs encoding, page.rs the page
//! room.rs        broadcast channel, presence, publish (backpressure), subscribe
//! history/       the in-memory window of each room
//! transform/     message pipeline
//! message.rs     RoomName, UserName, Message, Span, Timestamp
//! rate.rs        token bucket per client
//! metrics.rs     counters -> Prometheus text
//! ```
//!
//! # Data flow
//!
//! ```text
//! POST  guard -> decode -> bounded body -> rate check -> body::decode -> transforms
//!       -> room.publish (waits while the queue is full; deadline -> 503) -> 201
//! GET   guard -> decode -> room.subscribe (receiver + history under one lock)
//!       -> hello, gap?, replay -> live frames batched into chunks -> keepalive
//!       a socket that stops draining stops its receiver, the queue fills and
//!       publishers wait: that is the backpressure; --slow-timeout cuts it.
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod app;
pub mod config;
pub mod history;
pub mod http;
pub mod message;
pub mod metrics;
pub mod rate;
pub mod room;
pub mod server;
pub mod shutdown;
pub mod transform;
