//! The fast forward pass against candle's own `BertModel` (padded batch, attention mask, mean
//! over the mask, unit length: what the server ran before), on a small random model always and
//! on all-MiniLM-L6-v2 itself when its files are there (`make models`).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::MiniLm;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};

/// What the server computed with candle: pad to the longest, mask, mean, unit length.
fn reference(model: &BertModel, texts: &[&[u32]]) -> Vec<Vec<f32>> {
    let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
    let mut ids = Vec::new();
    let mut masks = Vec::new();
    for t in texts {
        ids.extend_from_slice(t);
        ids.extend(std::iter::repeat_n(0u32, longest - t.len()));
        masks.extend(std::iter::repeat_n(1u32, t.len()));
        masks.extend(std::iter::repeat_n(0u32, longest - t.len()));
    }
    let ids = Tensor::from_vec(ids, (texts.len(), longest), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(masks, (texts.len(), longest), &Device::Cpu).unwrap();
    let hidden = model
        .forward(&ids, &ids.zeros_like().unwrap(), Some(&mask))
        .unwrap();
    let mask = mask.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
    let summed = hidden.broadcast_mul(&mask).unwrap().sum(1).unwrap();
    let mean = summed.broadcast_div(&mask.sum(1).unwrap()).unwrap();
    let norm = mean.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap();
    mean.broadcast_div(&norm).unwrap().to_vec2::<f32>().unwrap()
}

fn compare(config: &str, weights: &[u8], texts: &[&[u32]]) -> f32 {
    let ours = MiniLm::load(config, weights).unwrap();
    let bert_config: BertConfig = serde_json::from_str(config).unwrap();
    let vb =
        VarBuilder::from_buffered_safetensors(weights.to_vec(), DType::F32, &Device::Cpu).unwrap();
    let theirs = BertModel::load(vb, &bert_config).unwrap();
    let got = ours.embed(texts).unwrap();
    let want = reference(&theirs, texts);
    assert_eq!(got.len(), texts.len());
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len());
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not unit length: {norm}");
        for (a, b) in g.iter().zip(w) {
            worst = worst.max((a - b).abs());
        }
    }
    worst
}

/// Texts of the given lengths: [CLS] (101), ids from a fixed sequence, [SEP] (102).
fn texts(lengths: &[usize], vocab: u32) -> Vec<Vec<u32>> {
    let mut seed = 12345u32;
    lengths
        .iter()
        .map(|len| {
            let mut t = vec![101 % vocab];
            while t.len() + 1 < *len {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                t.push((seed >> 8) % vocab);
            }
            t.push(102 % vocab);
            t
        })
        .collect()
}

#[test]
fn a_random_model_gives_what_candles_bert_gives() {
    // Heads of 15 values: a whole vector and a tail on AVX2.
    let (vocab, h, layers, heads, inter, positions) = (200usize, 60usize, 2, 4, 128usize, 80);
    let config = format!(
        r#"{{"vocab_size":{vocab},"hidden_size":{h},"num_hidden_layers":{layers},
        "num_attention_heads":{heads},"intermediate_size":{inter},"hidden_act":"gelu",
        "hidden_dropout_prob":0.1,"max_position_embeddings":{positions},"type_vocab_size":2,
        "initializer_range":0.02,"layer_norm_eps":1e-12,"pad_token_id":0,
        "classifier_dropout":null,"model_type":"bert"}}"#
    );
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, shape: &[usize], scale: f32, offset: f32| {
        let t =
            (Tensor::randn(0f32, scale, shape, &Device::Cpu).unwrap() + f64::from(offset)).unwrap();
        tensors.insert(name, t);
    };
    put(
        "embeddings.word_embeddings.weight".into(),
        &[vocab, h],
        0.5,
        0.0,
    );
    put(
        "embeddings.position_embeddings.weight".into(),
        &[positions, h],
        0.5,
        0.0,
    );
    put(
        "embeddings.token_type_embeddings.weight".into(),
        &[2, h],
        0.5,
        0.0,
    );
    put("embeddings.LayerNorm.weight".into(), &[h], 0.1, 1.0);
    put("embeddings.LayerNorm.bias".into(), &[h], 0.1, 0.0);
    for i in 0..layers {
        let p = format!("encoder.layer.{i}");
        for (name, out, input) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", inter, h),
            ("output.dense", h, inter),
        ] {
            put(format!("{p}.{name}.weight"), &[out, input], 0.2, 0.0);
            put(format!("{p}.{name}.bias"), &[out], 0.1, 0.0);
        }
        for norm in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{p}.{norm}.weight"), &[h], 0.1, 1.0);
            put(format!("{p}.{norm}.bias"), &[h], 0.1, 0.0);
        }
    }
    let path = std::env::temp_dir().join(format!("minilm-test-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(&tensors, &path).unwrap();
    let weights = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();

    // Mixed lengths in one batch (the one-piece text is all [CLS]), and each alone.
    let batch = texts(&[3, 17, 1, 80, 40], vocab as u32);
    let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
    let worst = compare(&config, &weights, &refs);
    assert!(worst < 2e-5, "largest difference {worst}");
    for t in &refs {
        assert!(compare(&config, &weights, &[t]) < 2e-5);
    }

    // Bad input is refused, not a panic.
    let model = MiniLm::load(&config, &weights).unwrap();
    assert!(model.embed(&[&[]]).is_err());
    assert!(model.embed(&[&[7u32; 81]]).is_err());
    assert!(model.embed(&[&[200u32]]).is_err());
    assert!(model.embed(&[]).unwrap().is_empty());
    assert!(MiniLm::load(&config.replace("\"gelu\"", "\"relu\""), &weights).is_err());
    assert!(MiniLm::load(&config, &weights[..weights.len() / 2]).is_err());
}

#[test]
fn all_minilm_l6_v2_gives_what_candles_bert_gives() {
    let dir = std::env::var_os("EMBEDDING_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/models/all-MiniLM-L6-v2")
        });
    let (Ok(config), Ok(weights)) = (
        std::fs::read_to_string(dir.join("config.json")),
        std::fs::read(dir.join("model.safetensors")),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no model in {}",
            dir.display()
        );
        eprintln!("SKIPPED: no model in {} (make models)", dir.display());
        return;
    };
    let batch = texts(&[2, 9, 26, 130, 256, 64], 30522);
    let refs: Vec<&[u32]> = batch.iter().map(Vec::as_slice).collect();
    let worst = compare(&config, &weights, &refs);
    assert!(worst < 2e-5, "largest difference {worst}");
}

#[test]
fn exp_and_erf_approximations_hold_their_bounds() {
    let mut x = -87.0f32;
    while x < 88.0 {
        let (got, want) = (crate::exp(x), x.exp());
        assert!(
            ((got - want) / want).abs() < 3e-7,
            "exp({x}) = {got}, not {want}"
        );
        x += 0.013;
    }
    assert_eq!(crate::exp(-1000.0), crate::exp(-87.0), "clamped");
    let mut x = -6.0f32;
    while x < 6.0 {
        let want = candle_core::cpu::erf::erf_f64(f64::from(x)) as f32;
        let got = crate::erf(x);
        assert!((got - want).abs() < 1e-6, "erf({x}) = {got}, not {want}");
        x += 0.0007;
    }
}
