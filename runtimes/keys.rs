//! The client's secrets: its identity, the handshakes' entropy, and the room's key (an
//! invite's, a new private room's, or a passphrase stretched with Argon2id).

use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use floodchat::secure::{INVITE_KEY_LEN, Identity, Invite, RoomKey};

use crate::cli::{Cli, Contact};
use crate::datadir::DataDir;

/// The data directory's file of the client's identity key.
const IDENTITY_FILE: &str = "identity.key";
/// The data directory's file of the room's key (or of the room being open).
const ROOM_FILE: &str = "room.key";

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

/// The identity kept in `dir`, or a new random one (kept there, if there is a directory).
pub fn identity(dir: Option<&DataDir>) -> Result<Identity, String> {
    let Some(dir) = dir else {
        return Ok(Identity::from_secret(os_random_32()?));
    };
    let path = dir.path().join(IDENTITY_FILE);
    match dir.read_secret(IDENTITY_FILE) {
        Ok(Some(bytes)) => {
            let secret: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("{} is not a floodchat identity", path.display()))?;
            Ok(Identity::from_secret(secret))
        }
        Ok(None) => {
            let identity = Identity::from_secret(os_random_32()?);
            // A directory that cannot be written is said once by the history; the identity
            // then lasts this run.
            let _ = dir.write_secret(IDENTITY_FILE, identity.secret_key());
            Ok(identity)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
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
    /// The room the command line and the contact name, or the one kept in `dir` when they
    /// name none; a directory keeps one room, so naming another is an error.
    pub fn choose_kept(
        cli: &Cli,
        contact: Option<&Contact>,
        dir: Option<&DataDir>,
    ) -> Result<Self, String> {
        let named = matches!(contact, Some(Contact::Invite(_)))
            || cli.private
            || cli.passphrase_file.is_some()
            || std::env::var_os(PASSPHRASE_VAR).is_some();
        let Some(dir) = dir else {
            return Self::choose(cli, contact);
        };
        let kept = dir
            .read_secret(ROOM_FILE)
            .map_err(|e| format!("cannot read {}: {e}", dir.path().join(ROOM_FILE).display()))?
            .map(|bytes| Self::from_bytes(&bytes))
            .transpose()
            .map_err(|e| format!("{}: {e}", dir.path().join(ROOM_FILE).display()))?;
        match kept {
            Some(kept) if !named => Ok(kept),
            Some(kept) => {
                let room = Self::choose(cli, contact)?;
                // --private makes a new key each time: with a kept room it means that room.
                if room.key == kept.key || (cli.private && contact.is_none()) {
                    Ok(kept)
                } else {
                    Err(format!(
                        "{} keeps another room; give it no key, or use another directory",
                        dir.path().display()
                    ))
                }
            }
            None => {
                let room = Self::choose(cli, contact)?;
                let _ = dir.write_secret(ROOM_FILE, &room.to_bytes());
                Ok(room)
            }
        }
    }

    /// The file form: 0 (open), 1 and an invite key, or 2 and a stretched key.
    fn to_bytes(&self) -> Vec<u8> {
        match (&self.key, self.invite_key) {
            (RoomKey::Open, _) => vec![0],
            (_, Some(key)) => [&[1][..], &key].concat(),
            (RoomKey::Private(psk), None) => [&[2][..], psk].concat(),
        }
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((0, [])) => Ok(Self {
                key: RoomKey::Open,
                invite_key: None,
            }),
            Some((1, key)) if key.len() == INVITE_KEY_LEN => {
                let key: [u8; INVITE_KEY_LEN] = key.try_into().unwrap();
                Ok(Self {
                    key: RoomKey::private(&key),
                    invite_key: Some(key),
                })
            }
            Some((2, psk)) if psk.len() == 32 => Ok(Self {
                key: RoomKey::Private(psk.try_into().unwrap()),
                invite_key: None,
            }),
            _ => Err("not a floodchat room key".into()),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_room_reads_back_as_written() {
        let rooms = [
            Room {
                key: RoomKey::Open,
                invite_key: None,
            },
            Room {
                key: RoomKey::private(&[7; INVITE_KEY_LEN]),
                invite_key: Some([7; INVITE_KEY_LEN]),
            },
            Room {
                key: RoomKey::Private([9; 32]),
                invite_key: None,
            },
        ];
        for room in rooms {
            let back = Room::from_bytes(&room.to_bytes()).unwrap();
            assert_eq!((back.key, back.invite_key), (room.key, room.invite_key));
        }
        assert!(Room::from_bytes(&[1, 2, 3]).is_err());
        assert!(Room::from_bytes(&[]).is_err());
    }
}
