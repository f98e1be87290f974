//! smolchat: one small binary that turns a Raspberry Pi (or any Linux box)
//! into a chat server. Browsers and `curl` post messages; every client of a
//! room receives them live over Server-Sent Events.
//!
//! # Crate map
//!
//! ```text
//! main.rs        subcommands, or config -> bind -> server::run(listener, app)
//! config.rs      flags + SMOLCHAT_* env -> validated Config (pure)
//! server.rs      executor threads, accept loop, connection limit, signals, drain
//! exec.rs        the executor: I/O-woken and new tasks before task-woken ones
//! shutdown.rs    shutdown signal and open-connection tracker
//! app.rs         App: Clone handle on shared state (rooms, memory, metrics, limits)
//! cluster.rs     --redis: each room's feed from Redis pub/sub (holes filled in
//!                id order), presence across instances
//! tls.rs         --tls-cert/--tls-key: the rustls config, reloaded on SIGHUP
//! cli/           smolchat user / token / access (accounts in the database file
//!                or Redis), export / import (a SQLite box into Redis)
//! memory.rs      the memory budget: one counter for every message in memory
//! http/          conn.rs keep-alive loop and stream driver, head.rs the guard,
//!                chunked.rs, body.rs POST decoding, mod.rs the router,
//!                reply.rs errors + CORS, sse.rs chunk framing, page.rs the page
//! ---------------------------------------------------------------- domain
//! room.rs        broadcast channel, presence, publish (backpressure), subscribe
//! event.rs       stream events and their one SSE encoding (shared Frames)
//! history/       the in-memory window of each room, the SQLite store, the
//!                Redis store (ids, streams, one Lua script per post)
//! transform/     message pipeline
//! accounts/      users, tokens, rules, sessions: who is asking, what they may do
//!                (in the SQLite file or in Redis hashes)
//! message.rs     RoomName, UserName, Message, Span, Timestamp, the text policy
//! rate.rs        token bucket per client
//! metrics.rs     counters -> Prometheus text
//! lan.rs         the machine's addresses (from /proc) -> URLs for phones
//! invite.rs      a URL -> QR code (SVG for the page, text for --qr)
//! ```
//!
//! Layers point one way: the edges (main, config, server, exec, shutdown,
//! app, cluster, tls, cli)
//! use `http/`, which uses the domain (room, event, history, message,
//! transform, rate). The domain imports neither: a room is handed the stop
//! signal it waits on as a future, and encodes its events with `event.rs`.
//! `metrics.rs` is a set of counters any layer may bump; `invite.rs` and
//! `lan.rs` are pure helpers of the edges and the page.
//!
//! # Data flow
//!
//! ```text
//! POST  guard -> decode -> bounded body -> rate check -> body::decode -> transforms
//!       -> room.publish (waits while the queue is full; deadline -> 503) -> 201
//! GET   guard -> decode -> room.subscribe (receiver + history under one lock)
//!       -> hello, gap?, replay -> live frames batched into chunks -> keepalive
//!       presence changes wake each stream beside the queue (coalesced)
//!       a socket that stops draining stops its receiver, the queue fills and
//!       publishers wait: that is the backpressure; a stream that holds a
//!       post back for --stall-budget is cut, as is one that accepts
//!       nothing for --slow-timeout.
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod accounts;
pub mod app;
pub mod cli;
#[cfg(feature = "redis")]
pub mod cluster;
#[cfg(not(feature = "redis"))]
#[path = "cluster_off.rs"]
pub mod cluster;
pub mod config;
pub mod event;
pub mod exec;
pub mod history;
pub mod http;
pub mod invite;
pub mod lan;
pub mod memory;
pub mod message;
pub mod metrics;
pub mod rate;
pub mod room;
pub mod server;
pub mod shutdown;
pub mod tls;
pub mod transform;
