use std::time::SystemTime;

use actix::prelude::*;

use super::*;

/// Counts what reaches it, standing in for a connection actor.
#[derive(Default)]
struct Probe {
    pushes: usize,
    closes: usize,
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<Push> for Probe {
    type Result = ();
    fn handle(&mut self, _: Push, _: &mut Context<Self>) {
        self.pushes += 1;
    }
}

impl Handler<Control> for Probe {
    type Result = ();
    fn handle(&mut self, control: Control, _: &mut Context<Self>) {
        if control == Control::Close {
            self.closes += 1;
        }
    }
}

#[derive(Message)]
#[rtype(result = "(usize, usize)")]
struct Counts;

impl Handler<Counts> for Probe {
    type Result = MessageResult<Counts>;
    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
        MessageResult((self.pushes, self.closes))
    }
}

fn entry(id: u64, addr: &Addr<Probe>, user: Option<&str>) -> RegistryEntry {
    RegistryEntry {
        info: ConnectionInfo {
            id,
            transport: TransportKind::Tcp,
            peer: "127.0.0.1:1".into(),
            agent: String::new(),
            version: String::new(),
            user: user.map(|u| UserRef {
                id: u.into(),
                name: u.into(),
                username: u.into(),
            }),
            connected: SystemTime::now(),
            children: Vec::new(),
        },
        stats: Default::default(),
        control: addr.clone().recipient(),
        push: addr.clone().recipient(),
    }
}

#[actix_rt::test]
async fn pushes_and_closes_reach_only_that_users_connections() {
    let registry = Registry::default();
    let alice1 = Probe::default().start();
    let alice2 = Probe::default().start();
    let bob = Probe::default().start();
    registry.insert(entry(1, &alice1, Some("alice")));
    registry.insert(entry(2, &alice2, Some("alice")));
    registry.insert(entry(3, &bob, Some("bob")));
    let envelope = crate::proto::Envelope::default();
    assert_eq!(registry.push_to_user("alice", &envelope), 2);
    assert_eq!(registry.close_user("alice"), 2);
    assert_eq!(alice1.send(Counts).await.unwrap(), (1, 1));
    assert_eq!(alice2.send(Counts).await.unwrap(), (1, 1));
    assert_eq!(bob.send(Counts).await.unwrap(), (0, 0));
    let mut ids = registry.connections_of("alice");
    ids.sort();
    assert_eq!(ids, vec![1, 2]);
}

#[actix_rt::test]
async fn sessions_and_children_are_tracked() {
    let registry = Registry::default();
    let probe = Probe::default().start();
    registry.insert(entry(7, &probe, None));
    assert!(registry.connections_of("carol").is_empty());
    let carol = UserRef {
        id: "carol".into(),
        name: "Carol".into(),
        username: "carol".into(),
    };
    registry.set_session(7, Some(carol), "rust", "0.0.41");
    assert_eq!(registry.connections_of("carol"), vec![7]);
    registry.add_child(7, ChildKind::Watch, "w1");
    registry.add_child(7, ChildKind::Watch, "w2");
    assert_eq!(registry.count_children(ChildKind::Watch), 2);
    registry.remove_child(7, ChildKind::Watch, "w1");
    let info = registry.get(7).unwrap();
    assert_eq!(info.children, vec![(ChildKind::Watch, "w2".to_string())]);
    assert_eq!(info.agent, "rust");
    registry.remove(7);
    assert!(registry.is_empty());
    assert!(!registry.control(7, Control::Close));
}
