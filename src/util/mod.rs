//! What is truly generic and used across folders: time keeping and formatting, digests. Not a
//! dumping ground: anything with a domain meaning lives with its domain.

pub mod digest;
pub mod memory;
pub mod pem;
pub mod text;
pub mod time;
