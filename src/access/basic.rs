//! HTTP Basic auth against htpasswd data, as ingress-nginx's `auth-type: basic` (`auth-file` / `auth-map`).
//!
//! Hashes: bcrypt (`bcrypt` crate), `$apr1$`/`$1$`/`$5$`/`$6$` (`crypt3_rs`), `{SHA}` (`sha1`). Everything
//! else is reported and that user can never log in. Successful verifications of crypt hashes are cached in a
//! small process-wide table so a logged-in browser does not pay bcrypt on every request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::{general_purpose, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::{alphabet, Engine as _};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// htpasswd's own `-C` range; cost 31 would take a day per attempt and hand out a trivial DoS.
const BCRYPT_COST: std::ops::RangeInclusive<u32> = 4..=17;
/// glibc's minimum (below it the output is rewritten, so it could never match) up to ~2-3 s of work.
const SHA_ROUNDS: std::ops::RangeInclusive<u32> = 1_000..=10_000_000;
/// sha-crypt and md5-crypt work grows with password length; real passwords are far below this.
const MAX_PASSWORD: usize = 1024;
const CACHE_SETS: usize = 256;
const CACHE_WAYS: usize = 4;
const CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// 1-based line in the htpasswd text; 0 for `auth-map`.
    pub line: usize,
    pub user: Option<String>,
    pub reason: String,
}

#[derive(Clone, Copy)]
enum Scheme {
    Bcrypt,
    Md5,
    Apr1,
    Sha256,
    Sha512,
}

#[derive(Clone)]
enum Stored {
    /// Verified by recomputing from the full hash string; that string is also part of the cache key.
    Crypt(Scheme, String),
    Sha1([u8; 20]),
    Unsupported,
}

/// The users of one Secret. Cheap to verify against from any thread (`&self`).
#[derive(Clone, Default)]
pub struct Users {
    users: HashMap<String, Stored>,
    usable: usize,
}

impl fmt::Debug for Users {
    // Names and hashes stay out of logs; counts are enough to debug a Secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users {{ usable: {}, unusable: {} }}", self.usable, self.users.len() - self.usable)
    }
}

impl Users {
    /// htpasswd text (`auth-file`): `user:hash` per line; blank lines and `#` comments skipped; CRLF accepted;
    /// a trailing `:comment` field is ignored (as nginx does). A later duplicate user is a problem and the
    /// first entry wins, even when the first one is unusable.
    pub fn from_htpasswd(text: &str) -> (Users, Vec<LineProblem>) {
        let mut b = Builder::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((user, rest)) => b.add(i + 1, user, rest.split(':').next().unwrap_or("")),
                None => b.problem(i + 1, None, "no ':' between user name and hash"),
            }
        }
        (b.users, b.problems)
    }

    /// `auth-map`: (user, hash) pairs, i.e. the Secret's keys and values. Values are trimmed (files often end
    /// in a newline).
    pub fn from_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Users, Vec<LineProblem>) {
        let mut b = Builder::default();
        for (user, hash) in pairs {
            b.add(0, user, hash.trim());
        }
        (b.users, b.problems)
    }

    /// Users that can log in (a supported hash); unusable entries are not counted.
    pub fn len(&self) -> usize {
        self.usable
    }

    pub fn is_empty(&self) -> bool {
        self.usable == 0
    }

    /// True only for a known user whose supported hash matches. Unknown and unusable users cost one SHA-256
    /// and one cache probe, the same as a cached login, so the cheap paths do not tell names apart. A cold
    /// bcrypt user is still distinguishable by time; faking bcrypt for unknown names would give anyone a
    /// free CPU amplifier, and nginx itself answers unknown users at once.
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        self.verify_at(user, password, Instant::now())
    }

    /// Verifying this user's hash is expensive (bcrypt, sha-crypt) and not cached: the caller then runs
    /// `verify` on a blocking thread (tokio spawn_blocking) instead of a proxy worker.
    pub fn is_slow(&self, user: &str, password: &[u8]) -> bool {
        self.is_slow_at(user, password, Instant::now())
    }

    fn is_slow_at(&self, user: &str, password: &[u8], now: Instant) -> bool {
        match self.users.get(user).filter(|_| password.len() <= MAX_PASSWORD) {
            Some(Stored::Crypt(Scheme::Bcrypt | Scheme::Sha256 | Scheme::Sha512, h)) => {
                !cache().hit(&cache().key(user, password, h), now)
            }
            _ => false,
        }
    }

    fn verify_at(&self, user: &str, password: &[u8], now: Instant) -> bool {
        let (scheme, hash) = match self.users.get(user).filter(|_| password.len() <= MAX_PASSWORD) {
            Some(Stored::Crypt(scheme, hash)) => (*scheme, hash.as_str()),
            Some(Stored::Sha1(want)) => return Sha1::digest(password).as_slice().ct_eq(want).into(),
            Some(Stored::Unsupported) | None => {
                // The same work as a cached login, so a quick "no" does not tell which names exist.
                std::hint::black_box(cache().hit(&cache().key(user, password, ""), now));
                return false;
            }
        };
        let key = cache().key(user, password, hash);
        if cache().hit(&key, now) {
            return true;
        }
        #[allow(deprecated)] // crypt3_rs flags md5/sha crypt "not for new passwords"; we only verify
        let recomputed = match scheme {
            Scheme::Bcrypt => None,
            Scheme::Md5 => Some(crypt3_rs::crypt::md5::hash_with(hash, password)),
            Scheme::Apr1 => Some(crypt3_rs::crypt::apr1::hash_with(hash, password)),
            Scheme::Sha256 => Some(crypt3_rs::crypt::sha256::hash_with(hash, password)),
            Scheme::Sha512 => Some(crypt3_rs::crypt::sha512::hash_with(hash, password)),
        };
        // crypt3_rs's own verify compares with `==`; compare its recomputed string in constant time instead.
        let ok = match recomputed {
            None => bcrypt::verify(password, hash).unwrap_or(false),
            Some(r) => r.is_ok_and(|c| c.as_str().as_bytes().ct_eq(hash.as_bytes()).into()),
        };
        if ok {
            cache().insert(key, now);
        }
        ok
    }
}

#[derive(Default)]
struct Builder {
    users: Users,
    lines: HashMap<String, usize>,
    problems: Vec<LineProblem>,
}

impl Builder {
    fn problem(&mut self, line: usize, user: Option<&str>, reason: impl Into<String>) {
        self.problems.push(LineProblem { line, user: user.map(str::to_owned), reason: reason.into() });
    }

    fn add(&mut self, line: usize, user: &str, hash: &str) {
        if user.is_empty() {
            return self.problem(line, None, "empty user name");
        }
        if user.contains(':') {
            // Basic credentials split at the first ':', so this user (auth-map only) could never match.
            return self.problem(line, Some(user), "user name contains ':'");
        }
        if let Some(&first) = self.lines.get(user) {
            let at = if first > 0 { format!(" (line {first})") } else { String::new() };
            return self.problem(line, Some(user), format!("duplicate user; the first entry{at} wins"));
        }
        self.lines.insert(user.to_owned(), line);
        // Reasons never quote the hash: an unsupported "hash" may well be a plain-text password.
        let stored = parse_hash(hash).unwrap_or_else(|reason| {
            self.problem(line, Some(user), reason.to_string());
            Stored::Unsupported
        });
        self.users.usable += usize::from(!matches!(stored, Stored::Unsupported));
        self.users.users.insert(user.to_owned(), stored);
    }
}

/// Why an htpasswd line's hash cannot be used (the reason never quotes the hash itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
enum HashError {
    #[error("empty hash")]
    Empty,
    #[error("malformed {0} hash")]
    Malformed(&'static str),
    #[error("bcrypt cost {0} outside {BCRYPT_COST:?}")]
    BcryptCost(u32),
    #[error("{0} rounds {1} outside {SHA_ROUNDS:?}")]
    Rounds(&'static str, u32),
    #[error("unsupported hash scheme")]
    UnknownScheme,
    #[error("unsupported hash (plain text or DES crypt)")]
    PlainOrDes,
}

fn parse_hash(h: &str) -> Result<Stored, HashError> {
    let bad = |scheme: &'static str| Err(HashError::Malformed(scheme));
    if h.is_empty() {
        return Err(HashError::Empty);
    }
    if let Some(rest) = ["$2y$", "$2b$", "$2a$"].iter().find_map(|p| h.strip_prefix(p)) {
        let (digits, body) = rest.split_at_checked(2).unwrap_or(("", ""));
        let cost = digits.parse::<u32>().ok().filter(|_| digits.bytes().all(|b| b.is_ascii_digit()));
        return match cost.filter(|_| body.strip_prefix('$').is_some_and(|b| b.len() == 53 && crypt64(b))) {
            Some(c) if BCRYPT_COST.contains(&c) => Ok(Stored::Crypt(Scheme::Bcrypt, h.into())),
            Some(c) => Err(HashError::BcryptCost(c)),
            None => bad("bcrypt"),
        };
    }
    for (prefix, kind, max_salt, sum) in [
        ("$apr1$", Scheme::Apr1, 8, 22),
        ("$1$", Scheme::Md5, 8, 22),
        ("$5$", Scheme::Sha256, 16, 43),
        ("$6$", Scheme::Sha512, 16, 86),
    ] {
        let Some(mut rest) = h.strip_prefix(prefix) else { continue };
        if let Some(r) = rest.strip_prefix("rounds=").filter(|_| sum > 22) {
            let (digits, after) = r.split_once('$').unwrap_or((r, ""));
            let rounds = digits.parse::<u32>().ok().filter(|_| !digits.starts_with(['0', '+']));
            match rounds {
                Some(n) if SHA_ROUNDS.contains(&n) => rest = after,
                Some(n) => return Err(HashError::Rounds(prefix, n)),
                None => return bad(prefix),
            }
        }
        return match rest.split_once('$') {
            Some((salt, s)) if salt.len() <= max_salt && s.len() == sum && crypt64(salt) && crypt64(s) => {
                Ok(Stored::Crypt(kind, h.into()))
            }
            _ => bad(prefix),
        };
    }
    if let Some(b64) = h.strip_prefix("{SHA}") {
        return match general_purpose::STANDARD.decode(b64).ok().and_then(|d| <[u8; 20]>::try_from(d).ok()) {
            Some(d) => Ok(Stored::Sha1(d)),
            None => bad("{SHA}"),
        };
    }
    Err(if h.starts_with('$') { HashError::UnknownScheme } else { HashError::PlainOrDes })
}

/// The `./0-9A-Za-z` alphabet of crypt(3); checked up front so odd bytes never reach crypt3_rs's decoder.
fn crypt64(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// `Authorization: Basic base64(user:password)` → (user, password). Scheme case-insensitive, surrounding
/// whitespace tolerated; anything malformed (no colon, bad base64, non-UTF-8 user) → None.
pub fn credentials(authorization: &[u8]) -> Option<(String, Vec<u8>)> {
    // Some clients omit the `=` padding; accept both.
    const B64: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let v = authorization.trim_ascii();
    let split = v.iter().position(|&b| b == b' ' || b == b'\t')?;
    if !v[..split].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let mut decoded = B64.decode(v[split..].trim_ascii()).ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let password = decoded.split_off(colon + 1);
    decoded.pop();
    Some((String::from_utf8(decoded).ok()?, password))
}

/// The `WWW-Authenticate` value: `Basic realm="<realm>"` with `"` and `\` escaped and control characters dropped.
pub fn challenge(realm: &str) -> http::HeaderValue {
    let mut v = String::with_capacity(realm.len() + 16);
    v.push_str("Basic realm=\"");
    for c in realm.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            v.push('\\');
        }
        v.push(c);
    }
    v.push('"');
    // Cannot fail once controls are gone (non-ASCII is valid obs-text), but never panic on a request path.
    http::HeaderValue::from_str(&v).unwrap_or_else(|_| http::HeaderValue::from_static("Basic"))
}

/// Successful logins: 256 sets x 4 ways, fixed for the process and shared by every `Users` (reloads keep
/// logins warm). Entries are keyed digests only; a changed hash in the Secret changes the key.
struct Cache {
    salt: [u8; 32],
    sets: Box<[Mutex<[Slot; CACHE_WAYS]>]>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: [u8; 32],
    expires: Option<Instant>,
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::new)
}

impl Cache {
    fn new() -> Cache {
        let sets = (0..CACHE_SETS).map(|_| Mutex::new([Slot::default(); CACHE_WAYS])).collect();
        Cache { salt: rand::random(), sets }
    }

    fn key(&self, user: &str, password: &[u8], hash: &str) -> [u8; 32] {
        // Length prefixes keep (user, hash, password) unambiguous.
        let (u, h) = ((user.len() as u64).to_le_bytes(), (hash.len() as u64).to_le_bytes());
        let mut d = Sha256::new();
        for part in [&self.salt[..], &u, user.as_bytes(), &h, hash.as_bytes(), password] {
            d.update(part);
        }
        d.finalize().into()
    }

    fn set(&self, key: &[u8; 32]) -> std::sync::MutexGuard<'_, [Slot; CACHE_WAYS]> {
        // Slots are plain data: a panic elsewhere cannot leave one half-written in a harmful way.
        self.sets[usize::from(key[0]) % CACHE_SETS].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hit(&self, key: &[u8; 32], now: Instant) -> bool {
        // A plain compare is fine: keys are salted digests, so timing reveals nothing an attacker can steer.
        self.set(key).iter().any(|s| s.expires.is_some_and(|e| e > now) && s.key == *key)
    }

    fn insert(&self, key: [u8; 32], now: Instant) {
        let mut set = self.set(&key);
        // Same key first, else the empty / expired / soonest-to-expire way (None sorts lowest).
        let i = set
            .iter()
            .position(|s| s.key == key)
            .unwrap_or_else(|| (0..CACHE_WAYS).min_by_key(|&i| set[i].expires).unwrap_or(0));
        set[i] = Slot { key, expires: now.checked_add(CACHE_TTL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with Debian's apache2-utils (`htpasswd -nbB -C 4` alice/gina, `-nbm` bob/henry, `-nbs` carol,
    // `-nb2` erin, `-nb5 -r 6000` frank) and `openssl passwd -5/-6/-1 -salt abc pw` (s5, s6, m1).
    const ALICE: &str = "alice:$2y$04$Usq7RkLOTFA91OPndta5ouiO37hry.Bg6Uo.ldHyMVWqAjhoKnf4y";
    const ALICE2: &str = "alice:$2y$04$EpwxdyJtWc9qWH4Q9sIMceWC9RMmI2xnT19PFTK284BJEBJHguYge"; // same, new salt
    const BOB: &str = "bob:$apr1$DWUrQbt0$klcdjcddagN9SmxFyw0a./";
    const CAROL: &str = "carol:{SHA}GpHWL3ymc5liWkNopqtdSjuqYHM=";
    const S6: &str = "s6:$6$abc$MtSdWSZbhct2oe.SOqOUM2M/GA/uj5.vyVtJgRHgKi9uqXuWuJqOYE7H/YlsYGVg/YYzDV0xt3fEIwYt580.5.";
    const VECTORS: [(&str, &str); 10] = [
        (ALICE, "s3cret"),
        ("gina:$2y$04$ilDNvn23RvaCs8f3eeTMU.5S/Vpt0dXHBbBlXaaqee2n8QGNo9Hre", "pa:ss"),
        (BOB, "hunter2"),
        ("henry:$apr1$7T9kAIC9$3sO7SZKGNBnRV0mipXQNW0", ""),
        (CAROL, "pw"),
        ("erin:$5$rhbv18oUDRWYmlF3$vjdTGPmWO7C2mcDofjx6koWgOjfph96zB71GJQOm.U0", "pw256"),
        ("frank:$6$rounds=6000$1HlZZNSuxSsN1fej$DM6n3JjKVppFUZ23dJFPz3Q7SYqlJEvaRmB.6uD7s50UE2T5AFqr0FqCd/Uz7lI6efVtN4.7X0t5.0vFWpIpy0", "pw512"),
        ("s5:$5$abc$/LKlXd6vuvdFX3oWbf2vGk3DgflzzsvOtMZsiOxqqY5", "pw"),
        (S6, "pw"),
        ("m1:$1$abc$Kb85XxsXB.VXinPhbS4431", "pw"),
    ];

    fn users(lines: &[&str]) -> Users {
        let (u, problems) = Users::from_htpasswd(&lines.join("\n"));
        assert!(problems.is_empty(), "{problems:?}");
        u
    }

    fn lp(line: usize, user: Option<&str>, reason: &str) -> LineProblem {
        LineProblem { line, user: user.map(Into::into), reason: reason.into() }
    }

    #[test]
    fn real_vectors_verify_and_reject() {
        let u = users(&VECTORS.map(|c| c.0));
        assert_eq!(u.len(), VECTORS.len());
        for (line, pw) in VECTORS {
            let user = line.split(':').next().unwrap();
            assert!(u.verify(user, pw.as_bytes()), "{user}");
            for wrong in ["wrong", if pw.is_empty() { " " } else { "" }, &pw[..pw.len().saturating_sub(1)]] {
                assert!(wrong == pw || !u.verify(user, wrong.as_bytes()), "{user} {wrong}");
            }
            assert!(!u.verify(&format!("{user}x"), pw.as_bytes()) && !u.verify(&user.to_uppercase(), pw.as_bytes()));
        }
        assert!(!u.verify("bob", &[b'a'; MAX_PASSWORD + 1]));
    }

    #[test]
    fn unsupported_hashes_are_reported_and_never_verify() {
        let b = "Usq7RkLOTFA91OPndta5ouiO37hry.Bg6Uo.ldHyMVWqAjhoKnf4y";
        let text = format!(
            "dave:plain\ndave2:8mfkl7h/TfpEU\neve:$9$x$y\nfay:\nguy:$2x$04${b}\nhal:$2y$31${b}\n\
             ivy:$5$rounds=999$abc$x\njo:{{SHA}}abc\nkim:$apr1$x\u{1}$klcdjcddagN9SmxFyw0a./" // dave2: -nbd
        );
        let (u, problems) = Users::from_htpasswd(&text);
        assert!(u.is_empty());
        assert_eq!(problems.iter().map(|p| p.line).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
        assert_eq!(problems[0], lp(1, Some("dave"), "unsupported hash (plain text or DES crypt)"));
        assert_eq!(problems[5].reason, "bcrypt cost 31 outside 4..=17");
        // Reasons never echo the hash field (it may be a plain-text password).
        let hashes: Vec<&str> = text.lines().filter_map(|l| l.split_once(':')).map(|l| l.1).collect();
        assert!(problems.iter().all(|p| hashes.iter().all(|h| h.len() < 6 || !p.reason.contains(h))));
        for (user, pw) in [("dave", "plain"), ("dave2", "secret"), ("fay", ""), ("guy", "s3cret"), ("hal", "s3cret")] {
            assert!(!u.verify(user, pw.as_bytes()) && !u.is_slow(user, pw.as_bytes()), "{user}");
        }
        assert_eq!(format!("{:?}", users(&[ALICE, CAROL])), "Users { usable: 2, unusable: 0 }");
    }

    #[test]
    fn file_format_and_map() {
        let dup = ALICE.replace("alice", "bob");
        let text = format!("# comment\r\n\r\n{BOB}\r\n  {CAROL}:comment  \r\nnocolon\r\n:{{SHA}}x\r\n{dup}\r\n");
        let (u, p) = Users::from_htpasswd(&text);
        assert_eq!(u.len(), 2);
        assert!(u.verify("bob", b"hunter2") && u.verify("carol", b"pw") && !u.verify("bob", b"s3cret"));
        assert_eq!(p[0], lp(5, None, "no ':' between user name and hash"));
        assert_eq!(p[1], lp(6, None, "empty user name"));
        assert_eq!(p[2], lp(7, Some("bob"), "duplicate user; the first entry (line 3) wins"));

        let bob = BOB.split_once(':').unwrap().1;
        let (u, p) = Users::from_map([("bob", &*format!("{bob}\n")), ("x:y", bob), ("z", "plain"), ("bob", CAROL)]);
        assert_eq!((u.len(), u.verify("bob", b"hunter2")), (1, true));
        assert_eq!(p[0], lp(0, Some("x:y"), "user name contains ':'"));
        assert_eq!(p[1], lp(0, Some("z"), "unsupported hash (plain text or DES crypt)"));
        assert_eq!(p[2], lp(0, Some("bob"), "duplicate user; the first entry wins"));
    }

    #[test]
    fn credentials_and_challenge() {
        let ok = |user: &str, pw: &[u8]| Some((user.to_owned(), pw.to_vec()));
        assert_eq!(credentials(b"Basic YWxpY2U6czNjcmV0"), ok("alice", b"s3cret"));
        assert_eq!(credentials(b"  basic \t YWxpY2U6czNjcmV0 "), ok("alice", b"s3cret"));
        assert_eq!(credentials(b"BASIC YWxpY2U6cGE6c3M="), ok("alice", b"pa:ss"));
        assert_eq!(credentials(b"Basic YWxpY2U6cGE6c3M"), ok("alice", b"pa:ss")); // unpadded
        assert_eq!(credentials(b"Basic YWI6"), ok("ab", b""));
        // "bob" (no colon), not base64, user 0xff, other scheme, no separator, no token.
        for bad in ["Basic Ym9i", "Basic !!!", "Basic /zp4", "Bearer YWxpY2U6czNjcmV0", "BasicYWI6", "Basic", ""] {
            assert_eq!(credentials(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(challenge("Restricted"), "Basic realm=\"Restricted\"");
        assert_eq!(challenge("a\"b\\c\r\nd\te\u{7f}"), "Basic realm=\"a\\\"b\\\\cde\"");
        assert_eq!(challenge("Zoë").as_bytes(), "Basic realm=\"Zoë\"".as_bytes());
    }

    #[test]
    fn cache_remembers_only_successes() {
        let (t0, t1) = (Instant::now(), Instant::now() + Duration::from_secs(60));
        let u = users(&[ALICE, S6, BOB, CAROL]);
        assert!(!u.is_slow_at("bob", b"hunter2", t0) && !u.is_slow_at("carol", b"pw", t0) && !u.is_slow("x", b""));
        assert!(u.is_slow_at("alice", b"s3cret", t0) && u.is_slow_at("s6", b"pw", t0));
        assert!(!u.verify_at("alice", b"nope", t0) && u.is_slow_at("alice", b"nope", t0), "failure not cached");
        assert!(u.verify_at("alice", b"s3cret", t0) && u.verify_at("s6", b"pw", t0));
        assert!(!u.is_slow_at("alice", b"s3cret", t1) && !u.is_slow_at("s6", b"pw", t1));
        assert!(u.verify_at("alice", b"s3cret", t1) && !u.verify_at("alice", b"nope", t1));
        assert!(u.is_slow_at("alice", b"nope", t1) && u.is_slow_at("alice", b"s3cre", t1));
        // The Secret changed (same password, new hash): the old entry does not apply.
        let changed = users(&[ALICE2]);
        assert!(changed.is_slow_at("alice", b"s3cret", t1));
        assert!(changed.verify_at("alice", b"s3cret", t1) && !changed.is_slow_at("alice", b"s3cret", t1));
        assert!(u.is_slow_at("s6", b"pw", t0 + CACHE_TTL + Duration::from_secs(1)), "entries expire");

        // A full set evicts its soonest-to-expire way and never grows.
        let c = Cache::new();
        let keys: Vec<[u8; 32]> = (0..=CACHE_WAYS as u8).map(|i| [7, i].repeat(16).try_into().unwrap()).collect();
        (0..keys.len()).for_each(|i| c.insert(keys[i], t0 + Duration::from_secs(i as u64)));
        assert!(!c.hit(&keys[0], t0) && keys[1..].iter().all(|k| c.hit(k, t0)));
    }
}
