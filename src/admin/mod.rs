//! `shardkv admin`: operator commands sent to any node's RESP port as `SHARDKV …`, each
//! reporting what it did and how long the group took to serve again. Owns the client
//! side only; the node runs the operations (`resp::cmd::shardkv`, `shard::split`).
//!
//! Must never: report an operation done before the cluster shows it done.

use std::time::{Duration, Instant};

use redis::Value;

/// How often `wait_*` asks the node again.
pub const POLL_INTERVAL_MS: u64 = 20;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach {node}: {source}")]
    Connect {
        node: String,
        source: redis::RedisError,
    },
    #[error("{0}")]
    Refused(String),
    #[error("unexpected reply: {0}")]
    Reply(String),
    #[error("{0}")]
    Timeout(String),
}

/// One group as `SHARDKV GROUPS` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub id: u64,
    pub slots: (u16, u16),
    pub leader: Option<u64>,
    pub replicas: Vec<u64>,
}

/// A connection to one node.
pub struct Admin {
    con: redis::Connection,
}

impl Admin {
    /// Connects to `node` (`HOST:PORT`), authenticating when `password` is given.
    pub fn connect(
        node: &str,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Admin, AdminError> {
        let err = |source| AdminError::Connect {
            node: node.to_string(),
            source,
        };
        let client = redis::Client::open(format!("redis://{node}/")).map_err(err)?;
        let mut con = client.get_connection_with_timeout(timeout).map_err(err)?;
        con.set_read_timeout(Some(timeout)).map_err(err)?;
        con.set_write_timeout(Some(timeout)).map_err(err)?;
        if let Some(password) = password {
            redis::cmd("AUTH")
                .arg(password)
                .query::<()>(&mut con)
                .map_err(refused)?;
        }
        Ok(Admin { con })
    }

    pub fn groups(&mut self) -> Result<Vec<GroupInfo>, AdminError> {
        let rows: Value = redis::cmd("SHARDKV")
            .arg("GROUPS")
            .query(&mut self.con)
            .map_err(refused)?;
        let Value::Array(rows) = rows else {
            return Err(AdminError::Reply(format!("{rows:?}")));
        };
        rows.iter().map(group_info).collect()
    }

    pub fn group(&mut self, id: u64) -> Result<GroupInfo, AdminError> {
        let found = self.groups()?.into_iter().find(|g| g.id == id);
        found.ok_or_else(|| AdminError::Refused(format!("no group {id}")))
    }

    /// Splits `group` (at `at`, or where it halves its keys); returns the child.
    pub fn split(&mut self, group: u64, at: Option<u16>) -> Result<GroupInfo, AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("SPLIT").arg(group);
        if let Some(at) = at {
            cmd.arg(at);
        }
        let (child, first, last): (u64, u16, u16) = cmd.query(&mut self.con).map_err(refused)?;
        Ok(GroupInfo {
            id: child,
            slots: (first, last),
            leader: None,
            replicas: Vec::new(),
        })
    }

    pub fn transfer_leader(&mut self, group: u64, to: u64) -> Result<(), AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("TRANSFER-LEADER").arg(group).arg(to);
        cmd.query::<()>(&mut self.con).map_err(refused)
    }

    /// Waits until `group` has a leader that `accept` likes; returns it.
    pub fn wait_leader(
        &mut self,
        group: u64,
        deadline: Instant,
        accept: impl Fn(u64) -> bool,
    ) -> Result<u64, AdminError> {
        loop {
            if let Ok(info) = self.group(group) {
                if let Some(leader) = info.leader.filter(|&l| accept(l)) {
                    return Ok(leader);
                }
            }
            if Instant::now() >= deadline {
                return Err(AdminError::Timeout(format!(
                    "group {group}: no such leader in time"
                )));
            }
            std::thread::sleep(Duration::from_millis(POLL_INTERVAL_MS));
        }
    }
}

fn refused(e: redis::RedisError) -> AdminError {
    AdminError::Refused(e.to_string())
}

fn group_info(row: &Value) -> Result<GroupInfo, AdminError> {
    let bad = || AdminError::Reply(format!("{row:?}"));
    let Value::Array(fields) = row else {
        return Err(bad());
    };
    let int = |v: &Value| match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => None,
    };
    let [id, first, last, leader, replicas] = fields.as_slice() else {
        return Err(bad());
    };
    let Value::Array(replicas) = replicas else {
        return Err(bad());
    };
    let slot = |v: &Value| int(v).and_then(|s| u16::try_from(s).ok());
    Ok(GroupInfo {
        id: int(id).ok_or_else(bad)?,
        slots: (slot(first).ok_or_else(bad)?, slot(last).ok_or_else(bad)?),
        leader: int(leader),
        replicas: replicas.iter().filter_map(int).collect(),
    })
}
