//! Who of the team can take calls: an agent is *offline* without a console
//! open, *in a call* while one they accepted is live, else *available* or
//! *away* as they said. Kept in memory (it is about connections now); the
//! consoles see it live, so a supervisor knows who can take the next call.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Available,
    Away,
    InCall,
    Offline,
}

#[derive(Default)]
struct Agent {
    consoles: usize,
    away: bool,
}

/// Agents' consoles and what they said; the control plane's, never the media plane's.
#[derive(Default)]
pub struct Presence {
    agents: Mutex<HashMap<i64, Agent>>,
}

/// One member of the team as the consoles list them.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub email: String,
    pub name: Option<String>,
    pub status: Status,
}

impl Presence {
    pub fn console_opened(&self, agent: i64) {
        self.agents.lock().expect("presence lock").entry(agent).or_default().consoles += 1;
    }

    pub fn console_closed(&self, agent: i64) {
        let mut agents = self.agents.lock().expect("presence lock");
        if let Some(a) = agents.get_mut(&agent) {
            a.consoles = a.consoles.saturating_sub(1);
        }
    }

    pub fn set_away(&self, agent: i64, away: bool) {
        self.agents.lock().expect("presence lock").entry(agent).or_default().away = away;
    }

    /// Whether `agent` said they are away.
    pub fn is_away(&self, agent: i64) -> bool {
        self.agents.lock().expect("presence lock").get(&agent).is_some_and(|a| a.away)
    }

    /// Every agent with their status, in e-mail order.
    pub async fn team(&self, store: &Store) -> Result<Vec<Member>, sqlx::Error> {
        let agents = store.agents().await?;
        let busy = store.agents_in_live_calls().await?;
        let now: HashMap<i64, (bool, bool)> = {
            let map = self.agents.lock().expect("presence lock");
            map.iter().map(|(id, a)| (*id, (a.consoles > 0, a.away))).collect()
        };
        Ok(agents
            .into_iter()
            .map(|a| {
                let (online, away) = now.get(&a.id).copied().unwrap_or((false, false));
                let status = match () {
                    _ if busy.contains(&a.id) => Status::InCall,
                    _ if !online => Status::Offline,
                    _ if away => Status::Away,
                    _ => Status::Available,
                };
                Member { email: a.email, name: a.name, status }
            })
            .collect())
    }
}
