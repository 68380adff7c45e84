//! `[owners]` compiled: the owners file is read and compiled now (it is one of the snapshot's
//! inputs, so editing it is a reload). Errors name the owners file and the entry's key.

use std::sync::Arc;

use crate::authz::owners::{Owner, Owners};
use crate::config::{ConfigError, ConfigFile, RawOwnersFile, parse_toml};

pub(super) fn compile_owners(file: &ConfigFile) -> Result<Owners, ConfigError> {
    let raw = &file.raw.owners;
    let Some(rel) = &raw.file else {
        return Ok(Owners::new(Vec::new(), raw));
    };
    let path = file.resolve(rel);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        file: path.clone(),
        source,
    })?;
    let parsed: RawOwnersFile = parse_toml(&path, &text)?;
    let invalid = |key: String, problem: String| ConfigError::Invalid {
        file: path.clone(),
        key,
        problem,
    };
    let mut list: Vec<Arc<Owner>> = Vec::new();
    for (i, o) in parsed.owner.iter().enumerate() {
        let owner = Owner::compile(o).map_err(|(k, p)| invalid(format!("owner[{i}].{k}"), p))?;
        if list.iter().any(|x| x.name == owner.name) {
            return Err(invalid(
                format!("owner[{i}].name"),
                format!("{:?} is used by an earlier owner", o.name),
            ));
        }
        list.push(Arc::new(owner));
    }
    Ok(Owners::new(list, raw))
}
