use super::*;

fn pair(a: &RoomKey, b: &RoomKey) -> (Link, Vec<u8>, Link, Vec<u8>) {
    let (i, to_r) = Link::new(Role::Initiator, &Identity::from_seed(1), a, [1; 32]);
    let (r, to_i) = Link::new(Role::Responder, &Identity::from_seed(2), b, [2; 32]);
    (i, to_r, r, to_i)
}

/// Delivers bytes both ways, `chunk` bytes per read, until neither side has anything to say;
/// returns each side's first error and the plaintext each read.
fn pump(
    i: &mut Link,
    mut to_r: Vec<u8>,
    r: &mut Link,
    mut to_i: Vec<u8>,
    chunk: usize,
) -> [(Option<LinkError>, Vec<u8>); 2] {
    let mut results: [(Option<LinkError>, Vec<u8>); 2] = Default::default();
    while !to_r.is_empty() || !to_i.is_empty() {
        for piece in std::mem::take(&mut to_r).chunks(chunk) {
            let (error, plain) = &mut results[1];
            if let Err(e) = r.read(piece, &mut to_i, plain) {
                error.get_or_insert(e);
            }
        }
        for piece in std::mem::take(&mut to_i).chunks(chunk) {
            let (error, plain) = &mut results[0];
            if let Err(e) = i.read(piece, &mut to_r, plain) {
                error.get_or_insert(e);
            }
        }
    }
    results
}

#[test]
fn an_open_room_handshakes_and_each_side_proves_its_identity() {
    for chunk in [1, 7, 1000] {
        let (mut i, to_r, mut r, to_i) = pair(&RoomKey::Open, &RoomKey::Open);
        let [a, b] = pump(&mut i, to_r, &mut r, to_i, chunk);
        assert_eq!((a.0, b.0), (None, None));
        assert!(i.is_established() && r.is_established());
        assert_eq!(i.remote(), Some(Identity::from_seed(2).client_id()));
        assert_eq!(r.remote(), Some(Identity::from_seed(1).client_id()));
    }
}

#[test]
fn records_carry_the_stream_across_record_boundaries_and_any_read_size() {
    let room = RoomKey::private(b"0123456789abcdef");
    let (mut i, to_r, mut r, to_i) = pair(&room, &room);
    pump(&mut i, to_r, &mut r, to_i, 1000);
    let stream: Vec<u8> = (0..200_000u32).map(|n| (n * 7 % 251) as u8).collect();
    let mut sealed = Vec::new();
    i.seal(&stream[..10], &mut sealed);
    i.seal(&stream[10..], &mut sealed);
    assert_eq!(
        sealed.len(),
        stream.len() + 5 * (2 + TAG_LEN),
        "one record per 64 KiB"
    );
    for chunk in [1, 3, 65_537, sealed.len()] {
        let (mut i2, to_r, mut r2, to_i) = pair(&room, &room);
        pump(&mut i2, to_r, &mut r2, to_i, 1000);
        let mut sealed = Vec::new();
        i2.seal(&stream, &mut sealed);
        let mut plain = Vec::new();
        for piece in sealed.chunks(chunk) {
            r2.read(piece, &mut Vec::new(), &mut plain).unwrap();
        }
        assert_eq!(plain, stream);
        assert!(!r2.is_mid_record());
    }
}

#[test]
fn a_wrong_key_is_told_to_both_sides_and_nothing_else_is() {
    let (mut i, to_r, mut r, to_i) = pair(&RoomKey::private(b"ours"), &RoomKey::private(b"theirs"));
    let [a, b] = pump(&mut i, to_r, &mut r, to_i, 1000);
    assert_eq!(a.0, Some(LinkError::WrongKey));
    assert_eq!(b.0, Some(LinkError::PeerWrongKey));
    assert!(a.1.is_empty() && b.1.is_empty());
    assert!(!i.is_established() && !r.is_established());
}

#[test]
fn a_keyless_client_and_a_private_room_each_say_which_side_lacks_the_key() {
    let (mut i, to_r, mut r, to_i) = pair(&RoomKey::Open, &RoomKey::private(b"k"));
    let [a, b] = pump(&mut i, to_r, &mut r, to_i, 1000);
    assert_eq!(
        (a.0, b.0),
        (Some(LinkError::NeedsKey), Some(LinkError::Keyless))
    );
    let (mut i, to_r, mut r, to_i) = pair(&RoomKey::private(b"k"), &RoomKey::Open);
    let [a, b] = pump(&mut i, to_r, &mut r, to_i, 1000);
    assert_eq!(
        (a.0, b.0),
        (Some(LinkError::PeerOpen), Some(LinkError::PeerKeyed))
    );
}

#[test]
fn a_flipped_byte_anywhere_in_a_record_fails_it() {
    let room = RoomKey::Open;
    let (mut i, to_r, mut r, to_i) = pair(&room, &room);
    pump(&mut i, to_r, &mut r, to_i, 1000);
    let mut sealed = Vec::new();
    i.seal(b"hello there", &mut sealed);
    for at in 2..sealed.len() {
        let (mut i2, to_r, mut r2, to_i) = pair(&room, &room);
        pump(&mut i2, to_r, &mut r2, to_i, 1000);
        let mut bad = Vec::new();
        i2.seal(b"hello there", &mut bad);
        bad[at] ^= 0x10;
        let mut plain = Vec::new();
        assert_eq!(
            r2.read(&bad, &mut Vec::new(), &mut plain),
            Err(LinkError::BadRecord)
        );
        assert!(plain.is_empty());
        // After a failure nothing more is read.
        let mut good = Vec::new();
        i2.seal(b"more", &mut good);
        assert_eq!(r2.read(&good, &mut Vec::new(), &mut plain), Ok(Read::Bytes));
        assert!(plain.is_empty());
    }
}

#[test]
fn a_replayed_record_or_a_replayed_session_fails() {
    let room = RoomKey::private(b"k");
    let (mut i, to_r, mut r, to_i) = pair(&room, &room);
    let recorded = to_r.clone();
    pump(&mut i, to_r, &mut r, to_i, 1000);
    let mut sealed = Vec::new();
    i.seal(b"once", &mut sealed);
    let mut plain = Vec::new();
    r.read(&sealed, &mut Vec::new(), &mut plain).unwrap();
    assert_eq!(
        r.read(&sealed, &mut Vec::new(), &mut plain),
        Err(LinkError::BadRecord)
    );
    // The initiator's first flight, replayed to a responder, gets an answer; but the replayer
    // cannot finish the handshake, and the responder never establishes.
    let (mut r2, _) = Link::new(Role::Responder, &Identity::from_seed(2), &room, [9; 32]);
    let mut reply = Vec::new();
    assert_eq!(r2.read(&recorded, &mut reply, &mut plain), Ok(Read::Bytes));
    assert!(!r2.is_established());
}

#[test]
fn a_long_handshake_message_is_refused_before_it_is_buffered() {
    let (mut r, _) = Link::new(
        Role::Responder,
        &Identity::from_seed(2),
        &RoomKey::Open,
        [2; 32],
    );
    let mut bytes = GREETING.to_vec();
    bytes.extend_from_slice(&[OPEN, 0xff, 0xff]);
    assert_eq!(
        r.read(&bytes, &mut Vec::new(), &mut Vec::new()),
        Err(LinkError::HandshakeTooLong(65_535))
    );
}

#[test]
fn a_version_2_greeting_is_explained() {
    let (mut r, _) = Link::new(
        Role::Responder,
        &Identity::from_seed(2),
        &RoomKey::Open,
        [2; 32],
    );
    let err = r
        .read(b"FLOODCHAT\x02\x00\x00", &mut Vec::new(), &mut Vec::new())
        .unwrap_err();
    assert_eq!(err, LinkError::Greeting(DecodeError::UnsupportedVersion(2)));
    assert!(err.to_string().contains("version 2"), "{err}");
}

#[test]
fn the_same_seeds_give_the_same_bytes() {
    let a = Link::new(
        Role::Initiator,
        &Identity::from_seed(1),
        &RoomKey::Open,
        [1; 32],
    )
    .1;
    let b = Link::new(
        Role::Initiator,
        &Identity::from_seed(1),
        &RoomKey::Open,
        [1; 32],
    )
    .1;
    let c = Link::new(
        Role::Initiator,
        &Identity::from_seed(1),
        &RoomKey::Open,
        [3; 32],
    )
    .1;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn an_invite_reads_back_as_written_and_bad_ones_say_why() {
    let invite = Invite {
        addr: "[::1]:4000".parse().unwrap(),
        key: *b"0123456789abcdef",
    };
    let text = invite.to_string();
    assert_eq!(
        text,
        "floodchat:30313233343536373839616263646566@[::1]:4000"
    );
    assert_eq!(text.parse(), Ok(invite));
    assert_eq!(
        " 127.0.0.1:4 ".parse::<Invite>(),
        Err(InviteError::NotAnInvite)
    );
    assert_eq!(
        "floodchat:00@127.0.0.1:4".parse::<Invite>(),
        Err(InviteError::BadKey)
    );
    assert_eq!(
        "floodchat:3031323334353637383961626364656g@127.0.0.1:4".parse::<Invite>(),
        Err(InviteError::BadKey)
    );
    assert_eq!(
        "floodchat:30313233343536373839616263646566@nowhere".parse::<Invite>(),
        Err(InviteError::BadAddress)
    );
    assert!(
        !format!("{invite:?}").contains("3031"),
        "Debug hides the key"
    );
}
