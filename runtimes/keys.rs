//! The client's secrets: its identity, the handshakes' entropy, and the room's key (an
//! invite's, a new private room's, or a passphrase stretched with Argon2id).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use floodchat::secure::{INVITE_KEY_LEN, Identity, Invite, RoomKey};

use crate::cli::{Cli, Contact};

/// The environment variable a passphrase may be given in (never on the command line, where
/// `ps` shows it).
pub const PASSPHRASE_VAR: &str = "FLOODCHAT_PASSPHRASE";
/// Argon2id's salt: fixed, so that every member derives the same key from the passphrase.
const SALT: &[u8] = b"floodchat 3 room passphrase";
/// Argon2id's cost: 64 MiB and three passes, one lane (about a fifth of a second).
const MEMORY_KIB: u32 = 64 * 1024;
const PASSES: u32 = 3;

/// 32 random bytes from the operating system.
pub fn os_random_32() -> Result<[u8; 32], String> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("cannot get random bits from the system: {e}"))?;
    Ok(bytes)
}

/// A new random identity for this run.
pub fn new_identity() -> Result<Identity, String> {
    Ok(Identity::from_secret(os_random_32()?))
}

/// The room this client is in, and the key its invites carry (a room keyed by a passphrase
/// has none: its members share the passphrase).
#[derive(Debug, Clone)]
pub struct Room {
    /// The key the handshakes use.
    pub key: RoomKey,
    /// The key an invite carries.
    pub invite_key: Option<[u8; INVITE_KEY_LEN]>,
}

impl Room {
    /// The room the command line and the contact (if any) name.
    pub fn choose(cli: &Cli, contact: Option<&Contact>) -> Result<Self, String> {
        let passphrase = passphrase(cli.passphrase_file.as_deref())?;
        match (contact, passphrase) {
            (Some(Contact::Invite(_)), Some(_)) => Err(
                "an invite carries its room's key: give either the invite or a passphrase".into(),
            ),
            (Some(Contact::Invite(invite)), None) => Ok(Self::of_invite(invite)),
            (_, Some(passphrase)) => Ok(Self {
                key: stretch(&passphrase)?,
                invite_key: None,
            }),
            (_, None) if cli.private => {
                let mut key = [0; INVITE_KEY_LEN];
                key.copy_from_slice(&os_random_32()?[..INVITE_KEY_LEN]);
                Ok(Self {
                    key: RoomKey::private(&key),
                    invite_key: Some(key),
                })
            }
            (_, None) => Ok(Self {
                key: RoomKey::Open,
                invite_key: None,
            }),
        }
    }

    fn of_invite(invite: &Invite) -> Self {
        Self {
            key: invite.room(),
            invite_key: Some(invite.key),
        }
    }
}

/// The passphrase from the file given, or else from [`PASSPHRASE_VAR`]; without its final
/// line break.
fn passphrase(file: Option<&Path>) -> Result<Option<String>, String> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the passphrase file {}: {e}", path.display()))?,
        None => match std::env::var(PASSPHRASE_VAR) {
            Ok(text) => text,
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(e) => return Err(format!("{PASSPHRASE_VAR}: {e}")),
        },
    };
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err("the passphrase is empty".into());
    }
    Ok(Some(text.to_string()))
}

/// The private room of a passphrase: Argon2id with a fixed salt.
fn stretch(passphrase: &str) -> Result<RoomKey, String> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, Some(32))
        .map_err(|e| format!("argon2 parameters: {e}"))?;
    let mut key = [0; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), SALT, &mut key)
        .map_err(|e| format!("cannot stretch the passphrase: {e}"))?;
    Ok(RoomKey::private(&key))
}
