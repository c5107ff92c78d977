//! `release history`: promotions (and, later, pushes), newest first.

use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::bucket::history::{self, Record};
use crate::cli::ListArgs;
use crate::config;
use crate::output::{Outcome, short_commit, table};

/// Runs `release history`.
pub(crate) async fn run(ctx: &Context, args: ListArgs) -> Result<Outcome> {
    let layout = ctx.layout()?;
    let store = Arc::new(ctx.store(None).await);
    let events = history::newest(
        &store,
        &layout,
        args.limit.unwrap_or(config::DEFAULT_LIST_LIMIT),
    )
    .await?;
    let text = if events.is_empty() {
        format!(
            "no history in `{}` (promotions by the old jobs leave none)",
            store.url(&layout.history_prefix())
        )
    } else {
        text(&events)
    };
    Ok(Outcome::new(text, &History { events: &events }))
}

/// `history`'s document (docs/output.md): the records as stored, newest first.
#[derive(Serialize)]
struct History<'a> {
    events: &'a [Record],
}

fn text(events: &[Record]) -> String {
    let mut rows = vec![
        [
            "TIME", "KIND", "FROM", "TO", "USER", "HOST", "TAG", "COMMIT",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    let number = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for event in events {
        let r = event;
        rows.push(vec![
            r.time.clone(),
            r.kind.to_string(),
            number(r.from_version),
            number(r.to_version),
            r.user.clone(),
            r.host.clone(),
            r.tag.clone().unwrap_or_else(|| "-".to_owned()),
            r.commit.as_deref().map_or("-", short_commit).to_owned(),
        ]);
    }
    table(&rows)
}
