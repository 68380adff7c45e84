//! `certgate keys new | import | list`: issuing legacy API keys (shown once, stored as a hash),
//! importing an existing legacy key (stored as argon2id), and listing the records. The keys
//! file is rewritten whole and renamed into place, so a running gateway reloads it complete.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use certgate::authn::apikey::{self, ApiKeys, Pepper};
use certgate::config::{ConfigFile, Cutover, RawKey, RawKeysFile, parse_toml};
use certgate::util::time::{fmt_time, unix_now};

/// A new record: who holds the key, until when, for which routes.
pub(super) struct NewKey<'a> {
    pub owner: &'a str,
    pub sunset: &'a str,
    pub routes: &'a str,
    pub cutover: Cutover,
}

/// The config's `[api_keys]` files and its route names.
struct KeysConfig {
    file: PathBuf,
    pepper: PathBuf,
    routes: Vec<String>,
    /// `[inventory].path`: where each key's last use is recorded.
    inventory: Option<PathBuf>,
}

fn keys_config(config: &Path) -> Result<KeysConfig, String> {
    let file = ConfigFile::load(config).map_err(|e| e.to_string())?;
    let Some(keys) = &file.raw.api_keys else {
        return Err(format!(
            "{}: no [api_keys] section: set file and pepper_file first",
            config.display()
        ));
    };
    Ok(KeysConfig {
        file: file.resolve(&keys.file),
        pepper: file.resolve(&keys.pepper_file),
        routes: file.raw.routes.iter().map(|r| r.name.clone()).collect(),
        inventory: file.raw.inventory.path.as_deref().map(|p| file.resolve(p)),
    })
}

fn read_keys_file(path: &Path) -> Result<(String, RawKeysFile), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let parsed = parse_toml(path, &text).map_err(|e| e.to_string())?;
            Ok((text, parsed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
            "# certgate API keys: hashes only (certgate keys new / keys import).\n".into(),
            RawKeysFile::default(),
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

fn read_pepper(path: &Path) -> Result<Pepper, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Pepper::new(&bytes).map_err(|e| format!("{}: {}", path.display(), e.problem))
}

/// Appends `record`, after checking the whole file compiles as the gateway will compile it.
fn append(c: &KeysConfig, pepper: Pepper, record: RawKey) -> Result<(), String> {
    let (text, mut parsed) = read_keys_file(&c.file)?;
    parsed.key.push(record.clone());
    ApiKeys::compile(&parsed, pepper, |r| c.routes.iter().any(|x| x == r))
        .map_err(|e| format!("{}: {e}", c.file.display()))?;
    let block = toml::to_string(&RawKeysFile { key: vec![record] }).map_err(|e| e.to_string())?;
    let mut text = text;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&block);
    let dir = match c.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(|e| e.to_string())?;
    tmp.as_file().sync_all().map_err(|e| e.to_string())?;
    tmp.persist(&c.file)
        .map_err(|e| format!("{}: {}", c.file.display(), e.error))?;
    Ok(())
}

fn record(id: String, hash: String, new: &NewKey<'_>) -> RawKey {
    RawKey {
        id,
        owner: new.owner.to_string(),
        hash,
        created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        sunset: new.sunset.to_string(),
        routes: new
            .routes
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from)
            .collect(),
        cutover: new.cutover,
        revoked: false,
    }
}

/// `keys new`: prints the key once (stdout) and appends its record.
pub(super) fn new(config: &Path, new: &NewKey<'_>) -> ExitCode {
    let result = keys_config(config).and_then(|c| {
        let pepper = read_pepper(&c.pepper)?;
        let (id, key) = apikey::format::generate().map_err(|_| "no randomness for a key")?;
        append(
            &c,
            read_pepper(&c.pepper)?,
            record(id.clone(), pepper.hash(&key), new),
        )?;
        Ok((c, id, key))
    });
    match result {
        Ok((c, id, key)) => {
            println!("{key}");
            eprintln!(
                "key {id} for {} (sunset {}): shown once, store it now; {} keeps only its hash",
                new.owner,
                new.sunset,
                c.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `keys import`: a legacy key of any shape from stdin, stored as argon2id under a new id.
pub(super) fn import(config: &Path, new: &NewKey<'_>) -> ExitCode {
    let result = keys_config(config).and_then(|c| {
        let mut key = String::new();
        std::io::stdin()
            .read_to_string(&mut key)
            .map_err(|e| format!("stdin: {e}"))?;
        let key = key.trim();
        if key.len() < 8 {
            return Err("stdin: give the legacy key (at least 8 characters)".to_string());
        }
        let hash = apikey::hash_legacy(key).map_err(|e| e.problem)?;
        let (id, _) = apikey::format::generate().map_err(|_| "no randomness for an id")?;
        let id = format!("legacy-{id}");
        append(&c, read_pepper(&c.pepper)?, record(id.clone(), hash, new))?;
        Ok((c, id))
    });
    match result {
        Ok((c, id)) => {
            eprintln!(
                "imported as key {id} for {} (sunset {}); {} keeps only its argon2id hash",
                new.owner,
                new.sunset,
                c.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

/// `keys list`: every record, without hashes.
pub(super) fn list(config: &Path) -> ExitCode {
    let result = keys_config(config).and_then(|c| Ok((read_keys_file(&c.file)?.1, c.inventory)));
    let (parsed, inventory) = match result {
        Ok(p) => p,
        Err(e) => return fail(&e),
    };
    let last_use = last_uses(inventory.as_deref());
    let now = unix_now();
    let mut t = comfy_table::Table::new();
    t.load_style(comfy_table::presets::NOTHING);
    t.force_no_tty();
    t.set_header([
        "ID", "OWNER", "CREATED", "SUNSET", "STATE", "ROUTES", "CUTOVER", "LAST USE",
    ]);
    for k in &parsed.key {
        let sunset = humantime::parse_rfc3339(&format!("{}T00:00:00Z", k.sunset))
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_secs() as i64);
        let state = if k.revoked {
            "revoked"
        } else if sunset <= now {
            "sunset"
        } else {
            "active"
        };
        let created = humantime::parse_rfc3339_weak(&k.created)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(|| k.created.clone(), |d| fmt_time(d.as_secs() as i64));
        t.add_row([
            k.id.clone(),
            k.owner.clone(),
            created,
            k.sunset.clone(),
            state.to_string(),
            k.routes.join(","),
            k.cutover.as_str().to_string(),
            match last_use.get(k.id.as_str()) {
                Some(&t) if t > 0 => fmt_time(t),
                Some(_) => "never".to_string(),
                None => "-".to_string(),
            },
        ]);
    }
    println!("{t}");
    ExitCode::SUCCESS
}

/// Each API key's last use (0: never) from the saved inventory; empty without one.
fn last_uses(inventory: Option<&Path>) -> std::collections::HashMap<String, i64> {
    let records = inventory
        .and_then(|p| certgate::inventory::read_file(p).ok().flatten())
        .unwrap_or_default();
    records
        .iter()
        .filter(|r| r.kind() == certgate::inventory::Kind::ApiKey)
        .map(|r| (r.subject().to_string(), r.last_seen))
        .collect()
}

fn fail(e: &str) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
