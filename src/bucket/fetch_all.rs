//! Reading many small objects at once, a bounded number at a time.
//!
//! `list` reads one manifest per build and `history` one record per event; one request after
//! the other would make both slow on a big bucket, all at once would flood it.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::task::JoinSet;

use crate::bucket::store::{Object, Store};

/// Requests in flight at once.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

/// Every object of `keys`, in the same order (`None` where there is none).
pub(crate) async fn get_all(store: &Arc<Store>, keys: Vec<String>) -> Result<Vec<Option<Object>>> {
    let mut found: Vec<Option<Object>> = vec![None; keys.len()];
    let mut pending = keys.into_iter().enumerate();
    let mut running = JoinSet::new();
    loop {
        while running.len() < MAX_IN_FLIGHT {
            let Some((index, key)) = pending.next() else {
                break;
            };
            let store = Arc::clone(store);
            running.spawn(async move {
                let object = store
                    .get(&key)
                    .await
                    .with_context(|| format!("reading `{}`", store.url(&key)));
                (index, object)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (index, object) = joined.context("a read task failed")?;
        found[index] = object?;
    }
    Ok(found)
}
