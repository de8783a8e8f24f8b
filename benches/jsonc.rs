//! JSONC parsing of the real-world configs in `testdata/config/corpus`, with spans, as `envc`
//! reads every devcontainer.json.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envc::config::jsonc::Document;

fn corpus() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/config/corpus");
    let mut files = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("the corpus folder is readable") {
            let path = entry.expect("the corpus folder is readable").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&path).expect("corpus files are UTF-8");
                files.push((path, text));
            }
        }
    }
    files.sort();
    files
}

fn parse_corpus(c: &mut Criterion) {
    let files = corpus();
    assert!(!files.is_empty(), "no configs under testdata/config/corpus");
    let bytes: usize = files.iter().map(|(_, text)| text.len()).sum();

    let mut group = c.benchmark_group("jsonc");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("parse {} corpus configs", files.len()), |b| {
        b.iter(|| {
            for (path, text) in &files {
                let document = Document::new(path.clone(), text.clone());
                std::hint::black_box(document.parse().expect("corpus configs parse"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, parse_corpus);
criterion_main!(benches);
