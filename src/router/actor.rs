//! The router actor: the one writer of the routing table. Replicas report leadership
//! changes to it; it updates the table that connection tasks read lock-free and logs what
//! an operator looks for. Owns no sockets and never waits on a replica.

use std::sync::Arc;

use actix::{Actor, Context, Handler, Message};
use tracing::info;

use crate::raft::types::{GroupId, NodeId};
use crate::router::layout::Layout;
use crate::router::table::{GroupRoute, RoutingTable};
use crate::shard::api::LeaderChange;

/// Leader reports queued at the router before senders see a full mailbox.
pub const ROUTER_MAILBOX_CAPACITY: usize = 4096;

/// The router.
pub struct RouterActor {
    table: Arc<RoutingTable>,
    layout: Layout,
}

impl RouterActor {
    pub fn new(table: Arc<RoutingTable>, layout: Layout) -> RouterActor {
        RouterActor { table, layout }
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROUTER_MAILBOX_CAPACITY);
        info!(groups = self.layout.groups.len(), nodes = self.layout.nodes.len(), "router started");
    }
}

/// A replica's leadership report.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportLeader(pub LeaderChange);

impl Handler<ReportLeader> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: ReportLeader, _: &mut Context<Self>) {
        let LeaderChange { group, leader, term } = msg.0;
        if self.table.set_leader(group, leader, term) {
            let leader = leader.map_or(0, NodeId::get);
            info!(group = group.get(), leader, term = term.get(), "leader changed");
        }
    }
}

/// The route of one group.
#[derive(Message)]
#[rtype(result = "Option<GroupRoute>")]
pub struct GetRoute(pub GroupId);

impl Handler<GetRoute> for RouterActor {
    type Result = Option<GroupRoute>;

    fn handle(&mut self, msg: GetRoute, _: &mut Context<Self>) -> Option<GroupRoute> {
        self.table.group(msg.0)
    }
}
