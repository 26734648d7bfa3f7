//! `shardkv admin`: operator commands sent to any node's RESP port as `SHARDKV …`, each
//! reporting what it did and how long the group took to serve again. Owns the client
//! side only; the node runs the operations (`resp::cmd::shardkv`, `shard::split`,
//! `shard::members`). Replica moves are sequences of such commands (`moves`); the
//! rebalance plan is computed here (`rebalance`).
//!
//! Must never: report an operation done before the cluster shows it done.

pub mod moves;
pub mod rebalance;

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

/// One replica as the group's leader reports it (`SHARDKV MEMBERS`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node: u64,
    /// `voter`, `learner` or `outgoing`.
    pub kind: String,
    /// How far the leader knows this replica has the log.
    pub matched: u64,
}

/// A group's membership as its leader reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembersInfo {
    pub leader: u64,
    pub commit_index: u64,
    pub joint: bool,
    pub replicas: Vec<MemberInfo>,
}

impl MembersInfo {
    pub fn member(&self, node: u64) -> Option<&MemberInfo> {
        self.replicas.iter().find(|m| m.node == node)
    }

    /// The voters, joint halves included.
    pub fn voters(&self) -> Vec<u64> {
        let voters = self.replicas.iter().filter(|m| m.kind != "learner");
        voters.map(|m| m.node).collect()
    }
}

/// A connection to one node.
pub struct Admin {
    con: redis::Connection,
    /// The node's address, the password and the time-out, to reach other nodes alike.
    node: String,
    password: Option<String>,
    timeout: Duration,
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
        Ok(Admin {
            con,
            node: node.to_string(),
            password: password.map(str::to_string),
            timeout,
        })
    }

    /// The address this connection reaches.
    pub fn address(&self) -> &str {
        &self.node
    }

    /// A connection to another node, with the same password and time-out.
    pub fn connect_to(&self, node: &str) -> Result<Admin, AdminError> {
        Admin::connect(node, self.password.as_deref(), self.timeout)
    }

    /// Every node of the cluster: id and RESP address.
    pub fn nodes(&mut self) -> Result<Vec<(u64, String)>, AdminError> {
        let rows: Vec<(u64, String)> = redis::cmd("SHARDKV")
            .arg("NODES")
            .query(&mut self.con)
            .map_err(refused)?;
        Ok(rows)
    }

    /// A connection to node `id`.
    pub fn connect_node(&mut self, id: u64) -> Result<Admin, AdminError> {
        let nodes = self.nodes()?;
        let Some((_, addr)) = nodes.into_iter().find(|(n, _)| *n == id) else {
            return Err(AdminError::Refused(format!("no node {id} in the cluster")));
        };
        self.connect_to(&addr)
    }

    /// The group's membership as its leader reports it.
    pub fn members(&mut self, group: u64) -> Result<MembersInfo, AdminError> {
        let (leader, commit_index, joint, rows): (u64, u64, u8, Vec<(u64, String, u64)>) =
            redis::cmd("SHARDKV")
                .arg("MEMBERS")
                .arg(group)
                .query(&mut self.con)
                .map_err(refused)?;
        let replicas = rows
            .into_iter()
            .map(|(node, kind, matched)| MemberInfo {
                node,
                kind,
                matched,
            })
            .collect();
        Ok(MembersInfo {
            leader,
            commit_index,
            joint: joint != 0,
            replicas,
        })
    }

    /// One membership command (`ADD-LEARNER`, `PROMOTE`, `REMOVE-NODE`: one node;
    /// `REPLACE`: from, to), answered once it applied on the leader.
    pub fn change(&mut self, sub: &str, group: u64, nodes: &[u64]) -> Result<(), AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg(sub).arg(group);
        for node in nodes {
            cmd.arg(*node);
        }
        cmd.query::<()>(&mut self.con).map_err(refused)
    }

    /// On the node this connection reaches: start an empty replica of `group`.
    pub fn open_replica(&mut self, group: u64) -> Result<(), AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("OPEN-REPLICA").arg(group);
        cmd.query::<()>(&mut self.con).map_err(refused)
    }

    /// On the node this connection reaches: delete its replica of `group`, once the
    /// group's leader confirms the node is no longer a member.
    pub fn drop_replica(&mut self, group: u64) -> Result<(), AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("DROP-REPLICA").arg(group);
        cmd.query::<()>(&mut self.con).map_err(refused)
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

    /// Splits `group` (at `at`, or where it halves its keys) into a group whose id the
    /// metadata group hands out; returns the child.
    pub fn split(&mut self, group: u64, at: Option<u16>) -> Result<GroupInfo, AdminError> {
        let child = self.alloc_group()?;
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("SPLIT").arg(group);
        if let Some(at) = at {
            cmd.arg(at);
        }
        cmd.arg("CHILD").arg(child);
        let (child, first, last): (u64, u16, u16) = cmd.query(&mut self.con).map_err(refused)?;
        Ok(GroupInfo {
            id: child,
            slots: (first, last),
            leader: None,
            replicas: Vec::new(),
        })
    }

    /// A group id no one else is given (a logged operation of the metadata group).
    pub fn alloc_group(&mut self) -> Result<u64, AdminError> {
        redis::cmd("SHARDKV").arg("ALLOC-GROUP").query(&mut self.con).map_err(refused)
    }

    /// Removes `node`, which must hold no replica any more, from the cluster map.
    pub fn forget_node(&mut self, node: u64) -> Result<(), AdminError> {
        redis::cmd("SHARDKV").arg("FORGET-NODE").arg(node).query(&mut self.con).map_err(refused)
    }

    /// The cluster map, read through the metadata group's leader.
    pub fn map(&mut self) -> Result<crate::kv::meta::ClusterMap, AdminError> {
        let bytes: Vec<u8> = redis::cmd("SHARDKV").arg("MAP").query(&mut self.con).map_err(refused)?;
        crate::kv::meta::ClusterMap::decode(&bytes).map_err(|e| AdminError::Reply(e.to_string()))
    }

    pub fn transfer_leader(&mut self, group: u64, to: u64) -> Result<(), AdminError> {
        let mut cmd = redis::cmd("SHARDKV");
        cmd.arg("TRANSFER-LEADER").arg(group).arg(to);
        cmd.query::<()>(&mut self.con).map_err(refused)
    }

    /// Waits until `group` has a leader that `accept` likes; returns it. Asks the group
    /// itself (`MEMBERS` is answered by its leader), not the asked node's cache of it.
    pub fn wait_leader(
        &mut self,
        group: u64,
        deadline: Instant,
        accept: impl Fn(u64) -> bool,
    ) -> Result<u64, AdminError> {
        loop {
            if let Ok(members) = self.members(group) {
                if accept(members.leader) {
                    return Ok(members.leader);
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

/// A node's error reply as the node worded it (`CODE detail`), or the client's error.
fn refused(e: redis::RedisError) -> AdminError {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => AdminError::Refused(format!("{code} {detail}")),
        _ => AdminError::Refused(e.to_string()),
    }
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
