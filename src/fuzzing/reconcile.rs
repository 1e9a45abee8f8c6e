//! Fuzz entry point `reconcile`: two stores reconcile, with arbitrary sets, strings typed on
//! either side between messages, and the strings each side learns it must send delivered at
//! arbitrary later points; at the end both stores must hold the union of everything.
//!
//! Byte 0 bit 0 picks the other mode: the rest is split into messages (2-byte big-endian
//! lengths) fed to one reconciler over a small store, which must answer or refuse each
//! without panicking and never write a reply over [`MAX_RECON`].

use arbitrary::{Arbitrary, Result, Unstructured};

use crate::reconcile::{Progress, Reconciler};
use crate::store::Store;
use crate::wire::MAX_RECON;

/// Most strings a side starts with, and most steps.
const MAX_ITEMS: usize = 2000;

/// Something that happens before a reconciliation message is handled.
#[derive(Arbitrary, Debug)]
enum Step {
    /// A side types a string; it floods to the other side at a later `Flood`.
    Type { on_a: bool, text: u16 },
    /// Live strings in flight arrive.
    Flood,
    /// The oldest pending batch of strings a side owes its peer is sent.
    Send,
}

/// Strings owed by one side to the other, found by reconciliation.
struct Owed {
    from_a: bool,
    progress: Progress,
}

/// Runs one fuzz input; panics if the stores do not end with the same strings.
pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if flags & 1 == 1 {
        raw(rest);
    } else {
        let _ = pair(&mut Unstructured::new(rest));
    }
}

/// Feeds arbitrary messages to one reconciler.
fn raw(mut data: &[u8]) {
    let mut store = Store::new();
    for i in 0..200u32 {
        store.insert(&i.to_string());
    }
    let mut reconciler = Reconciler::new();
    while let Some((len, rest)) = data.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (msg, rest) = rest.split_at(len);
        data = rest;
        match reconciler.handle(&store, msg) {
            Ok(progress) => {
                let reply = progress.reply.unwrap_or_default();
                assert!(reply.len() <= MAX_RECON, "reply of {}", reply.len());
                // The answer itself must be well-formed for a fresh peer.
                let _ = Reconciler::new()
                    .handle(&store, &reply)
                    .expect("our reply is well-formed");
            }
            Err(error) => assert!(!error.to_string().is_empty()),
        }
    }
}

fn text(n: u16) -> String {
    format!("string {n}")
}

/// Two stores reconcile while strings are typed and delivered late.
fn pair(u: &mut Unstructured<'_>) -> Result<()> {
    let mut a = Store::new();
    let mut b = Store::new();
    let count = u.int_in_range(0..=MAX_ITEMS)?;
    for _ in 0..count {
        let n = u16::arbitrary(u)?;
        match u.int_in_range(0..=2)? {
            0 => a.insert(&text(n)),
            1 => b.insert(&text(n)),
            _ => a.insert(&text(n)).and(b.insert(&text(n))),
        };
    }
    let mut steps = Vec::new();
    while steps.len() < MAX_ITEMS && !u.is_empty() {
        steps.push(Step::arbitrary(u)?);
    }
    let mut steps = steps.into_iter();

    let mut flooding: Vec<(bool, String)> = Vec::new();
    let mut owed: Vec<Owed> = Vec::new();
    let mut ra = Reconciler::new();
    let mut rb = Reconciler::new();
    let mut msg = Some(ra.initiate(&a));
    let mut to_b = true;
    while let Some(m) = msg.take() {
        assert!(m.len() <= MAX_RECON);
        for step in steps.by_ref() {
            match step {
                Step::Type { on_a, text: n } => {
                    let store = if on_a { &mut a } else { &mut b };
                    if store.insert(&text(n)).is_some() {
                        flooding.push((on_a, text(n)));
                    }
                }
                Step::Flood => flood(&mut flooding, &mut a, &mut b),
                Step::Send => {
                    if !owed.is_empty() {
                        pay(owed.remove(0), &mut a, &mut b);
                    }
                }
            }
            if matches!(step, Step::Send) {
                break;
            }
        }
        let (store, reconciler) = if to_b { (&b, &mut rb) } else { (&a, &mut ra) };
        let mut progress = reconciler
            .handle(store, &m)
            .expect("honest traffic is accepted");
        msg = progress.reply.take();
        owed.push(Owed {
            from_a: !to_b,
            progress,
        });
        to_b = !to_b;
    }
    assert!(ra.is_done() && rb.is_done(), "both sides know the end");
    for debt in owed {
        pay(debt, &mut a, &mut b);
    }
    flood(&mut flooding, &mut a, &mut b);
    let mut left: Vec<&str> = a.iter().collect();
    let mut right: Vec<&str> = b.iter().collect();
    left.sort_unstable();
    right.sort_unstable();
    assert_eq!(left, right, "both sides hold the union");
    Ok(())
}

/// Delivers every live string in flight.
fn flood(flooding: &mut Vec<(bool, String)>, a: &mut Store, b: &mut Store) {
    for (from_a, text) in flooding.drain(..) {
        let to = if from_a { &mut *b } else { &mut *a };
        to.insert(&text);
    }
}

/// Sends what one side learned the other lacks, and what it asked for.
fn pay(debt: Owed, a: &mut Store, b: &mut Store) {
    let (from, to) = if debt.from_a { (a, b) } else { (b, a) };
    let mut indices = Vec::new();
    for &range in &debt.progress.peer_lacks {
        let mut rest = Some(range);
        while let Some(range) = rest {
            rest = from.walk(range, 64, &mut indices);
        }
    }
    for index in indices {
        to.insert(from.get(index));
    }
    for id in &debt.progress.we_lack {
        let index = to.index_of(id).expect("the peer has what it listed");
        from.insert(to.get(index));
    }
}
