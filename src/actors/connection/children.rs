//! The actors a connection owns (watches, queue consumers, upload streams): at
//! most a configured number of each kind, all stopped when the connection closes. They
//! are not requests and never count against the in-flight limits.

use actix::Recipient;

use crate::connections::{ActorGuard, Attach, ChildKind, StopChild};
use crate::error::OpenCoreError;

struct Child {
    kind: ChildKind,
    id: String,
    stop: Recipient<StopChild>,
    /// Its actor-tree entry, removed when the child is detached or the connection stops.
    _tree: Option<ActorGuard>,
}

#[derive(Default)]
pub struct Children {
    list: Vec<Child>,
}

impl Children {
    /// Adopts a child unless the connection holds `limit` of its kind already.
    pub fn attach(
        &mut self,
        attach: Attach,
        limit: usize,
        tree: Option<ActorGuard>,
    ) -> Result<(), OpenCoreError> {
        let held = self.list.iter().filter(|c| c.kind == attach.kind).count();
        if held >= limit {
            return Err(OpenCoreError::TooManyChildren {
                kind: attach.kind.plural(),
                limit,
            });
        }
        self.list.push(Child {
            kind: attach.kind,
            id: attach.id,
            stop: attach.stop,
            _tree: tree,
        });
        Ok(())
    }

    /// Stops and forgets one child; `false` when there is no such child.
    pub fn detach(&mut self, kind: ChildKind, id: &str) -> bool {
        let Some(index) = self.list.iter().position(|c| c.kind == kind && c.id == id) else {
            return false;
        };
        self.list.swap_remove(index).stop.do_send(StopChild);
        true
    }

    /// Stops every child (the connection is closing).
    pub fn stop_all(&mut self) {
        for child in self.list.drain(..) {
            child.stop.do_send(StopChild);
        }
    }
}
