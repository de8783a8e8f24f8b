//! Block-parallel compression whose output does not depend on the number of cores.
//!
//! The input is cut into blocks of a fixed size and each block is compressed on its own, at a
//! fixed level, into a complete gzip member or zstd frame. Members and frames are concatenated
//! in input order; every gzip and zstd reader accepts such a stream. Because block boundaries
//! depend only on the input, one thread and many threads produce the same bytes. Blocks are
//! compressed in batches on the current rayon pool.

use std::io::{self, Write};

use rayon::prelude::*;

use super::Compression;

/// Bytes of input per gzip member: 1 MiB, the block size apko uses with `pgzip`.
const GZIP_BLOCK: usize = 1 << 20;
/// Bytes of input per zstd frame, larger than gzip's because zstd gains from a larger window.
const ZSTD_BLOCK: usize = 4 << 20;
/// zlib level 6, the usual default.
const GZIP_LEVEL: u32 = 6;
/// A gzip block whose level-1 deflate output is at least this share of its size, in tenths, is
/// stored uncompressed instead.
const STORE_AT_TENTHS: usize = 9;
/// zstd's default level.
const ZSTD_LEVEL: i32 = 3;

/// A writer that compresses what it is given and writes the result to `out`.
pub(crate) struct ParallelCompressor<W: Write> {
    compression: Compression,
    block_size: usize,
    buf: Vec<u8>,
    pending: Vec<Vec<u8>>,
    emitted: bool,
    out: W,
}

impl<W: Write> ParallelCompressor<W> {
    pub(crate) fn new(compression: Compression, out: W) -> Self {
        let block_size = match compression {
            Compression::Gzip => GZIP_BLOCK,
            Compression::Zstd => ZSTD_BLOCK,
        };
        ParallelCompressor {
            compression,
            block_size,
            buf: Vec::with_capacity(block_size),
            pending: Vec::new(),
            emitted: false,
            out,
        }
    }

    /// Compresses what is left and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        // An empty input still becomes one (empty) member, so the blob is a valid stream.
        if !self.buf.is_empty() || (!self.emitted && self.pending.is_empty()) {
            let block = std::mem::take(&mut self.buf);
            self.pending.push(block);
        }
        self.flush_batch()?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn batch_len() -> usize {
        // How many blocks wait for a parallel pass; only memory and speed depend on it.
        (rayon::current_num_threads() * 2).max(2)
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let compression = self.compression;
        let compressed: Vec<Vec<u8>> = self
            .pending
            .par_iter()
            .map(|block| compress_block(compression, block))
            .collect::<io::Result<_>>()?;
        self.pending.clear();
        for chunk in compressed {
            self.out.write_all(&chunk)?;
        }
        self.emitted = true;
        Ok(())
    }
}

impl<W: Write> Write for ParallelCompressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == self.block_size {
            let block = std::mem::replace(&mut self.buf, Vec::with_capacity(self.block_size));
            self.pending.push(block);
            if self.pending.len() >= Self::batch_len() {
                self.flush_batch()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing must not cut a block early, or the output would depend on flush calls.
        Ok(())
    }
}

fn compress_block(compression: Compression, block: &[u8]) -> io::Result<Vec<u8>> {
    match compression {
        Compression::Gzip => {
            // Random or already compressed data gains nothing from level 6, which is several
            // times slower on it than a trial at level 1. The choice depends only on the block.
            let level = if is_incompressible(block) {
                flate2::Compression::none()
            } else {
                flate2::Compression::new(GZIP_LEVEL)
            };
            // No file name, mtime 0 and the "unknown" OS byte: the header is the same everywhere.
            let mut encoder = flate2::GzBuilder::new()
                .operating_system(255)
                .write(Vec::with_capacity(block.len() / 2), level);
            encoder.write_all(block)?;
            encoder.finish()
        }
        Compression::Zstd => zstd::bulk::compress(block, ZSTD_LEVEL),
    }
}

/// Whether deflate at level 1 leaves `block` at [`STORE_AT_TENTHS`] or more of its size.
fn is_incompressible(block: &[u8]) -> bool {
    if block.is_empty() {
        return false;
    }
    let limit = block.len() / 10 * STORE_AT_TENTHS;
    let mut deflate = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(limit);
    match deflate.compress_vec(block, &mut out, flate2::FlushCompress::Finish) {
        // Finished within the limit: the block compresses well enough for level 6.
        Ok(flate2::Status::StreamEnd) => false,
        // The output reached the limit first, or deflate failed: store the block.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: a counter pattern with some noise.
        (0..len)
            .map(|i| ((i / 7) as u8).wrapping_mul(31) ^ (i % 13) as u8)
            .collect()
    }

    fn compress_with_threads(compression: Compression, data: &[u8], threads: usize) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut c = ParallelCompressor::new(compression, Vec::new());
            // Odd write sizes, so block cutting is exercised across calls.
            for chunk in data.chunks(70_001) {
                c.write_all(chunk).unwrap();
            }
            c.finish().unwrap()
        })
    }

    #[test]
    fn gzip_output_is_the_same_for_one_and_two_threads_and_decodes() {
        let data = sample(3 * GZIP_BLOCK + 12_345);
        let one = compress_with_threads(Compression::Gzip, &data, 1);
        let two = compress_with_threads(Compression::Gzip, &data, 2);
        assert_eq!(one, two);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn zstd_output_is_the_same_for_one_and_two_threads_and_decodes() {
        let data = sample(2 * ZSTD_BLOCK + 999);
        let one = compress_with_threads(Compression::Zstd, &data, 1);
        let two = compress_with_threads(Compression::Zstd, &data, 2);
        assert_eq!(one, two);
        let back = zstd::stream::decode_all(&one[..]).unwrap();
        assert_eq!(back, data);
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn random_blocks_are_stored_and_text_is_compressed() {
        assert!(is_incompressible(&noise(GZIP_BLOCK)));
        assert!(!is_incompressible(&sample(GZIP_BLOCK)));
        assert!(!is_incompressible(&[]));
    }

    #[test]
    fn mixed_random_and_text_decodes_the_same_on_any_thread_count() {
        let mut data = noise(2 * GZIP_BLOCK);
        data.extend(sample(GZIP_BLOCK + 77));
        let one = compress_with_threads(Compression::Gzip, &data, 1);
        let two = compress_with_threads(Compression::Gzip, &data, 2);
        assert_eq!(one, two);
        // Stored random blocks cost a few bytes each; the text block shrinks.
        assert!(one.len() < 2 * GZIP_BLOCK + GZIP_BLOCK / 2, "{}", one.len());
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn empty_input_is_one_valid_member() {
        let out = compress_with_threads(Compression::Gzip, &[], 1);
        assert!(!out.is_empty());
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
