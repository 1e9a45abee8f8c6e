//! The record layer of protocol 3: each connection's clear prologue, its Noise handshake, and
//! the encrypted records that carry the frame stream (see `PROTOCOL.md`).
//!
//! A [`Link`] is one side of one connection, with no IO: it is given the bytes read and says
//! what to write. [`FloodState`](crate::FloodState) keeps one per connection; tests and tools
//! that speak floodchat without a `FloodState` use it too. Its randomness is a seed passed in,
//! so the simulator and the fuzzers run it deterministically.

use std::fmt;
use std::str::FromStr;

use snow::params::{DHChoice, NoiseParams};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{HandshakeState, TransportState};

use crate::wire::{ClientId, DecodeError, Decoded, FrameDecoder, GREETING};

/// The Noise pattern: mutual static keys, the room key mixed in before the first message.
pub const PATTERN: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";
/// The clear prologue each side sends first: the greeting, then the kind of room.
pub const PROLOGUE_LEN: usize = GREETING.len() + 1;
/// The longest Noise message, handshake or record, after its 2-byte length.
pub const MAX_RECORD: usize = 65_535;
/// The authentication tag each record carries.
pub const TAG_LEN: usize = 16;
/// The most frame-stream bytes one record carries.
pub const MAX_PLAIN: usize = MAX_RECORD - TAG_LEN;
/// The longest handshake message a peer may send (the longest valid one is 96 bytes).
pub const MAX_HANDSHAKE: usize = 256;

/// The prologue's room byte of an open room.
const OPEN: u8 = 0;
/// The prologue's room byte of a private room.
const PRIVATE: u8 = 1;

/// A client's long-term identity: its Noise static key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    secret: [u8; 32],
    public: [u8; 32],
}

impl Identity {
    /// The identity of this secret key (32 random bytes).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let mut dh = Resolver([0; 32])
            .resolve_dh(&DHChoice::Curve25519)
            .expect("the default resolver has X25519");
        dh.set(&secret);
        let mut public = [0; 32];
        public.copy_from_slice(dh.pubkey());
        Self { secret, public }
    }

    /// A deterministic identity for simulations and tests; never for a real client.
    pub fn from_seed(seed: u64) -> Self {
        Self::from_secret(derive(
            "floodchat 3 identity from a seed",
            &seed.to_le_bytes(),
        ))
    }

    /// The public key peers see in the handshake.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The secret key, to keep it (never sent).
    pub fn secret_key(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The client id this key proves.
    pub fn client_id(&self) -> ClientId {
        client_id_of(&self.public)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.client_id())
    }
}

impl Default for Identity {
    fn default() -> Self {
        Self::from_seed(0)
    }
}

/// The client id of a Noise static public key: the first 8 bytes of its BLAKE3 hash.
pub fn client_id_of(public_key: &[u8; 32]) -> ClientId {
    let hash = blake3::hash(public_key);
    ClientId(u64::from_be_bytes(hash.as_bytes()[..8].try_into().unwrap()))
}

/// Which room a client is in: open to anyone with an address, or private to holders of a key.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RoomKey {
    /// Anyone may join; links are still encrypted.
    #[default]
    Open,
    /// Only clients with this key may join; the Noise pre-shared key derived from it.
    Private([u8; 32]),
}

impl RoomKey {
    /// The private room of this key (an invite's random key, or a stretched passphrase).
    pub fn private(key: &[u8]) -> Self {
        Self::Private(derive("floodchat 3 room key", key))
    }

    /// Whether the room needs a key.
    pub fn is_private(&self) -> bool {
        matches!(self, Self::Private(_))
    }

    fn psk(&self) -> [u8; 32] {
        match self {
            Self::Open => derive("floodchat 3 open room", b""),
            Self::Private(psk) => *psk,
        }
    }

    fn byte(&self) -> u8 {
        if self.is_private() { PRIVATE } else { OPEN }
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_private() { "Private" } else { "Open" })
    }
}

fn derive(context: &str, material: &[u8]) -> [u8; 32] {
    blake3::derive_key(context, material)
}

/// The random key of a private room, 128 bits, as an invite carries it.
pub const INVITE_KEY_LEN: usize = 16;

/// An invitation to a private room: where to join and the room's key, in one token.
///
/// Written `floodchat:<32 hex digits>@<IP:PORT>`, e.g.
/// `floodchat:00112233445566778899aabbccddeeff@192.0.2.7:4000`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Invite {
    /// A member's address.
    pub addr: std::net::SocketAddr,
    /// The room's key.
    pub key: [u8; INVITE_KEY_LEN],
}

impl Invite {
    /// The room this invite opens.
    pub fn room(&self) -> RoomKey {
        RoomKey::private(&self.key)
    }
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("floodchat:")?;
        for b in self.key {
            write!(f, "{b:02x}")?;
        }
        write!(f, "@{}", self.addr)
    }
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Invite({}, key hidden)", self.addr)
    }
}

/// Why a text is not an [`Invite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteError {
    /// It does not begin with `floodchat:`.
    NotAnInvite,
    /// The key is not 32 hexadecimal digits.
    BadKey,
    /// What follows `@` is not an `IP:PORT`.
    BadAddress,
}

impl fmt::Display for InviteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAnInvite => "an invite begins with \"floodchat:\"",
            Self::BadKey => "the invite's key is not 32 hexadecimal digits",
            Self::BadAddress => "the invite's address is not IP:PORT",
        })
    }
}

impl std::error::Error for InviteError {}

impl FromStr for Invite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Self, InviteError> {
        let rest = s
            .trim()
            .strip_prefix("floodchat:")
            .ok_or(InviteError::NotAnInvite)?;
        let (hex, addr) = rest.split_once('@').ok_or(InviteError::BadKey)?;
        if hex.len() != 2 * INVITE_KEY_LEN || !hex.is_ascii() {
            return Err(InviteError::BadKey);
        }
        let mut key = [0; INVITE_KEY_LEN];
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| InviteError::BadKey)?;
        }
        let addr = addr.parse().map_err(|_| InviteError::BadAddress)?;
        Ok(Self { addr, key })
    }
}

/// Which side of the handshake a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We dialed: we write the first handshake message.
    Initiator,
    /// We accepted.
    Responder,
}

/// Why a connection's record layer failed; the connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The clear greeting is not floodchat version 3.
    Greeting(DecodeError),
    /// The peer's room is private and this client has no key.
    NeedsKey,
    /// This room is private and the peer has no key.
    Keyless,
    /// This client has a room key and the peer's room is open.
    PeerOpen,
    /// The peer has a room key and this room is open.
    PeerKeyed,
    /// Our room key is not the peer's: it said so.
    WrongKey,
    /// The peer's room key is not ours: its first message proved it.
    PeerWrongKey,
    /// A handshake message failed (altered, replayed or cut short).
    Handshake(&'static str),
    /// A handshake message longer than [`MAX_HANDSHAKE`].
    HandshakeTooLong(usize),
    /// A record shorter than its tag.
    RecordTooShort(usize),
    /// A record failed authentication: altered, replayed or reordered in transit.
    BadRecord,
    /// The peer's Hello named a client other than the one its key proves.
    NotItsId,
}

impl LinkError {
    /// Whether the two sides are in different rooms (a key missing, wrong, or not needed).
    pub fn is_room_mismatch(&self) -> bool {
        matches!(
            self,
            Self::NeedsKey
                | Self::Keyless
                | Self::PeerOpen
                | Self::PeerKeyed
                | Self::WrongKey
                | Self::PeerWrongKey
        )
    }
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Greeting(e) => write!(f, "protocol error: {e}"),
            Self::NeedsKey => f.write_str("this room needs a key: ask a member for an invite"),
            Self::Keyless => f.write_str("a client without the room key was turned away"),
            Self::PeerOpen => f.write_str("the peer is in an open room, not this private one"),
            Self::PeerKeyed => {
                f.write_str("a client with a room key was turned away: this room is open")
            }
            Self::WrongKey => f.write_str("wrong room key"),
            Self::PeerWrongKey => f.write_str("a client with a wrong room key was turned away"),
            Self::Handshake(what) => write!(f, "the encrypted handshake failed: {what}"),
            Self::HandshakeTooLong(len) => write!(
                f,
                "a handshake message of {len} bytes exceeds the maximum of {MAX_HANDSHAKE}"
            ),
            Self::RecordTooShort(len) => {
                write!(f, "a record of {len} bytes is shorter than its tag")
            }
            Self::BadRecord => {
                f.write_str("a record failed authentication: altered or replayed in transit")
            }
            Self::NotItsId => f.write_str("its Hello named a client other than its key proves"),
        }
    }
}

impl std::error::Error for LinkError {}

/// What [`Link::read`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Nothing new beyond frame-stream bytes.
    Bytes,
    /// The handshake finished in this read: the peer proved this identity.
    Established(ClientId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Reading the peer's clear prologue.
    Prologue,
    /// Exchanging handshake messages.
    Handshake,
    /// Records both ways.
    Transport,
    /// Failed: nothing more is read.
    Failed,
}

/// A memo of X25519 results for the model checker, which rebuilds every client from its
/// inputs at each step and so repeats the same handshakes many times: each distinct key
/// pair is still computed once, for real. Off unless [`memoize_dh`] turned it on.
#[cfg(feature = "sim")]
mod memo {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use hashbrown::HashMap;
    use snow::resolvers::CryptoResolver;
    use snow::types::{Dh, Random};

    static ON: AtomicBool = AtomicBool::new(false);
    /// Results by (private key, public key or [`BASE`]).
    type Memo = HashMap<([u8; 32], [u8; 32]), [u8; 32]>;
    /// Public keys by private key, and shared secrets by (private, public) key.
    static MEMO: Mutex<Option<Memo>> = Mutex::new(None);
    /// Stands for "the base point" in [`MEMO`]'s keys.
    const BASE: [u8; 32] = [0; 32];

    pub(super) fn on() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub(super) fn set(on: bool) {
        ON.store(on, Ordering::Relaxed);
    }

    /// The remembered result for `key`, or `compute`'s, remembered only if it succeeded.
    fn memo<E>(
        key: ([u8; 32], [u8; 32]),
        compute: impl FnOnce() -> Result<[u8; 32], E>,
    ) -> Result<[u8; 32], E> {
        if let Some(v) = MEMO.lock().unwrap().get_or_insert_default().get(&key) {
            return Ok(*v);
        }
        let v = compute()?;
        MEMO.lock().unwrap().get_or_insert_default().insert(key, v);
        Ok(v)
    }

    pub(super) struct MemoDh {
        inner: Box<dyn Dh>,
        private: [u8; 32],
        public: [u8; 32],
    }

    impl MemoDh {
        pub(super) fn new(inner: Box<dyn Dh>) -> Self {
            Self {
                inner,
                private: [0; 32],
                public: [0; 32],
            }
        }
    }

    impl Dh for MemoDh {
        fn name(&self) -> &'static str {
            self.inner.name()
        }
        fn pub_len(&self) -> usize {
            32
        }
        fn priv_len(&self) -> usize {
            32
        }
        fn set(&mut self, privkey: &[u8]) {
            self.private.copy_from_slice(&privkey[..32]);
            let inner = &mut self.inner;
            let derived = memo((self.private, BASE), || {
                inner.set(privkey);
                Ok::<_, ()>(inner.pubkey().try_into().unwrap())
            });
            self.public = derived.expect("a key derivation cannot fail");
        }
        fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
            let mut private = [0; 32];
            rng.try_fill_bytes(&mut private)?;
            self.set(&private);
            Ok(())
        }
        fn pubkey(&self) -> &[u8] {
            &self.public
        }
        fn privkey(&self) -> &[u8] {
            &self.private
        }
        fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
            let public: [u8; 32] = pubkey[..32].try_into().unwrap();
            let shared = memo((self.private, public), || {
                let mut dh = super::DefaultResolver
                    .resolve_dh(&super::DHChoice::Curve25519)
                    .expect("X25519");
                dh.set(&self.private);
                let mut shared = [0; 32];
                dh.dh(&public, &mut shared).map(|()| shared)
            })?;
            out[..32].copy_from_slice(&shared);
            Ok(())
        }
    }
}

/// Remembers every X25519 result from now on, so that repeated handshakes cost no curve
/// arithmetic: for the model checker, which replays them; never for a real client.
#[cfg(feature = "sim")]
#[doc(hidden)]
pub fn memoize_dh(on: bool) {
    memo::set(on);
}

/// One side of one connection's record layer: prologue, handshake, records.
pub struct Link {
    role: Role,
    room: RoomKey,
    stage: Stage,
    /// The peer's prologue: its greeting through a frame decoder, then its room byte.
    greeting: FrameDecoder,
    greeted: bool,
    handshake: Option<Box<HandshakeState>>,
    transport: Option<Box<TransportState>>,
    /// A message begun but not whole: its 2-byte length, then its bytes so far.
    partial: Vec<u8>,
    /// Handshake messages read so far.
    messages_read: u8,
    remote: Option<ClientId>,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("role", &self.role)
            .field("room", &self.room)
            .field("stage", &self.stage)
            .field("remote", &self.remote)
            .field("partial", &self.partial.len())
            .finish()
    }
}

/// snow's randomness: a BLAKE3 stream from a seed, so runs are reproducible from their inputs.
struct SeededRandom(blake3::OutputReader);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

/// snow's default primitives with our seeded randomness.
struct Resolver([u8; 32]);

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let reader = blake3::Hasher::new_keyed(&self.0).finalize_xof();
        Some(Box::new(SeededRandom(reader)))
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        let dh = DefaultResolver.resolve_dh(choice)?;
        #[cfg(feature = "sim")]
        if memo::on() {
            return Some(Box::new(memo::MemoDh::new(dh)));
        }
        Some(dh)
    }

    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

impl Link {
    /// A connection's record layer, and the bytes to write at once (the prologue, and the
    /// first handshake message if we dialed). `seed` must be secret and never used twice.
    pub fn new(role: Role, identity: &Identity, room: &RoomKey, seed: [u8; 32]) -> (Self, Vec<u8>) {
        let params: NoiseParams = PATTERN.parse().expect("the pattern is valid");
        let psk = room.psk();
        let mut prologue = GREETING.to_vec();
        prologue.push(room.byte());
        let handshake = snow::Builder::with_resolver(params, Box::new(Resolver(seed)))
            .local_private_key(identity.secret_key())
            .and_then(|b| b.psk(0, &psk))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| match role {
                Role::Initiator => b.build_initiator(),
                Role::Responder => b.build_responder(),
            })
            .expect("a valid handshake setup");
        let mut link = Self {
            role,
            room: room.clone(),
            stage: Stage::Prologue,
            greeting: FrameDecoder::new(),
            greeted: false,
            handshake: Some(Box::new(handshake)),
            transport: None,
            partial: Vec::new(),
            messages_read: 0,
            remote: None,
        };
        let mut out = prologue;
        if role == Role::Initiator {
            link.write_handshake(&mut out)
                .expect("the first message can be written");
        }
        (link, out)
    }

    /// Whether the peer's clear greeting arrived: it answers as floodchat of this version.
    pub fn has_greeted(&self) -> bool {
        self.greeted
    }

    /// Whether records flow: the handshake is done.
    pub fn is_established(&self) -> bool {
        self.stage == Stage::Transport
    }

    /// The identity the peer proved, once established.
    pub fn remote(&self) -> Option<ClientId> {
        self.remote
    }

    /// Whether a message (handshake or record) has begun and not ended.
    pub fn is_mid_record(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Reads bytes from the peer: appends handshake bytes to write to `out`, and the frame
    /// stream the records carried to `plain`. After an error nothing more is read.
    pub fn read(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        plain: &mut Vec<u8>,
    ) -> Result<Read, LinkError> {
        let mut read = Read::Bytes;
        let result = loop {
            if input.is_empty() {
                break Ok(read);
            }
            let step = match self.stage {
                Stage::Failed => return Ok(read),
                Stage::Prologue => self.read_prologue(&mut input),
                Stage::Handshake => match self.next_message(&mut input, MAX_HANDSHAKE) {
                    Ok(Some(message)) => self.read_handshake(&message, out),
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                },
                Stage::Transport => self.read_records(&mut input, plain).map(|()| None),
            };
            match step {
                Ok(Some(id)) => read = Read::Established(id),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
        };
        if result.is_err() {
            self.fail();
        }
        result
    }

    fn fail(&mut self) {
        self.stage = Stage::Failed;
        self.handshake = None;
        self.transport = None;
        self.partial = Vec::new();
    }

    fn read_prologue(&mut self, input: &mut &[u8]) -> Result<Option<ClientId>, LinkError> {
        if !self.greeted {
            match self.greeting.decode(input) {
                Ok(Some(Decoded::Greeting)) => self.greeted = true,
                Ok(_) => return Ok(None),
                Err(e) => return Err(LinkError::Greeting(e)),
            }
        }
        let Some((&byte, rest)) = input.split_first() else {
            return Ok(None);
        };
        *input = rest;
        let ours = self.room.byte();
        match (ours, byte) {
            (OPEN, OPEN) | (PRIVATE, PRIVATE) => {}
            (OPEN, PRIVATE) if self.role == Role::Initiator => return Err(LinkError::NeedsKey),
            (OPEN, PRIVATE) => return Err(LinkError::PeerKeyed),
            (PRIVATE, OPEN) if self.role == Role::Initiator => return Err(LinkError::PeerOpen),
            (PRIVATE, OPEN) => return Err(LinkError::Keyless),
            _ => {
                return Err(LinkError::Greeting(DecodeError::Malformed {
                    kind: 0,
                    what: "the room byte of the prologue is neither open nor private",
                }));
            }
        }
        self.stage = Stage::Handshake;
        Ok(None)
    }

    /// Takes the next whole length-prefixed message from `input`, buffering a part.
    fn next_message(
        &mut self,
        input: &mut &[u8],
        max: usize,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        while self.partial.len() < 2 {
            let Some((&b, rest)) = input.split_first() else {
                return Ok(None);
            };
            self.partial.push(b);
            *input = rest;
        }
        let len = usize::from(u16::from_be_bytes([self.partial[0], self.partial[1]]));
        if len > max {
            return Err(LinkError::HandshakeTooLong(len));
        }
        let take = (2 + len - self.partial.len()).min(input.len());
        self.partial.extend_from_slice(&input[..take]);
        *input = &input[take..];
        if self.partial.len() < 2 + len {
            return Ok(None);
        }
        let mut message = std::mem::take(&mut self.partial);
        message.drain(..2);
        Ok(Some(message))
    }

    fn read_handshake(
        &mut self,
        message: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<ClientId>, LinkError> {
        let private = self.room.is_private();
        let first = self.messages_read == 0;
        self.messages_read += 1;
        let hs = self
            .handshake
            .as_mut()
            .expect("handshake stage has a handshake");
        if message.is_empty() {
            // The responder's refusal: our first message did not match its room key.
            return Err(if self.role == Role::Initiator && private {
                LinkError::WrongKey
            } else {
                LinkError::Handshake("an empty handshake message")
            });
        }
        let mut payload = [0u8; MAX_HANDSHAKE];
        if hs.read_message(message, &mut payload).is_err() {
            if self.role == Role::Responder && first && private {
                // Tell the initiator, in the clear, that its key is not ours: an empty message.
                out.extend_from_slice(&[0, 0]);
                return Err(LinkError::PeerWrongKey);
            }
            return Err(LinkError::Handshake(
                "a message failed authentication (altered, replayed or from another room)",
            ));
        }
        if !hs.is_handshake_finished() {
            self.write_handshake(out)?;
        }
        if self
            .handshake
            .as_ref()
            .is_some_and(|hs| hs.is_handshake_finished())
        {
            self.finish()?;
        }
        Ok(self.remote)
    }

    fn write_handshake(&mut self, out: &mut Vec<u8>) -> Result<(), LinkError> {
        let hs = self
            .handshake
            .as_mut()
            .expect("handshake stage has a handshake");
        let mut message = [0u8; MAX_HANDSHAKE];
        let len = hs
            .write_message(&[], &mut message)
            .map_err(|_| LinkError::Handshake("could not write a message"))?;
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&message[..len]);
        if hs.is_handshake_finished() {
            self.finish()?;
        }
        Ok(())
    }

    /// The handshake is done: records flow, and the peer's identity is proven.
    fn finish(&mut self) -> Result<(), LinkError> {
        let hs = self.handshake.take().expect("still in the handshake");
        let remote: [u8; 32] = hs
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(LinkError::Handshake("no static key"))?;
        let transport = hs
            .into_transport_mode()
            .map_err(|_| LinkError::Handshake("could not finish"))?;
        self.transport = Some(Box::new(transport));
        self.stage = Stage::Transport;
        self.remote = Some(client_id_of(&remote));
        Ok(())
    }

    fn read_records(&mut self, input: &mut &[u8], plain: &mut Vec<u8>) -> Result<(), LinkError> {
        loop {
            // A whole record in the input is opened where it lies; a part is buffered.
            if self.partial.is_empty() && input.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([input[0], input[1]]));
                if input.len() >= 2 + len {
                    let (record, rest) = input[2..].split_at(len);
                    self.open(record, plain)?;
                    *input = rest;
                    continue;
                }
            }
            match self.next_message(input, MAX_RECORD)? {
                Some(record) => self.open(&record, plain)?,
                None => return Ok(()),
            }
        }
    }

    fn open(&mut self, record: &[u8], plain: &mut Vec<u8>) -> Result<(), LinkError> {
        if record.len() < TAG_LEN {
            return Err(LinkError::RecordTooShort(record.len()));
        }
        let transport = self.transport.as_mut().expect("transport stage");
        let at = plain.len();
        plain.resize(at + record.len() - TAG_LEN, 0);
        match transport.read_message(record, &mut plain[at..]) {
            Ok(n) => {
                plain.truncate(at + n);
                Ok(())
            }
            Err(_) => {
                plain.truncate(at);
                Err(LinkError::BadRecord)
            }
        }
    }

    /// Seals frame-stream bytes into records and appends them to `out`.
    ///
    /// # Panics
    /// Before the handshake is done.
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) {
        let transport = self
            .transport
            .as_mut()
            .expect("sealing needs an established link");
        out.reserve(plain.len() + plain.len().div_ceil(MAX_PLAIN).max(1) * (2 + TAG_LEN));
        for chunk in plain.chunks(MAX_PLAIN) {
            let at = out.len();
            out.resize(at + 2 + chunk.len() + TAG_LEN, 0);
            let len = transport
                .write_message(chunk, &mut out[at + 2..])
                .expect("a chunk fits a record");
            out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
            out.truncate(at + 2 + len);
        }
    }
}

/// Where a protocol-3 byte stream is, read without its keys: the clear prologue, then
/// messages (handshake or record), each after its 2-byte length.
///
/// For observers of the wire (the simulator, a test's proxy): whether a connection that ends
/// now ends mid-message, and where each message begins.
#[derive(Debug, Clone)]
pub struct Framing {
    /// Prologue bytes still to come.
    prologue_left: usize,
    /// Length bytes seen of the message under way (0, 1 or 2).
    head: usize,
    head_bytes: [u8; 2],
    /// Body bytes still to come of the message under way.
    body_left: usize,
    /// Bytes seen in all.
    offset: u64,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            prologue_left: PROLOGUE_LEN,
            head: 0,
            head_bytes: [0; 2],
            body_left: 0,
            offset: 0,
        }
    }
}

impl Framing {
    /// Follows `bytes`, calling `body` with the stream offset and length of each message body
    /// that begins in them.
    pub fn feed(&mut self, mut bytes: &[u8], mut body: impl FnMut(u64, usize)) {
        while !bytes.is_empty() {
            let take = if self.prologue_left > 0 {
                let take = self.prologue_left.min(bytes.len());
                self.prologue_left -= take;
                take
            } else if self.body_left > 0 {
                let take = self.body_left.min(bytes.len());
                self.body_left -= take;
                take
            } else {
                self.head_bytes[self.head] = bytes[0];
                self.head += 1;
                if self.head == 2 {
                    self.head = 0;
                    self.body_left = usize::from(u16::from_be_bytes(self.head_bytes));
                    body(self.offset + 1, self.body_left);
                }
                1
            };
            self.offset += take as u64;
            bytes = &bytes[take..];
        }
    }

    /// Whether a message has begun and not ended.
    pub fn is_mid_message(&self) -> bool {
        self.prologue_left == 0 && (self.head > 0 || self.body_left > 0)
    }
}

#[cfg(test)]
mod tests;
