//! Writing and compressing a 100 MB layer from a folder, on one and on two threads: the tar
//! stream, gzip in 1 MiB blocks, both digests and the blob written to a content store.

use std::io::Write;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envc::image::layer::write_layer;
use envc::image::{Compression, LayerOptions};
use envc::store::ContentStore;

/// Size of the layer's content.
const LAYER_BYTES: usize = 100 << 20;

/// Fills `dir` with 100 files of 1 MiB: half text-like, half random, as a mix of sources and
/// binaries or downloaded archives would be.
fn fill(dir: &Path) {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let files = LAYER_BYTES >> 20;
    for index in 0..files {
        let sub = dir.join(format!("d{}", index % 10));
        std::fs::create_dir_all(&sub).unwrap();
        let mut file = std::fs::File::create(sub.join(format!("f{index:03}"))).unwrap();
        let mut block = Vec::with_capacity(1 << 20);
        if index % 2 == 0 {
            while block.len() < 1 << 20 {
                writeln!(
                    block,
                    "line {} of file {index}: value {}",
                    block.len(),
                    random() % 997
                )
                .unwrap();
            }
            block.truncate(1 << 20);
        } else {
            while block.len() < 1 << 20 {
                block.extend_from_slice(&random().to_le_bytes());
            }
        }
        file.write_all(&block).unwrap();
    }
}

fn write_100_mb(c: &mut Criterion) {
    let source = tempfile::tempdir().unwrap();
    fill(source.path());
    let store_dir = tempfile::tempdir().unwrap();
    let tmp = store_dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let store = ContentStore::open(&store_dir.path().join("oci"), &tmp).unwrap();
    let options = LayerOptions {
        compression: Compression::Gzip,
        source_date_epoch: 0,
    };

    let mut group = c.benchmark_group("layer");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(LAYER_BYTES as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        group.bench_function(
            format!("write 100 MB gzip layer on {threads} thread(s)"),
            |b| b.iter(|| pool.install(|| write_layer(source.path(), &options, &store).unwrap())),
        );
    }
    group.finish();
}

criterion_group!(benches, write_100_mb);
criterion_main!(benches);
