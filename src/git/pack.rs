//! Reading the versions of a file from git's pack files, each delta applied once.
//!
//! git stores a file's versions as a chain of deltas: the newest version whole, each older
//! one as a delta against a newer one. libgit2 caches the bases of deltas only up to 1 MiB
//! each, so every version of a larger file was inflated again from the start of its chain: 11
//! versions of a 1.6 MB file cost 11 inflations of the whole file and 55 delta applications.
//! [`Blobs`] reads the pack files itself (the `.idx` lookup, the entry header, zlib, the two
//! delta kinds) and keeps the objects it resolved in a small cache bounded in bytes, so a walk
//! over a file's versions inflates its newest version once and applies each delta once.
//!
//! Anything it does not handle (a loose object, an alternate object store, a pack without an
//! index or one git would refuse, an entry it cannot parse, a chain through another pack) is
//! read by libgit2 instead, so the bytes are the same either way. Nothing is hashed: like the
//! rest of the history engine, objects are read only to be compared (see
//! `strict_hash_verification` in [`super::history::walk`]). Files are read with positioned
//! reads, never mapped.

use std::collections::VecDeque;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

/// Blob bytes, shared with the cache.
pub type Bytes = Rc<Vec<u8>>;

/// Objects larger than this are left to libgit2 (and never cached).
const MAX_OBJECT: usize = 256 << 20;
/// Bytes of resolved objects kept for the next reads.
const CACHE_BYTES: usize = 4 << 20;
/// The longest delta chain followed (git makes at most 4,095 by default).
const MAX_DEPTH: usize = 10_000;

/// One pack file and its index.
struct Pack {
    idx: File,
    pack: File,
    /// Cumulative object counts by first byte of the id (the index's fan-out table).
    fanout: Vec<u32>,
    /// Objects in the pack.
    count: u32,
    /// Bytes before the pack's trailing checksum.
    end: u64,
}

/// Reads blobs of one repository, packed ones through the pack files (see the module).
pub struct Blobs<'r> {
    repo: &'r git2::Repository,
    packs: Vec<Pack>,
    /// (pack, offset) → object, most recently used last.
    cache: VecDeque<((usize, u64), Bytes)>,
    cached: usize,
    /// The last undeltified object resolved (a chain's base): kept whatever its size.
    root: Option<((usize, u64), Bytes)>,
    /// Blobs read from a pack by this reader (the others were read by libgit2).
    from_packs: usize,
    /// Buffers of objects no longer referenced, reused for the next ones (fresh pages cost a
    /// page fault each).
    spare: Vec<Vec<u8>>,
    /// A blob whose bytes were given (see [`Blobs::seed`]).
    seeded: Option<(git2::Oid, Bytes)>,
    inflater: libdeflater::Decompressor,
    /// The compressed bytes of the entry being inflated.
    input: Vec<u8>,
}

impl<'r> Blobs<'r> {
    /// A reader over the repository's own pack files (`objects/pack/*.idx`).
    pub fn new(repo: &'r git2::Repository) -> Blobs<'r> {
        let dir = repo.commondir().join("objects").join("pack");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "idx"))
                    .collect()
            })
            .unwrap_or_default();
        let mut packs: Vec<(std::time::SystemTime, Pack)> =
            names.iter().filter_map(|idx| Pack::open(idx)).collect();
        // git's order: the newest pack first. (Honest packs that share an object hold the
        // same bytes for it; two packs that disagree were forged, and then envv reads the one
        // git reads first.)
        packs.sort_by_key(|p| std::cmp::Reverse(p.0));
        let packs = packs.into_iter().map(|(_, p)| p).collect();
        Blobs {
            repo,
            packs,
            cache: VecDeque::new(),
            cached: 0,
            root: None,
            from_packs: 0,
            spare: Vec::new(),
            seeded: None,
            inflater: libdeflater::Decompressor::new(),
            input: Vec::new(),
        }
    }

    /// How many reads this reader answered from a pack itself (not through libgit2).
    pub fn packed_reads(&self) -> usize {
        self.from_packs
    }

    /// Takes `bytes` for blob `id`'s, which the caller knows them to be (a working file git's
    /// index takes for that blob, see [`super::unchanged_bytes`]): reads of it, and of deltas
    /// against it (git usually keeps the newest version whole and stores older ones as deltas
    /// against it), start from them instead of inflating it. Replaces the blob given before.
    /// Bytes of another size than a pack's whole entry for `id` are not taken: returns whether
    /// they were.
    pub fn seed(&mut self, id: git2::Oid, bytes: Vec<u8>) -> bool {
        let bytes = Rc::new(bytes);
        if let Some((pack, offset)) = self.locate(id) {
            if let Some(e) = self.packs[pack].entry(offset) {
                if matches!(e.kind, Kind::Blob) {
                    if e.size != bytes.len() {
                        return false;
                    }
                    if let Some((_, old)) = self.root.replace(((pack, offset), bytes.clone())) {
                        self.recycle(old);
                    }
                }
            }
        }
        self.seeded = Some((id, bytes));
        true
    }

    /// Whether reading `id` would inflate it whole (a loose object, or a whole entry of a pack),
    /// rather than apply a delta to a version already read: then [`Blobs::seed`] saves work.
    pub fn stored_whole(&self, id: git2::Oid) -> bool {
        match self.locate(id) {
            None => true,
            Some((pack, offset)) => self.packs[pack]
                .entry(offset)
                .is_some_and(|e| matches!(e.kind, Kind::Blob)),
        }
    }

    /// The first pack holding `id`, in git's order (see `new`), and its offset there.
    fn locate(&self, id: git2::Oid) -> Option<(usize, u64)> {
        (0..self.packs.len()).find_map(|p| self.packs[p].offset_of(id.as_bytes()).map(|o| (p, o)))
    }

    /// The blob's bytes; `None` when it cannot be read (or is not a blob).
    pub fn read(&mut self, id: git2::Oid) -> Option<Bytes> {
        if let Some((seeded, bytes)) = &self.seeded {
            if *seeded == id {
                return Some(bytes.clone());
            }
        }
        if let Some((pack, offset)) = self.locate(id) {
            if let Some(b) = self.resolve(pack, offset) {
                self.from_packs += 1;
                return Some(b);
            }
        }
        let blob = self.repo.find_blob(id).ok()?;
        Some(Rc::new(blob.content().to_vec()))
    }

    fn cached(&mut self, key: (usize, u64)) -> Option<Bytes> {
        if let Some((k, b)) = &self.root {
            if *k == key {
                return Some(b.clone());
            }
        }
        let at = self.cache.iter().position(|(k, _)| *k == key)?;
        let entry = self.cache.remove(at)?;
        let bytes = entry.1.clone();
        self.cache.push_back(entry);
        Some(bytes)
    }

    fn keep(&mut self, key: (usize, u64), bytes: &Bytes) {
        if bytes.len() > CACHE_BYTES / 2 {
            return;
        }
        while self.cached + bytes.len() > CACHE_BYTES {
            let Some((_, old)) = self.cache.pop_front() else {
                break;
            };
            self.cached -= old.len();
            self.recycle(old);
        }
        self.cached += bytes.len();
        self.cache.push_back((key, bytes.clone()));
    }

    /// Keeps the buffer of an object nothing else references, for the next one.
    fn recycle(&mut self, bytes: Bytes) {
        if let Ok(mut v) = Rc::try_unwrap(bytes) {
            if self.spare.len() < 2 {
                v.clear();
                self.spare.push(v);
            }
        }
    }

    /// The object at `offset` of pack `pack`, its delta chain followed down to a cached object
    /// or a whole one and then applied upwards. `None`: not something this reader handles.
    fn resolve(&mut self, pack: usize, offset: u64) -> Option<Bytes> {
        // Down the chain: the deltas to apply, newest-applied last.
        let mut deltas: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut held = 0usize;
        let mut at = offset;
        let mut base = loop {
            if let Some(b) = self.cached((pack, at)) {
                break b;
            }
            if deltas.len() > MAX_DEPTH || held > MAX_OBJECT {
                return None;
            }
            held += deltas.last().map_or(0, |(_, d)| d.len());
            let entry = self.packs[pack].entry(at)?;
            let data = self.packs[pack].inflate(
                &mut self.inflater,
                &mut self.input,
                entry.data,
                entry.size,
            )?;
            match entry.kind {
                Kind::Blob => {
                    let bytes = Rc::new(data);
                    if let Some((_, old)) = self.root.replace(((pack, at), bytes.clone())) {
                        self.recycle(old);
                    }
                    break bytes;
                }
                Kind::OfsDelta(base_at) => {
                    deltas.push((at, data));
                    at = base_at;
                }
                Kind::RefDelta(base_id) => {
                    deltas.push((at, data));
                    at = self.packs[pack].offset_of(&base_id)?;
                }
            }
        };
        while let Some((at, delta)) = deltas.pop() {
            let out = self.spare.pop().unwrap_or_default();
            let next = Rc::new(apply_delta(&base, &delta, out)?);
            let done = std::mem::replace(&mut base, next);
            self.recycle(done);
            self.keep((pack, at), &base);
        }
        Some(base)
    }
}

/// What a pack entry holds.
enum Kind {
    Blob,
    /// A delta against the entry at this offset of the same pack.
    OfsDelta(u64),
    /// A delta against the object with this id.
    RefDelta([u8; 20]),
}

/// A parsed pack entry header.
struct Entry {
    kind: Kind,
    /// Size of the inflated data (the object, or the delta).
    size: usize,
    /// Offset of the zlib stream.
    data: u64,
}

/// Opens a regular file for reading: never waits on a FIFO, never follows into a device.
fn open_regular(path: &Path) -> Option<(File, std::fs::Metadata)> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(path).ok()?;
    let m = f.metadata().ok()?;
    m.is_file().then_some((f, m))
}

impl Pack {
    /// Opens a pack and its index when they agree as git requires (the object count in both,
    /// the pack's checksum as the index records it, an index of the size its count gives);
    /// with the pack's modification time.
    fn open(idx_path: &Path) -> Option<(std::time::SystemTime, Pack)> {
        let (idx, idx_meta) = open_regular(idx_path)?;
        let (pack, pack_meta) = open_regular(&idx_path.with_extension("pack"))?;
        let mut head = vec![0u8; 8 + 256 * 4];
        read_exact_at(&idx, &mut head, 0)?;
        // Version 2: a magic number, the version, then the fan-out table.
        if head[..8] != [0xff, b't', b'O', b'c', 0, 0, 0, 2] {
            return None;
        }
        let fanout: Vec<u32> = head[8..]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if fanout.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let count = *fanout.last()?;
        let mut magic = [0u8; 12];
        read_exact_at(&pack, &mut magic, 0)?;
        let version = u32::from_be_bytes(magic[4..8].try_into().expect("4 bytes"));
        let objects = u32::from_be_bytes(magic[8..12].try_into().expect("4 bytes"));
        if &magic[..4] != b"PACK" || !(version == 2 || version == 3) || objects != count {
            return None;
        }
        // The index: names, CRCs and offsets per object, 8-byte offsets, then the pack's
        // checksum and its own.
        let fixed = 8 + 256 * 4 + 28 * u64::from(count) + 40;
        let len = idx_meta.len();
        if len < fixed || (len - fixed) % 8 != 0 || pack_meta.len() < 12 + 20 {
            return None;
        }
        let (mut recorded, mut trailer) = ([0u8; 20], [0u8; 20]);
        read_exact_at(&idx, &mut recorded, len - 40)?;
        read_exact_at(&pack, &mut trailer, pack_meta.len() - 20)?;
        if recorded != trailer {
            return None;
        }
        let mtime = pack_meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        Some((
            mtime,
            Pack {
                idx,
                pack,
                fanout,
                count,
                end: pack_meta.len() - 20,
            },
        ))
    }

    /// Where the object `id` starts in the pack, by binary search of the index.
    fn offset_of(&self, id: &[u8]) -> Option<u64> {
        let first = *id.first()? as usize;
        let mut lo = if first == 0 {
            0
        } else {
            self.fanout[first - 1]
        };
        let mut hi = self.fanout[first];
        let names = 8 + 256 * 4;
        let mut name = [0u8; 20];
        let at = loop {
            if lo >= hi {
                return None;
            }
            let mid = lo + (hi - lo) / 2;
            read_exact_at(&self.idx, &mut name, names + 20 * mid as u64)?;
            match name[..].cmp(id) {
                std::cmp::Ordering::Equal => break mid,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        };
        // After the names: a CRC per object, then a 4-byte offset per object; offsets with
        // the high bit set index a table of 8-byte offsets.
        let n = u64::from(self.count);
        let offsets = names + 24 * n;
        let mut word = [0u8; 4];
        read_exact_at(&self.idx, &mut word, offsets + 4 * u64::from(at))?;
        let small = u32::from_be_bytes(word);
        if small & 0x8000_0000 == 0 {
            return Some(u64::from(small));
        }
        let mut big = [0u8; 8];
        let large = offsets + 4 * n + 8 * u64::from(small & 0x7fff_ffff);
        read_exact_at(&self.idx, &mut big, large)?;
        Some(u64::from_be_bytes(big))
    }

    /// The header of the entry at `offset`.
    fn entry(&self, offset: u64) -> Option<Entry> {
        let mut head = [0u8; 32];
        let n = read_at_most(&self.pack, &mut head, offset)?;
        let head = &head[..n];
        // Type in bits 4-6 of the first byte, the size in 4 bits then 7 per byte.
        let mut i = 0;
        let first = *head.get(i)?;
        i += 1;
        let kind = (first >> 4) & 7;
        let mut size = u64::from(first & 15);
        let mut shift = 4;
        let mut byte = first;
        while byte & 0x80 != 0 {
            byte = *head.get(i)?;
            i += 1;
            if shift > 56 {
                return None;
            }
            size |= u64::from(byte & 0x7f) << shift;
            shift += 7;
        }
        let size = usize::try_from(size).ok().filter(|&s| s <= MAX_OBJECT)?;
        let kind = match kind {
            3 => Kind::Blob,
            6 => {
                // Offset back to the base: 7 bits per byte, each continuation adding one.
                let mut byte = *head.get(i)?;
                i += 1;
                let mut back = u64::from(byte & 0x7f);
                while byte & 0x80 != 0 {
                    byte = *head.get(i)?;
                    i += 1;
                    back = back.checked_add(1)?.checked_mul(128)? | u64::from(byte & 0x7f);
                }
                if back == 0 || back > offset {
                    return None;
                }
                Kind::OfsDelta(offset - back)
            }
            7 => {
                let id: [u8; 20] = head.get(i..i + 20)?.try_into().ok()?;
                i += 20;
                Kind::RefDelta(id)
            }
            _ => return None, // not a blob: left to libgit2
        };
        Some(Entry {
            kind,
            size,
            data: offset + i as u64,
        })
    }

    /// The zlib stream at `offset`, which must inflate to exactly `size` bytes. The stream is
    /// read whole into `input` (no longer than the most a stream of `size` bytes can take) and
    /// inflated in one call.
    fn inflate(
        &self,
        z: &mut libdeflater::Decompressor,
        input: &mut Vec<u8>,
        offset: u64,
        size: usize,
    ) -> Option<Vec<u8>> {
        // Incompressible data is stored: zlib writes blocks of about 16 KiB with 5 bytes of
        // header each, after its 2-byte header and before its 4-byte checksum. This allows 5
        // bytes per KiB; a longer stream (possible, but no encoder writes one) fails here and
        // is read by libgit2 instead.
        let most = size + size / 1024 * 5 + 64;
        let n = usize::try_from(self.end.checked_sub(offset)?)
            .unwrap_or(usize::MAX)
            .min(most);
        input.clear();
        input.resize(n, 0);
        read_exact_at(&self.pack, input, offset)?;
        let mut out = vec![0u8; size];
        // A stream that inflates to more than `size` does not fit: refused, like one that
        // inflates to less.
        match z.zlib_decompress(input, &mut out) {
            Ok(k) if k == size => Some(out),
            _ => None,
        }
    }
}

/// Applies a git delta to `base`, into `out` (emptied; its allocation is reused).
fn apply_delta(base: &[u8], delta: &[u8], mut out: Vec<u8>) -> Option<Vec<u8>> {
    fn varint(d: &[u8], i: &mut usize) -> Option<usize> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *d.get(*i)?;
            *i += 1;
            if shift > 56 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                return usize::try_from(v).ok();
            }
        }
    }
    let mut i = 0;
    if varint(delta, &mut i)? != base.len() {
        return None;
    }
    let target = varint(delta, &mut i)?;
    if target > MAX_OBJECT {
        return None;
    }
    out.clear();
    out.reserve(target);
    while i < delta.len() {
        let op = delta[i];
        i += 1;
        if op & 0x80 != 0 {
            // Copy from the base: up to 4 offset bytes and 3 size bytes, present by bit.
            let mut off: usize = 0;
            let mut len: usize = 0;
            for k in 0..4 {
                if op & (1 << k) != 0 {
                    off |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            for k in 0..3 {
                if op & (16 << k) != 0 {
                    len |= usize::from(*delta.get(i)?) << (8 * k);
                    i += 1;
                }
            }
            if len == 0 {
                len = 0x10000;
            }
            out.extend_from_slice(base.get(off..off.checked_add(len)?)?);
        } else if op != 0 {
            // Insert the next `op` bytes of the delta.
            let n = usize::from(op);
            out.extend_from_slice(delta.get(i..i + n)?);
            i += n;
        } else {
            return None; // reserved
        }
        if out.len() > target {
            return None;
        }
    }
    (out.len() == target).then_some(out)
}

#[cfg(unix)]
fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match f.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}

#[cfg(not(unix))]
fn read_at_most(_f: &File, _buf: &mut [u8], _offset: u64) -> Option<usize> {
    None // libgit2 reads everything
}

fn read_exact_at(f: &File, buf: &mut [u8], offset: u64) -> Option<()> {
    (read_at_most(f, buf, offset)? == buf.len()).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_copy_and_insert_and_refuse_what_does_not_fit() {
        let base = b"0123456789abcdef";
        // base size 16, target size 9: copy 4 bytes at 10, insert "XY", copy 3 at 0.
        let delta = [16, 9, 0x91, 10, 4, 2, b'X', b'Y', 0x90, 3];
        assert_eq!(apply_delta(base, &delta, Vec::new()).unwrap(), b"abcdXY012");
        // A wrong base size, a copy past the end, a target size that does not match.
        assert!(apply_delta(base, &[15, 9, 0x91, 10, 4], Vec::new()).is_none());
        assert!(apply_delta(base, &[16, 4, 0x91, 14, 4], Vec::new()).is_none());
        assert!(apply_delta(base, &[16, 5, 0x91, 10, 4], Vec::new()).is_none());
        assert!(apply_delta(base, &[16, 1, 0], Vec::new()).is_none());
    }
}
