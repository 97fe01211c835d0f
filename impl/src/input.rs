//! Keys and values given on the command line or read from files or standard
//! input, for values that do not fit a command line (or that a shell would
//! mangle).

use crate::exit::Failure;
use std::io::Read;
use std::path::{Path, PathBuf};

/// One input a command needs: its name in messages, and the file to read it
/// from if one was given (`-`: standard input).
pub struct Wanted<'a> {
    pub name: &'a str,
    pub file: Option<&'a PathBuf>,
    pub flag: &'a str,
}

/// Fills each of `wanted` in order: from its file when one was given, else
/// from the next of the words given on the command line. A file's content is
/// taken byte for byte (a final newline is part of it) and must be UTF-8.
pub fn gather(words: &[Option<String>], wanted: &[Wanted]) -> Result<Vec<String>, Failure> {
    let stdin_users: Vec<&str> = wanted
        .iter()
        .filter(|w| w.file.is_some_and(|f| f.as_os_str() == "-"))
        .map(|w| w.flag)
        .collect();
    if stdin_users.len() > 1 {
        return Err(Failure::usage(format!(
            "{} all read standard input: at most one may",
            stdin_users.join(" and ")
        )));
    }
    let mut words = words.iter().flatten();
    let mut found = Vec::with_capacity(wanted.len());
    for w in wanted {
        let value = match w.file {
            Some(path) => read(path, w.name)?,
            None => words
                .next()
                .cloned()
                .ok_or_else(|| Failure::usage(format!("give {} or {} PATH", w.name, w.flag)))?,
        };
        found.push(value);
    }
    if let Some(extra) = words.next() {
        let from_files: Vec<&str> = wanted
            .iter()
            .filter(|w| w.file.is_some())
            .map(|w| w.name)
            .collect();
        return Err(Failure::usage(format!(
            "unexpected argument {extra:?}: {} came from a file",
            from_files.join(" and ")
        )));
    }
    Ok(found)
}

/// The content of `path` (`-`: standard input) as `name`.
fn read(path: &Path, name: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let outcome = if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    let shown = if path.as_os_str() == "-" {
        "standard input".to_string()
    } else {
        path.display().to_string()
    };
    outcome.map_err(|e| Failure::usage(format!("cannot read {name} from {shown}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| Failure::usage(format!("{name} from {shown} is not UTF-8 text")))
}
