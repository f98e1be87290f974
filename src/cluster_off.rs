//! A build without the `redis` feature (the ARM builds, to stay within
//! the 4 MiB budget): `--redis` is refused at start, so no instance is
//! ever part of a cluster. [`Cluster`] has no values, and every branch
//! that would use one is unreachable.

use std::collections::HashMap;
use std::sync::Arc;

use crate::app::App;
use crate::message::{RoomName, UserName};
use crate::room::Room;

/// The cluster side of an instance, which a build without Redis never has.
#[derive(Debug)]
pub enum Cluster {}

impl Cluster {
    /// Subscribes to a room's channel.
    pub async fn subscribe(&self, _room: &RoomName) {
        match *self {}
    }

    /// Stops following a room.
    pub fn detach(&self, _room: &RoomName) {
        match *self {}
    }

    /// Whether Redis answers.
    pub fn is_up(&self) -> bool {
        match *self {}
    }
}

impl App {
    /// Nothing to start without Redis.
    pub fn start_cluster(&self) {}

    /// Nothing to leave without Redis.
    pub async fn leave_cluster(&self) {}

    /// Only called with a cluster, which this build never has.
    pub(crate) fn attach(&self, _room: &Arc<Room>, _epoch: String) {
        unreachable!("a build without Redis has no cluster")
    }

    /// Only called with a cluster, which this build never has.
    pub(crate) async fn cluster_presence(
        &self,
        _rooms: &[RoomName],
    ) -> HashMap<RoomName, (usize, Vec<UserName>)> {
        unreachable!("a build without Redis has no cluster")
    }
}
