//! The per-user post budget ([`ServerConfig::user_rate_limit`](crate::ServerConfig::user_rate_limit)):
//! what one signed-in user may send per second across all their sessions, and in a
//! cluster across every server: each server counts its own and, every
//! [`SHARE_INTERVAL`], tells the others what its users spent, which they take from
//! their buckets. A user spending on several servers at once can exceed the budget by
//! what one interval lets through before the others hear of it.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use super::central::MessageCentral;
use crate::cluster::{Backplane, Topic};
use crate::protocol::ModelSet;
use crate::rate_limit::{RateLimit, UserBudget};

/// How often a server tells the others what its users spent.
pub(crate) const SHARE_INTERVAL: Duration = Duration::from_millis(100);

/// What a server's users spent, on the backplane.
#[derive(serde::Serialize, serde::Deserialize)]
struct Notice {
    spent: Spent,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Spent {
    node: u64,
    users: HashMap<String, u32>,
}

impl<P: ModelSet> MessageCentral<P> {
    /// Limits what each signed-in user may post, on this server and (with a backplane)
    /// across the cluster. Called once, by the server builder, after the backplane is
    /// attached.
    pub(crate) fn set_user_rate_limit(&self, limit: RateLimit) {
        let shared = self.cluster().is_some();
        let budget = UserBudget::new(limit, shared);
        if self.inner.user_budget.set(Arc::new(budget)).is_err() || !shared {
            return;
        }
        let central = Arc::downgrade(&self.inner);
        self.runtime().spawn(async move {
            let mut every = tokio::time::interval(SHARE_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(inner) = central.upgrade() else {
                    return;
                };
                MessageCentral::from_inner(inner).share_spending();
            }
        });
    }

    /// Takes one post from `user`'s budget: `Err` with the limit and the seconds to
    /// wait when it is spent. Always `Ok` without a limit.
    pub(crate) fn spend_user_budget(&self, user: &str) -> Result<(), (RateLimit, u32)> {
        let Some(budget) = self.inner.user_budget.get() else {
            return Ok(());
        };
        budget
            .buckets
            .take(user.to_owned())
            .map_err(|wait| (budget.limit, wait))?;
        if budget.shared {
            let mut spent = budget.spent.lock().unwrap_or_else(PoisonError::into_inner);
            *spent.entry(user.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    /// Tells the other servers what this one's users spent since the last time.
    fn share_spending(&self) {
        let (Some(budget), Some(cluster)) = (self.inner.user_budget.get(), self.cluster()) else {
            return;
        };
        let users = std::mem::take(&mut *budget.spent.lock().unwrap_or_else(PoisonError::into_inner));
        if users.is_empty() {
            return;
        }
        let notice = Notice {
            spent: Spent {
                node: cluster.node(),
                users,
            },
        };
        let Ok(payload) = serde_json::to_vec(&notice) else {
            return;
        };
        if let Err(error) = cluster.publish(Topic::Broadcasts, payload, None) {
            tracing::debug!(target: "streampod::cluster", %error, "could not share the users' post budgets");
        }
    }

    /// Takes what another server's users spent from their buckets here.
    pub(crate) fn spending_arrived(&self, payload: &[u8]) {
        let Some(budget) = self.inner.user_budget.get() else {
            return;
        };
        let spent = match serde_json::from_slice::<Notice>(payload) {
            Ok(notice) => notice.spent,
            Err(error) => {
                tracing::warn!(target: "streampod::cluster", %error, "ignoring a malformed budget notice");
                return;
            }
        };
        if self.cluster().map(Backplane::node) == Some(spent.node) {
            return;
        }
        for (user, count) in spent.users {
            budget.buckets.debit(user, count);
        }
    }
}
