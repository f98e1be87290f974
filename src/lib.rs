//! smolchat: a chat server for small boards.
#![forbid(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod message;
pub mod transform;
