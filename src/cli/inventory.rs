//! `certgate inventory`: the credential report from the persisted inventory file (the gateway
//! need not run), joined with the owners file, filtered, as a table, JSON or CSV.

use std::path::Path;
use std::process::ExitCode;

use certgate::config::ConfigFile;
use certgate::inventory::fleet::fleet_records;
use certgate::inventory::{
    Filter, Format, Record, RecordView, migration_rows, read_file, render, render_migration,
};
use certgate::util::time::unix_now;

/// Where the report reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Source {
    /// `[inventory].path`, as the gateway last saved it.
    #[default]
    File,
    /// `[inventory].postgres`: the fleet view, every gateway that saw each credential.
    Postgres,
}

pub struct Options {
    pub source: Source,
    pub format: Format,
    pub filter: Filter,
    /// The API-key migration report instead of the register.
    pub migration: bool,
}

pub fn inventory(config: &Path, o: &Options) -> ExitCode {
    match report(config, o) {
        Ok(text) => {
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(config: &Path, o: &Options) -> Result<String, String> {
    let file = ConfigFile::load(config).map_err(|e| e.to_string())?;
    let owners = certgate::state::load_owners(&file).map_err(|e| e.to_string())?;
    let mut records = match o.source {
        Source::File => from_file(&file)?,
        Source::Postgres => from_postgres(&file)?,
    };
    records.sort_by(|a, b| (a.subject(), a.sha256()).cmp(&(b.subject(), b.sha256())));
    let now = unix_now();
    let window = file.raw.expiry.warning_window.as_secs() as i64;
    if o.migration {
        let rows = migration_rows(&records, now, window);
        return render_migration(&rows, o.format, now).map_err(|e| e.to_string());
    }
    let views: Vec<RecordView<'_>> = records
        .iter()
        .filter(|r| o.filter.keeps(r, now, &owners))
        .map(|r| RecordView::new(r, now, window, &owners))
        .collect();
    render(&views, o.format, now).map_err(|e| e.to_string())
}

fn from_file(file: &ConfigFile) -> Result<Vec<Record>, String> {
    let Some(path) = &file.raw.inventory.path else {
        return Err(format!(
            "{}: inventory.path is not set: the gateway keeps its inventory in memory only \
             (GET /inventory on the admin listener); set it to keep and report it",
            file.path.display()
        ));
    };
    let path = file.resolve(path);
    read_file(&path)
        .map_err(|e| format!("{}: not an inventory file: {e}", path.display()))?
        .ok_or_else(|| {
            format!(
                "{}: no inventory file yet: the gateway writes it every inventory.flush_interval \
                 ({}) and when it stops; is it running with this config ({})?",
                path.display(),
                humantime::format_duration(file.raw.inventory.flush_interval),
                file.path.display()
            )
        })
}

fn from_postgres(file: &ConfigFile) -> Result<Vec<Record>, String> {
    let Some(url) = &file.raw.inventory.postgres else {
        return Err(format!(
            "{}: inventory.postgres is not set: there is no fleet inventory to read",
            file.path.display()
        ));
    };
    let ca = file
        .raw
        .inventory
        .postgres_ca
        .as_deref()
        .map(|p| file.resolve(p));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(fleet_records(url, ca.as_deref()))
        .map_err(|e| format!("inventory.postgres: {e}"))
}
