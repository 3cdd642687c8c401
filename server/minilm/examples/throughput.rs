//! This forward pass and candle's `BertModel` on the same batches, against the machine's f32
//! matrix-multiply rate, with the allocator settings the server runs with
//! (`server::rag::embed::MALLOC_TUNABLES`):
//!
//! ```text
//! GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=134217728 \
//!   cargo run --release -p minilm --example throughput -- data/models/all-MiniLM-L6-v2 [ours|shapes]
//! ```
//!
//! `ours` leaves candle's model out; `shapes` times each product of the model alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("model folder"));
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let ours = minilm::MiniLm::load(&config, &weights).unwrap();
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu).unwrap();
    let theirs = BertModel::load(vb, &serde_json::from_str::<Config>(&config).unwrap()).unwrap();

    let limit = minilm::matmul_gflops(2048, 384, 1536, Duration::from_secs(3)).unwrap();
    println!("matmul limit: {limit:.1} GFLOP/s");
    if std::env::args().nth(2).as_deref() == Some("shapes") {
        for (m, k, n) in [
            (2048, 384, 1536),
            (2048, 384, 1152),
            (2048, 384, 384),
            (2048, 1536, 384),
            (26, 384, 1536),
            (208, 384, 1536),
        ] {
            let rate = minilm::matmul_gflops(m, k, n, Duration::from_secs(2)).unwrap();
            println!(
                "{m}x{k} · {k}x{n}: {rate:.1} GFLOP/s ({:.0} %)",
                100.0 * rate / limit
            );
        }
        return;
    }
    for (name, lengths) in [
        ("8 chunks of 256", vec![256usize; 8]),
        ("12 chunks of 174", vec![174; 12]),
        ("24 chunks of 174", vec![174; 24]),
        ("48 chunks of 174", vec![174; 48]),
        ("one query of 26", vec![26]),
        ("8 queries of 26", vec![26; 8]),
    ] {
        let texts: Vec<Vec<u32>> = lengths
            .iter()
            .enumerate()
            .map(|(i, len)| {
                (0..*len as u32)
                    .map(|j| 1000 + (i as u32 * 7 + j * 13) % 20000)
                    .collect()
            })
            .collect();
        let refs: Vec<&[u32]> = texts.iter().map(Vec::as_slice).collect();
        let work: f64 = lengths.iter().map(|l| minilm::flops(6, 384, *l)).sum();
        let time = |f: &dyn Fn()| {
            f();
            let started = Instant::now();
            let mut runs = 0u32;
            while started.elapsed() < Duration::from_secs(4) {
                f();
                runs += 1;
            }
            started.elapsed().as_secs_f64() / f64::from(runs)
        };
        let ours_s = time(&|| {
            ours.embed(&refs).unwrap();
        });
        if std::env::args().nth(2).as_deref() == Some("ours") {
            println!(
                "{name}: ours {:.2} ms ({:.1} GFLOP/s, {:.0} % of the limit)",
                ours_s * 1e3,
                work / ours_s / 1e9,
                100.0 * work / ours_s / 1e9 / limit
            );
            continue;
        }
        let ids =
            Tensor::from_vec(texts.concat(), (texts.len(), lengths[0]), &Device::Cpu).unwrap();
        let theirs_s = time(&|| {
            theirs
                .forward(&ids, &ids.zeros_like().unwrap(), None)
                .unwrap();
        });
        println!(
            "{name}: ours {:.2} ms ({:.1} GFLOP/s, {:.0} % of the limit); candle's BertModel {:.2} ms ({:.0} %)",
            ours_s * 1e3,
            work / ours_s / 1e9,
            100.0 * work / ours_s / 1e9 / limit,
            theirs_s * 1e3,
            100.0 * work / theirs_s / 1e9 / limit,
        );
    }
}
