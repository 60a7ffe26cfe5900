//! Where the cookie key comes from: `--cookie-key-file`, else a key generated once and kept
//! in the state directory so a restart logs nobody out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::RngCore;

use crate::affinity::token::{CookieKey, CookieKeys};

const KEY_FILE_NAME: &str = "cookie.key";

/// The default state directory: `$XDG_STATE_HOME/tether`, `~/.local/state/tether`, else a
/// directory under the system temp dir.
pub fn default_state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tether");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/state/tether");
    }
    std::env::temp_dir().join("tether-state")
}

/// Reads the cookie keys from `path`:
/// - a file whose first non-empty line is the current key and whose optional second line is
///   the previous one (during a rotation), each hex (32+ digits) or raw text of 16+ bytes;
/// - or a directory holding files `current` and optionally `previous` (a Kubernetes Secret
///   mounted as a volume).
pub fn read_key_file(path: &Path) -> anyhow::Result<CookieKeys> {
    if path.is_dir() {
        let current = read_one(&path.join("current"))?;
        let previous_path = path.join("previous");
        let previous = if previous_path.exists() { Some(read_one(&previous_path)?) } else { None };
        return Ok(CookieKeys { current, previous });
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cookie key file {}", path.display()))?;
    let Ok(text) = std::str::from_utf8(&bytes) else {
        // Binary (e.g. `head -c 32 /dev/urandom`): the whole file is one raw key.
        let current = CookieKey::new(&bytes)
            .with_context(|| format!("cookie key file {} holds fewer than 16 bytes", path.display()))?;
        return Ok(CookieKeys::single(current));
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let current = lines.next().with_context(|| format!("cookie key file {} is empty", path.display()))?;
    let current = parse_key(current).with_context(|| format!("cookie key file {}: current key", path.display()))?;
    let previous = match lines.next() {
        Some(line) => {
            Some(parse_key(line).with_context(|| format!("cookie key file {}: previous key", path.display()))?)
        }
        None => None,
    };
    if lines.next().is_some() {
        bail!("cookie key file {} holds more than two keys (current, previous)", path.display());
    }
    Ok(CookieKeys { current, previous })
}

fn read_one(path: &Path) -> anyhow::Result<CookieKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cookie key {}", path.display()))?;
    key_from_bytes(&bytes).with_context(|| format!("cookie key {}", path.display()))
}

/// One key as a file or a Secret value holds it: hex or text (16+ bytes), or raw binary.
pub fn key_from_bytes(bytes: &[u8]) -> anyhow::Result<CookieKey> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_key(text.trim()),
        Err(_) => CookieKey::new(bytes).context("fewer than 16 bytes of secret"),
    }
}

fn parse_key(text: &str) -> anyhow::Result<CookieKey> {
    let secret = decode_hex(text).unwrap_or_else(|| text.as_bytes().to_vec());
    match CookieKey::new(&secret) {
        Some(key) => Ok(key),
        None => bail!("fewer than 16 bytes of secret"),
    }
}

/// The keys to use: the given file, or the state directory's key (created on first use).
/// Returns the keys and, when one was generated, where it was written.
pub fn load_or_generate(key_file: Option<&Path>, state_dir: &Path) -> anyhow::Result<(CookieKeys, Option<PathBuf>)> {
    if let Some(file) = key_file {
        return Ok((read_key_file(file)?, None));
    }
    let path = state_dir.join(KEY_FILE_NAME);
    if path.exists() {
        return Ok((read_key_file(&path)?, None));
    }
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create state directory {}", state_dir.display()))?;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, format!("{hex}\n").as_bytes())?;
    let key = CookieKey::new(&secret).context("generated key rejected")?;
    Ok((CookieKeys::single(key), Some(path)))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(data)?;
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() < 32 || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::affinity::token::{AffinityMode, Token};

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, created) = load_or_generate(None, dir.path()).unwrap();
        assert!(created.is_some());
        let (k2, created_again) = load_or_generate(None, dir.path()).unwrap();
        assert!(created_again.is_none());
        let t = Token::new(AffinityMode::Balanced, 1, 2, 0);
        assert_eq!(k2.decode(k1.encode(&t, 5).as_bytes(), 5).map(|(t, _)| t), Some(t));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_key_file_may_hold_a_previous_key_and_a_directory_works_too() {
        use crate::affinity::token::KeyUsed;
        let dir = tempfile::tempdir().unwrap();
        let old_hex = "11".repeat(32);
        let new_hex = "22".repeat(32);
        let f = dir.path().join("keys");
        std::fs::write(&f, format!("{new_hex}\n{old_hex}\n")).unwrap();
        let both = read_key_file(&f).unwrap();
        let old = CookieKey::new(&[0x11; 32]).unwrap();
        let t = Token::new(AffinityMode::Balanced, 1, 2, 0);
        assert_eq!(both.decode(old.encode(&t, 3).as_bytes(), 3), Some((t, KeyUsed::Previous)));
        assert_eq!(both.decode(both.encode(&t, 3).as_bytes(), 3), Some((t, KeyUsed::Current)));
        let secret = dir.path().join("secret");
        std::fs::create_dir(&secret).unwrap();
        std::fs::write(secret.join("current"), &new_hex).unwrap();
        let only = read_key_file(&secret).unwrap();
        assert!(only.previous.is_none());
        assert_eq!(only.decode(old.encode(&t, 3).as_bytes(), 3), None);
        std::fs::write(dir.path().join("three"), format!("{new_hex}\n{old_hex}\n{old_hex}\n")).unwrap();
        assert!(read_key_file(&dir.path().join("three")).is_err());
    }

    #[test]
    fn binary_key_files_are_one_raw_key_and_distinct_keys_differ() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0x80..0xa0).collect();
        let b: Vec<u8> = (0xa0..0xc0).collect();
        std::fs::write(dir.path().join("a"), &a).unwrap();
        std::fs::write(dir.path().join("b"), &b).unwrap();
        let ka = read_key_file(&dir.path().join("a")).unwrap();
        let kb = read_key_file(&dir.path().join("b")).unwrap();
        let t = Token::new(AffinityMode::Balanced, 1, 2, 0);
        assert!(kb.decode(ka.encode(&t, 3).as_bytes(), 3).is_none(), "non-UTF-8 keys are not collapsed");
    }

    #[test]
    fn short_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "tiny").unwrap();
        assert!(read_key_file(&f).is_err());
    }
}
