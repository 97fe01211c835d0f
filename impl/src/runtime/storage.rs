//! A replica's durable state on a disk (spec/protocol.md, "Durability" and
//! "Storage format"): what carries out the core's [`Persist`] effects.
//!
//! Two files in a data directory:
//! - `log`: append-only records, each `[length u32][checksum of the payload
//!   u32][checksum of those 8 bytes u32][payload]` (CRC-32, little-endian).
//!   A payload is a view state or a log write ("from op-number n the log is
//!   these entries"). Reading the records in order rebuilds the log, the
//!   view state and the commit-number; nothing is ever overwritten in place.
//! - `checkpoint`: the latest checkpoint's parts in one checksummed record,
//!   replaced atomically (write a temporary file, fsync, rename, fsync the
//!   directory). Then the log is rewritten the same way without the entries
//!   the checkpoint covers: that is log compaction.
//!
//! On start, a record that fails its checksum with no valid record after it
//! is a torn last write: it is cut off (nothing that depended on it was
//! sent, since a write is made durable before). A bad record with valid ones
//! after it, or a bad checkpoint, is corruption: the replica must not vote
//! with that state, so [`Storage::open`] says [`Opened::Corrupt`] and the
//! runtime runs the recovery protocol (paper 4.3), after which the whole
//! state is written anew.
//!
//! The files sit behind [`Disk`] so that the simulator can use a
//! [`MemoryDisk`] that loses, tears or corrupts writes at a crash.

use crate::core::{
    Checkpoint, CheckpointPart, CommitNumber, Config, Durable, Entry, OpNumber, Persist,
    StateMachine, ViewState,
};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const LOG: &str = "log";
const CHECKPOINT: &str = "checkpoint";
const HEADER: usize = 12;
const VIEW_STATE: u8 = 1;
const LOG_WRITE: u8 = 2;
const CHECKPOINT_PARTS: u8 = 3;
const BATCH: u8 = 4;

/// Files by name, as a storage needs them.
pub trait Disk {
    /// The bytes of `name`, or None if there is no such file.
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Appends `bytes` to `name` (creating it); durable only after `sync`.
    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes every append to `name` so far durable.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// Replaces `name` by `bytes`, atomically and durably.
    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()>;
    /// Removes `name`, durably; no error if it is not there.
    fn remove(&mut self, name: &str) -> io::Result<()>;
}

/// A directory of real files.
pub struct FileDisk {
    dir: PathBuf,
    open: BTreeMap<String, File>,
}

impl FileDisk {
    /// The files in `dir`, which must exist.
    pub fn new(dir: &Path) -> FileDisk {
        FileDisk {
            dir: dir.to_path_buf(),
            open: BTreeMap::new(),
        }
    }

    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

impl Disk for FileDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match File::open(self.dir.join(name)) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if !self.open.contains_key(name) {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(name))?;
            self.open.insert(name.to_string(), file);
        }
        self.open.get_mut(name).expect("opened").write_all(bytes)
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        match self.open.get(name) {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.open.remove(name);
        let temporary = self.dir.join(format!("{name}.new"));
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, self.dir.join(name))?;
        self.sync_dir()
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.open.remove(name);
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What a crash does to the writes a [`MemoryDisk`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashFault {
    /// Every unsynced append is lost.
    LoseUnsynced,
    /// The unsynced appends are cut at byte `at` (taken modulo their
    /// length + 1): a torn write.
    Tear { at: u64 },
    /// A byte of the synced log's first record, chosen by `at`, is
    /// flipped: a bad sector under a record with valid ones after it (the
    /// last record's corruption cannot be told from a torn write: see
    /// spec/protocol.md, "Known limitations").
    Corrupt { at: u64 },
}

/// Files in memory, for the simulator: appends are durable only once
/// synced, and [`MemoryDisk::crash`] applies a [`CrashFault`].
#[derive(Clone, Debug, Default)]
pub struct MemoryDisk {
    /// Per file: its bytes, and how many of them are synced.
    files: BTreeMap<String, (Vec<u8>, usize)>,
}

impl MemoryDisk {
    /// A crash: what was not synced is lost, torn or kept as `fault` says.
    pub fn crash(&mut self, fault: CrashFault) {
        for (name, (bytes, synced)) in &mut self.files {
            match fault {
                CrashFault::LoseUnsynced => bytes.truncate(*synced),
                CrashFault::Tear { at } => {
                    let unsynced = (bytes.len() - *synced) as u64;
                    let keep = at % (unsynced + 1);
                    bytes.truncate(*synced + keep as usize);
                }
                CrashFault::Corrupt { at } => {
                    bytes.truncate(*synced);
                    let first = payload_at(bytes, 0).map(|p| HEADER + p.len());
                    if name == LOG
                        && let Some(first) = first
                        && first < bytes.len()
                    {
                        let index = (at % first as u64) as usize;
                        bytes[index] ^= 0x5a;
                    }
                }
            }
            *synced = bytes.len();
        }
    }

    /// Whether any append is not yet synced.
    pub fn has_unsynced(&self) -> bool {
        self.files
            .values()
            .any(|(bytes, synced)| bytes.len() > *synced)
    }
}

impl Disk for MemoryDisk {
    fn read(&mut self, name: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(name).map(|(bytes, _)| bytes.clone()))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.files
            .entry(name.to_string())
            .or_default()
            .0
            .extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        if let Some((bytes, synced)) = self.files.get_mut(name) {
            *synced = bytes.len();
        }
        Ok(())
    }

    fn replace(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.files
            .insert(name.to_string(), (bytes.to_vec(), bytes.len()));
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.files.remove(name);
        Ok(())
    }
}

/// What a storage held when opened.
#[derive(Debug)]
pub enum Opened<S: StateMachine> {
    /// Nothing: this replica never started (or its data was removed).
    Empty,
    /// The state to restart from; `torn` if a torn last write was cut off.
    Kept { durable: Durable<S>, torn: bool },
    /// Not to be trusted: the replica must recover from its peers.
    Corrupt(String),
}

/// A replica's storage on a [`Disk`].
pub struct Storage<S: StateMachine, D: Disk> {
    disk: D,
    /// What the disk holds once every write so far is synced: the log
    /// rewrite after a checkpoint is made from it.
    kept: Durable<S>,
    /// Since [`Opened::Corrupt`], until the whole state is written anew:
    /// nothing is appended to the untrusted log.
    corrupt: bool,
    /// The writes since the last sync, as (kind, body): [`Storage::sync`]
    /// appends them as one record, so that a crash keeps all of them or
    /// none (a torn record is cut off whole).
    pending: Vec<(u8, Vec<u8>)>,
    /// Records appended but not yet synced.
    written: bool,
}

impl<S: StateMachine, D: Disk> Storage<S, D> {
    /// Reads what `disk` holds.
    pub fn open(mut disk: D, config: &Config) -> io::Result<(Storage<S, D>, Opened<S>)> {
        let opened = read_state(&mut disk, config)?;
        let (kept, corrupt) = match &opened {
            Opened::Kept { durable, .. } => (durable.clone(), false),
            Opened::Empty => (Durable::default(), false),
            Opened::Corrupt(_) => (Durable::default(), true),
        };
        let mut storage = Storage {
            disk,
            kept,
            corrupt,
            pending: Vec::new(),
            written: false,
        };
        if let Opened::Kept { torn: true, .. } = &opened {
            // Cut the torn tail off, so that appends follow valid records.
            storage.rewrite_log()?;
        }
        Ok((storage, opened))
    }

    /// Writes one `Persist` (durable after [`Storage::sync`], or at once
    /// for a checkpoint and the log rewrite that follows it).
    pub fn persist(&mut self, persist: &Persist<S>) -> io::Result<()> {
        self.kept.apply(persist);
        match persist {
            Persist::Checkpoint(checkpoint) => {
                let bytes = record(CHECKPOINT_PARTS, &checkpoint.parts());
                self.disk.replace(CHECKPOINT, &bytes)?;
                if !self.corrupt {
                    self.rewrite_log()?;
                }
            }
            Persist::ViewState(state) => {
                if !self.corrupt {
                    self.pending.push((VIEW_STATE, encode(state)));
                }
            }
            Persist::Log {
                from,
                entries,
                commit,
            } => {
                if self.corrupt {
                    if *from <= self.kept.first {
                        // The whole state, written anew after a recovery.
                        if self.kept.checkpoint.is_none() {
                            self.disk.remove(CHECKPOINT)?;
                        }
                        self.rewrite_log()?;
                        self.corrupt = false;
                    }
                } else {
                    let body = (from, commit, entries.as_slice());
                    self.pending.push((LOG_WRITE, encode(&body)));
                }
            }
        }
        Ok(())
    }

    /// Stops trusting what the disk holds (the replica recovers from its
    /// peers instead): nothing is appended until the whole state is
    /// written anew.
    pub fn distrust(&mut self) {
        self.corrupt = true;
        self.kept = Durable::default();
    }

    /// Makes every write so far durable: one record, one fsync for all of
    /// them.
    pub fn sync(&mut self) -> io::Result<()> {
        self.write()?;
        if self.written {
            self.disk.sync(LOG)?;
            self.written = false;
        }
        Ok(())
    }

    /// Appends the writes since the last call as one record, not yet
    /// synced: a crash may lose or tear it, but never splits it.
    pub fn write(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.disk.append(LOG, &record(BATCH, &batch))?;
        self.written = true;
        Ok(())
    }

    /// Whether some write is not yet durable.
    pub fn has_unsynced(&self) -> bool {
        !self.pending.is_empty() || self.written
    }

    /// The disk, for a simulated crash.
    pub fn into_disk(self) -> D {
        self.disk
    }

    /// What a restart would find, once synced.
    pub fn kept(&self) -> &Durable<S> {
        &self.kept
    }

    fn rewrite_log(&mut self) -> io::Result<()> {
        let mut bytes = record(VIEW_STATE, &self.kept.view_state);
        let body = (
            self.kept.first,
            self.kept.view_state.commit,
            self.kept.entries.as_slice(),
        );
        bytes.extend(record(LOG_WRITE, &body));
        self.disk.replace(LOG, &bytes)?;
        // The rewrite holds every pending write.
        self.pending.clear();
        self.written = false;
        Ok(())
    }
}

fn encode<T: serde::Serialize + ?Sized>(body: &T) -> Vec<u8> {
    postcard::to_stdvec(body).expect("encoding to memory cannot fail")
}

/// One record: header, then `kind` and the postcard encoding of `body`.
fn record<T: serde::Serialize + ?Sized>(kind: u8, body: &T) -> Vec<u8> {
    let mut payload = vec![kind];
    payload.extend(encode(body));
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend((payload.len() as u32).to_le_bytes());
    bytes.extend(crc32fast::hash(&payload).to_le_bytes());
    let header_checksum = crc32fast::hash(&bytes[..8]);
    bytes.extend(header_checksum.to_le_bytes());
    bytes.extend(payload);
    bytes
}

/// The payload of the record at `offset`, if one is whole and valid there.
fn payload_at(bytes: &[u8], offset: usize) -> Option<&[u8]> {
    let header = bytes.get(offset..offset.checked_add(HEADER)?)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[..8]) != word(8) {
        return None;
    }
    let start = offset + HEADER;
    let payload = bytes.get(start..start.checked_add(word(0) as usize)?)?;
    (crc32fast::hash(payload) == word(4) && !payload.is_empty()).then_some(payload)
}

/// Whether any valid record starts after `offset`.
fn valid_record_after(bytes: &[u8], offset: usize) -> bool {
    (offset + 1..bytes.len()).any(|at| payload_at(bytes, at).is_some())
}

fn read_state<S: StateMachine>(disk: &mut dyn Disk, config: &Config) -> io::Result<Opened<S>> {
    let log = disk.read(LOG)?;
    let checkpoint_bytes = disk.read(CHECKPOINT)?;
    let Some(log) = log else {
        return Ok(match checkpoint_bytes {
            None => Opened::Empty,
            Some(_) => Opened::Corrupt("a checkpoint but no log".into()),
        });
    };
    let mut durable = Durable::default();
    if let Some(bytes) = checkpoint_bytes {
        let parts = payload_at(&bytes, 0)
            .filter(|p| p[0] == CHECKPOINT_PARTS)
            .and_then(|p| postcard::from_bytes::<Vec<CheckpointPart<S>>>(&p[1..]).ok());
        let Some(checkpoint) = parts.and_then(|parts| Checkpoint::from_parts(&parts, config))
        else {
            return Ok(Opened::Corrupt("the checkpoint fails its checksum".into()));
        };
        durable.apply(&Persist::Checkpoint(checkpoint));
    }
    let mut offset = 0;
    let mut torn = false;
    let mut view_state_seen = false;
    while offset < log.len() {
        let Some(payload) = payload_at(&log, offset) else {
            if valid_record_after(&log, offset) {
                return Ok(Opened::Corrupt(format!(
                    "the log record at byte {offset} fails its checksum, and later ones pass"
                )));
            }
            torn = true;
            break;
        };
        let items = match payload[0] {
            BATCH => postcard::from_bytes::<Vec<(u8, Vec<u8>)>>(&payload[1..]).ok(),
            kind => Some(vec![(kind, payload[1..].to_vec())]),
        };
        let decoded: Option<Vec<Persist<S>>> = items.and_then(|items| {
            items
                .iter()
                .map(|(kind, body)| decode::<S>(*kind, body))
                .collect()
        });
        let Some(persists) = decoded else {
            return Ok(Opened::Corrupt(format!(
                "the log record at byte {offset} passes its checksum but cannot be read"
            )));
        };
        for persist in persists {
            view_state_seen |= matches!(persist, Persist::ViewState(_));
            durable.apply(&persist);
        }
        offset += HEADER + payload.len();
    }
    if !view_state_seen {
        return Ok(Opened::Corrupt("the log holds no view state".into()));
    }
    Ok(Opened::Kept { durable, torn })
}

/// One write of the log, as a record's kind and body hold it.
fn decode<S: StateMachine>(kind: u8, body: &[u8]) -> Option<Persist<S>> {
    match kind {
        VIEW_STATE => postcard::from_bytes::<ViewState>(body)
            .ok()
            .map(Persist::ViewState),
        LOG_WRITE => postcard::from_bytes::<(OpNumber, CommitNumber, Vec<Entry<S>>)>(body)
            .ok()
            .map(|(from, commit, entries)| Persist::Log {
                from,
                entries,
                commit,
            }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Kv, KvOperation};
    use crate::core::{ClientId, Durable, Replica, ReplicaId, RequestNumber, View};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vr-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config() -> Config {
        Config::new(3, ReplicaId(1)).unwrap()
    }

    fn entry(i: u64) -> Entry<Kv> {
        Entry {
            operation: crate::core::Command::Apply(KvOperation::Put {
                key: format!("k{i}"),
                value: "v".into(),
            }),
            client: ClientId(1),
            request: RequestNumber(i),
        }
    }

    /// A storage in `dir` holding a new replica's state, then entries 1-3
    /// and view state (1, 0), each write synced on its own.
    fn written(dir: &Path) -> Durable<Kv> {
        let (mut storage, opened) = Storage::<Kv, _>::open(FileDisk::new(dir), &config()).unwrap();
        assert!(matches!(opened, Opened::Empty));
        let mut effects = Vec::new();
        Replica::<Kv>::new(config(), &mut effects);
        for effect in &effects {
            if let crate::core::Effect::Persist(p) = effect {
                storage.persist(p).unwrap();
            }
        }
        storage.sync().unwrap();
        for i in 1..=3 {
            let write = Persist::Log {
                from: OpNumber(i),
                entries: vec![entry(i)],
                commit: CommitNumber(i - 1),
            };
            storage.persist(&write).unwrap();
            storage.sync().unwrap();
        }
        let view = ViewState {
            view: View(1),
            last_normal_view: View(0),
            commit: CommitNumber(2),
        };
        storage.persist(&Persist::ViewState(view)).unwrap();
        storage.sync().unwrap();
        storage.kept().clone()
    }

    fn reopen(dir: &Path) -> Opened<Kv> {
        Storage::<Kv, _>::open(FileDisk::new(dir), &config())
            .unwrap()
            .1
    }

    #[test]
    fn what_was_synced_to_files_reads_back_the_same() {
        let dir = scratch("roundtrip");
        let kept = written(&dir);
        assert_eq!(kept.entries.len(), 3);
        let Opened::Kept { durable, torn } = reopen(&dir) else {
            panic!("not kept");
        };
        assert!(!torn);
        assert_eq!(durable, kept);
        assert_eq!(durable.view_state.view, View(1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_rest_kept() {
        let dir = scratch("torn");
        let kept = written(&dir);
        let log = dir.join(LOG);
        let bytes = std::fs::read(&log).unwrap();
        // Half of a further record: the crash tore it.
        let extra = record(VIEW_STATE, &kept.view_state);
        let mut torn_bytes = bytes.clone();
        torn_bytes.extend(&extra[..extra.len() / 2]);
        std::fs::write(&log, &torn_bytes).unwrap();
        let Opened::Kept { durable, torn } = reopen(&dir) else {
            panic!("not kept");
        };
        assert!(torn);
        assert_eq!(durable, kept);
        // And the torn tail is gone from the file.
        assert!(std::fs::read(&log).unwrap().len() < torn_bytes.len());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_record_with_valid_ones_after_it_makes_the_storage_untrusted() {
        let dir = scratch("corrupt");
        written(&dir);
        let log = dir.join(LOG);
        let mut bytes = std::fs::read(&log).unwrap();
        bytes[HEADER + 1] ^= 0x40;
        std::fs::write(&log, &bytes).unwrap();
        assert!(matches!(reopen(&dir), Opened::Corrupt(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_is_kept_and_compacts_the_log() {
        let dir = scratch("checkpoint");
        written(&dir);
        let (mut storage, _) = Storage::<Kv, _>::open(FileDisk::new(&dir), &config()).unwrap();
        let mut app = Kv::default();
        let table = crate::core::ClientTable::default();
        for i in 1..=2 {
            if let crate::core::Command::Apply(operation) = &entry(i).operation {
                crate::core::StateMachine::apply(&mut app, operation);
            }
        }
        let checkpoint = crate::core::Checkpoint::new(CommitNumber(2), app, table, 64, 60_000);
        storage.persist(&Persist::Checkpoint(checkpoint)).unwrap();
        drop(storage);
        let Opened::Kept { durable, .. } = reopen(&dir) else {
            panic!("not kept");
        };
        assert_eq!(durable.checkpoint.as_ref().unwrap().commit, CommitNumber(2));
        assert_eq!((durable.first, durable.entries.len()), (OpNumber(3), 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
