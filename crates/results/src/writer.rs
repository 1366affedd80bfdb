//! Appending to a run directory: the commit protocol (a round's op profile and samples, then
//! the summary row that counts them), and the two test-only faults that prove it survives a
//! crash and a full disk.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{
    io_err, OpRow, ResultsError, SampleRow, SummaryRow, OPS_FILE, SAMPLES_FILE, SUMMARY_FILE,
};

/// Test hook: `bench run` aborts after writing this backend's samples, before its row.
pub const CRASH_BEFORE_COMMIT: &str = "MOBILEBENCH_CRASH_BEFORE_COMMIT";
/// Test hook: `FILE:BACKEND` (`samples.csv:fixed`, `summary.csv:noop`) makes the disk fill
/// halfway through BACKEND's rows of FILE: half their bytes reach the file, then the write
/// fails with ENOSPC, as a real full disk does.
pub const FULL_DISK: &str = "MOBILEBENCH_FULL_DISK";

/// A CSV file opened for appending that can be told to run out of space.
pub(crate) struct DiskFile {
    file: File,
    /// Bytes the disk still takes before ENOSPC (the injected fault); `None`: no limit. A
    /// cell, as csv's writer lends its inner writer only by shared reference.
    space: Cell<Option<usize>>,
}

impl Write for DiskFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.space.get() {
            None => self.file.write(buf),
            Some(0) => Err(io::Error::from_raw_os_error(ENOSPC)),
            Some(left) => {
                let n = self.file.write(&buf[..buf.len().min(left)])?;
                self.space.set(Some(left - n));
                Ok(n)
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// "No space left on device", the same number on every Linux architecture.
const ENOSPC: i32 = 28;

/// Appends pairs to a run directory's CSVs.
pub struct RunWriter {
    dir: PathBuf,
    samples: csv::Writer<DiskFile>,
    summary: csv::Writer<DiskFile>,
}

impl RunWriter {
    /// Opens (creating if needed) the CSVs of `dir` for appending.
    pub fn open(dir: &Path) -> Result<RunWriter, ResultsError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(RunWriter {
            dir: dir.to_path_buf(),
            samples: open_append(&dir.join(SAMPLES_FILE))?,
            summary: open_append(&dir.join(SUMMARY_FILE))?,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one round of a pair with its `--profile-ops` rows: the rows first (ops.csv),
    /// then [`append_pair`](Self::append_pair), whose summary row commits them all.
    pub fn append_round(
        &mut self,
        summary: &SummaryRow,
        samples: &[SampleRow],
        ops: &[OpRow],
    ) -> Result<(), ResultsError> {
        append_ops(&self.dir, ops)?;
        self.append_pair(summary, samples)
    }

    /// Writes one pair (one round of it): its samples, then its summary row, each flushed
    /// to disk. The summary row is the commit: samples of a round no row counts are left
    /// out by [`read_run`](crate::read_run) and dropped by
    /// [`drop_uncommitted_samples`](crate::drop_uncommitted_samples).
    pub fn append_pair(
        &mut self,
        summary: &SummaryRow,
        samples: &[SampleRow],
    ) -> Result<(), ResultsError> {
        let backend = summary.backend.as_str();
        let samples_path = self.dir.join(SAMPLES_FILE);
        write_rows(&mut self.samples, &samples_path, samples, backend)?;
        // Crash injection for the tests of this commit protocol: die between the two writes.
        if std::env::var_os(CRASH_BEFORE_COMMIT).is_some_and(|b| b == backend) {
            std::process::abort();
        }
        let summary_path = self.dir.join(SUMMARY_FILE);
        write_rows(&mut self.summary, &summary_path, &[summary], backend)
    }
}

/// Appends rows to `dir/ops.csv` (header only into a new file), flushed to disk.
pub(crate) fn append_ops(dir: &Path, rows: &[OpRow]) -> Result<(), ResultsError> {
    if rows.is_empty() {
        return Ok(());
    }
    let path = dir.join(OPS_FILE);
    write_rows(&mut open_append(&path)?, &path, rows, &rows[0].backend)
}

/// Serialises `rows` into `w` and flushes them to disk; with the [`FULL_DISK`] fault armed
/// for this file and backend, the disk fills halfway through them.
fn write_rows<T: Serialize>(
    w: &mut csv::Writer<DiskFile>,
    path: &Path,
    rows: &[T],
    backend: &str,
) -> Result<(), ResultsError> {
    let csv_err = |cause| ResultsError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    if full_disk_injected(path, backend) && !rows.is_empty() {
        let mut bytes = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        for r in rows {
            bytes.serialize(r).map_err(csv_err)?;
        }
        let len = bytes.into_inner().map_or(0, |b| b.len());
        w.get_ref().space.set(Some(len / 2));
    }
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    flush(w, path)
}

fn full_disk_injected(path: &Path, backend: &str) -> bool {
    let Ok(spec) = std::env::var(FULL_DISK) else {
        return false;
    };
    spec.split_once(':')
        .is_some_and(|(file, b)| b == backend && path.file_name().is_some_and(|name| name == file))
}

pub(crate) fn flush(w: &mut csv::Writer<DiskFile>, path: &Path) -> Result<(), ResultsError> {
    w.flush().map_err(io_err(path))?;
    w.get_ref().file.sync_data().map_err(io_err(path))
}

/// Opens a CSV for appending; writes the header only into an empty file. A last line left
/// unterminated (a crash or a full disk cut it short) was never a row: every row is written
/// whole with its newline before anything counts it, so the fragment is cut off and the next
/// row starts on its own line.
pub(crate) fn open_append(path: &Path) -> Result<csv::Writer<DiskFile>, ResultsError> {
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    let mut len = file.metadata().map_err(io_err(path))?.len();
    if len > 0 {
        let kept = complete_lines_len(&mut file, len).map_err(io_err(path))?;
        if kept < len {
            file.set_len(kept).map_err(io_err(path))?;
            len = kept;
        }
    }
    Ok(csv::WriterBuilder::new()
        .has_headers(len == 0)
        .from_writer(DiskFile {
            file,
            space: Cell::new(None),
        }))
}

/// The length of `file` up to and including its last newline.
fn complete_lines_len(file: &mut File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
