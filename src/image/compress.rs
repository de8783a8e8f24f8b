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
            // No file name, mtime 0 and the "unknown" OS byte: the header is the same everywhere.
            let mut encoder = flate2::GzBuilder::new().operating_system(255).write(
                Vec::with_capacity(block.len() / 2),
                flate2::Compression::new(GZIP_LEVEL),
            );
            encoder.write_all(block)?;
            encoder.finish()
        }
        Compression::Zstd => zstd::bulk::compress(block, ZSTD_LEVEL),
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
