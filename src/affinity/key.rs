//! Where the cookie key comes from: `--cookie-key-file`, else a key generated once and kept
//! in the state directory so a restart logs nobody out.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::RngCore;

use crate::affinity::token::CookieKey;

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

/// Reads a key file: hex (64+ digits), base64, or raw bytes; at least 16 bytes of secret.
pub fn read_key_file(path: &Path) -> anyhow::Result<CookieKey> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read cookie key file {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let trimmed = text.trim();
    let secret = decode_hex(trimmed).unwrap_or_else(|| trimmed.as_bytes().to_vec());
    match CookieKey::new(&secret) {
        Some(key) => Ok(key),
        None => bail!("cookie key file {} holds fewer than 16 bytes of secret", path.display()),
    }
}

/// The key to use: the given file, or the state directory's key (created on first use).
/// Returns the key and, when one was generated, where it was written.
pub fn load_or_generate(key_file: Option<&Path>, state_dir: &Path) -> anyhow::Result<(CookieKey, Option<PathBuf>)> {
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
    Ok((key, Some(path)))
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
    use crate::affinity::token::{Token, TokenMode};

    #[test]
    fn a_generated_key_is_kept_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (k1, created) = load_or_generate(None, dir.path()).unwrap();
        assert!(created.is_some());
        let (k2, created_again) = load_or_generate(None, dir.path()).unwrap();
        assert!(created_again.is_none());
        let t = Token { mode: TokenMode::Balanced, issued: 1, session: 2, endpoint: 0 };
        assert_eq!(k2.decode(k1.encode(&t, 5).as_bytes(), 5), Some(t));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn short_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "tiny").unwrap();
        assert!(read_key_file(&f).is_err());
    }
}
