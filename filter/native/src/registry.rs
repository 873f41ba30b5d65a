//! One follower per distinct [`FollowSettings`] in the process: every filter configuration
//! (HTTP or network, any listener) with the same control address and compile options shares
//! one compiled program and one polling thread.

use crate::follower::{FollowSettings, Follower, Logger};
use std::sync::{Arc, Mutex, Weak};

static FOLLOWERS: Mutex<Vec<Weak<Follower>>> = Mutex::new(Vec::new());

/// The live follower for `settings`, or a new one with its thread started.
pub fn follower(settings: &FollowSettings, log: Logger) -> std::io::Result<Arc<Follower>> {
    let mut followers = FOLLOWERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    followers.retain(|w| w.strong_count() > 0);
    if let Some(found) = followers
        .iter()
        .filter_map(Weak::upgrade)
        .find(|f| f.settings() == settings)
    {
        return Ok(found);
    }
    let follower = Follower::new(settings.clone());
    follower.spawn(log)?;
    followers.push(Arc::downgrade(&follower));
    Ok(follower)
}
