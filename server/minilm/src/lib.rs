//! all-MiniLM-L6-v2 (a six-layer BERT) turning word pieces into sentence vectors on the CPU,
//! written for throughput:
//!
//! - **No padding.** The texts of a batch are laid end to end: every step that treats word
//!   pieces one by one (the projections, the feed-forward pair, the norms) runs over all the
//!   batch's pieces as one matrix, and only attention looks at a text on its own. A batch of
//!   mixed lengths costs what its pieces cost, and the products are as large as the batch.
//! - **Matrix products through candle** (its CPU backend calls `gemm`, which picks its kernels
//!   for the CPU at run time and spreads a product over the cores). The query, key and value
//!   projections are one product; weights are transposed once, when the model loads.
//! - **Everything else vectorised for the CPU found at run time** (`pulp` compiles each step
//!   once for AVX2 + FMA and once for plain x86-64 and picks one per call) **and spread over
//!   the cores** (rayon: blocks of rows, or one text's head per task): GELU through an erf
//!   approximation (Abramowitz and Stegun 7.1.26, error below 1e-6 in f32) and softmax through
//!   an exp approximation (error below 3e-7 relative) instead of libm's scalar functions,
//!   attention with its sums in registers (eight independent FMA chains), layer norms and
//!   pooling with eight-lane sums.
//!
//! A pass allocates tens of MB of short-lived buffers (candle's product outputs among them):
//! glibc must be told to keep them in the heap, or every layer faults them in afresh and the
//! pass loses a sixth of its speed or more (the server starts with `GLIBC_TUNABLES` for this,
//! `server::rag::embed::MALLOC_TUNABLES`).
//!
//! The vectors are the mean of the last layer's outputs over the text's pieces, scaled to unit
//! length, as sentence-transformers makes them; they match candle's `BertModel` run on a
//! padded batch to within float rounding (tested).

use candle_core::{DType, Device, Storage, Tensor};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

pub use candle_core::Error;
pub type Result<T> = std::result::Result<T, Error>;

/// The fields of a BERT `config.json` this model reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// A linear layer: `x · w + b`, `w` stored (inputs × outputs), contiguous.
struct Linear {
    w: Tensor,
    b: Vec<f32>,
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value side by side: hidden × 3·hidden.
    qkv: Linear,
    out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

pub struct MiniLm {
    config: Config,
    eps: f32,
    word: Vec<f32>,
    position: Vec<f32>,
    /// Row 0 of the token-type table: every piece of a single sentence has type 0.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    arch: Arch,
}

impl MiniLm {
    /// Loads a BERT checkpoint: `config.json`'s text and `model.safetensors`'s bytes (names
    /// with or without a `bert.` prefix).
    pub fn load(config: &str, safetensors: &[u8]) -> Result<MiniLm> {
        let config: Config = serde_json::from_str(config).map_err(Error::wrap)?;
        if config.hidden_act != "gelu" {
            candle_core::bail!("hidden_act {:?} is not supported", config.hidden_act);
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            candle_core::bail!("hidden_size is not a multiple of num_attention_heads");
        }
        let mut ckpt = Checkpoint {
            tensors: candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)?,
            h: config.hidden_size,
        };
        let h = config.hidden_size;
        let embedding_norm = ckpt.norm("embeddings")?;
        let word = ckpt.vector("embeddings.word_embeddings.weight", config.vocab_size * h)?;
        let position = ckpt.vector(
            "embeddings.position_embeddings.weight",
            config.max_position_embeddings * h,
        )?;
        let types = ckpt
            .take("embeddings.token_type_embeddings.weight")?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let token_type = types
            .get(..h)
            .ok_or_else(|| Error::Msg("token type embeddings are too short".into()))?
            .to_vec();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                qkv: ckpt.linear(
                    &p,
                    &[
                        "attention.self.query",
                        "attention.self.key",
                        "attention.self.value",
                    ],
                    h,
                )?,
                out: ckpt.linear(&p, &["attention.output.dense"], h)?,
                up: ckpt.linear(&p, &["intermediate.dense"], h)?,
                down: ckpt.linear(&p, &["output.dense"], config.intermediate_size)?,
                norm1: ckpt.norm(&format!("{p}.attention.output"))?,
                norm2: ckpt.norm(&format!("{p}.output"))?,
            });
        }
        Ok(MiniLm {
            eps: config.layer_norm_eps as f32,
            config,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
            arch: Arch::new(),
        })
    }

    /// One unit-length vector per text, each text given as its word-piece ids with [CLS] and
    /// [SEP]. The texts are computed together; their lengths may differ.
    pub fn embed(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let h = self.config.hidden_size;
        for ids in texts {
            if ids.is_empty() || ids.len() > self.config.max_position_embeddings {
                candle_core::bail!(
                    "a text has {} word pieces (1 to {} allowed)",
                    ids.len(),
                    self.config.max_position_embeddings
                );
            }
            if let Some(id) = ids
                .iter()
                .find(|id| **id as usize >= self.config.vocab_size)
            {
                candle_core::bail!("word piece {id} is outside the vocabulary");
            }
        }
        let lens: Vec<usize> = texts.iter().map(|ids| ids.len()).collect();
        let n: usize = lens.iter().sum();
        if n == 0 {
            return Ok(Vec::new());
        }

        let mut x = vec![0f32; n * h];
        let mut rows = x.chunks_exact_mut(h);
        for ids in texts {
            for (position, id) in ids.iter().enumerate() {
                if let Some(row) = rows.next() {
                    let id = *id as usize;
                    self.arch.dispatch(AddNorm {
                        out: row,
                        product: &self.word[id * h..(id + 1) * h],
                        bias: &self.position[position * h..(position + 1) * h],
                        residual: &self.token_type,
                        norm: &self.embedding_norm,
                        eps: self.eps,
                    });
                }
            }
        }
        let mut x = Tensor::from_vec(x, (n, h), &Device::Cpu)?;

        for layer in &self.layers {
            let qkv = layer.qkv.product(&x)?;
            let context = read(&qkv, |qkv| self.attention(qkv, &layer.qkv.b, &lens))??;
            let attended = layer.out.product(&context)?;
            x = self.add_and_norm(&attended, &layer.out.b, &x, &layer.norm1)?;
            let up = layer.up.product(&x)?;
            let width = self.config.intermediate_size;
            let inner = read(&up, |up| {
                let mut inner = vec![0f32; up.len()];
                inner
                    .par_chunks_mut(ROWS * width)
                    .zip(up.par_chunks(ROWS * width))
                    .for_each(|(out, up)| {
                        self.arch.dispatch(BiasGelu {
                            out,
                            xs: up,
                            bias: &layer.up.b,
                        })
                    });
                inner
            })?;
            let inner = Tensor::from_vec(inner, (n, width), &Device::Cpu)?;
            let down = layer.down.product(&inner)?;
            x = self.add_and_norm(&down, &layer.down.b, &x, &layer.norm2)?;
        }

        read(&x, |x| {
            let mut vectors = Vec::with_capacity(lens.len());
            let mut start = 0;
            for len in &lens {
                let mut v = vec![0f32; h];
                self.arch.dispatch(MeanUnit {
                    rows: &x[start * h..(start + len) * h],
                    out: &mut v,
                });
                vectors.push(v);
                start += len;
            }
            vectors
        })
    }

    /// `norm(product + bias + residual)`, row by row.
    fn add_and_norm(
        &self,
        product: &Tensor,
        bias: &[f32],
        residual: &Tensor,
        norm: &Norm,
    ) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let out = read(product, |p| {
            read(residual, |r| {
                let mut out = vec![0f32; p.len()];
                out.par_chunks_mut(ROWS * h)
                    .zip(p.par_chunks(ROWS * h).zip(r.par_chunks(ROWS * h)))
                    .for_each(|(out, (p, r))| {
                        self.arch.dispatch(AddNorm {
                            out,
                            product: p,
                            bias,
                            residual: r,
                            norm,
                            eps: self.eps,
                        })
                    });
                out
            })
        })??;
        Tensor::from_vec(out, product.dims2()?, &Device::Cpu)
    }

    /// Self-attention of every text with itself: (n × 3h) query/key/value rows in, (n × h)
    /// context rows out. Each (text, head) pair is one task for the cores.
    fn attention(&self, qkv: &[f32], bias: &[f32], lens: &[usize]) -> Result<Tensor> {
        let h = self.config.hidden_size;
        let heads = self.config.num_attention_heads;
        let d = h / heads;
        let n: usize = lens.iter().sum();
        let mut work = Vec::with_capacity(lens.len() * heads);
        let mut start = 0;
        for len in lens {
            for head in 0..heads {
                work.push((start, *len, head));
            }
            start += len;
        }
        let blocks: Vec<Vec<f32>> = work
            .par_iter()
            .map(|&(start, len, head)| {
                let mut out = vec![0f32; len * d];
                self.arch.dispatch(Attend {
                    qkv: &qkv[start * 3 * h..(start + len) * 3 * h],
                    bias,
                    h,
                    d,
                    head,
                    out: &mut out,
                });
                out
            })
            .collect();
        let mut context = vec![0f32; n * h];
        for ((start, len, head), block) in work.iter().zip(blocks) {
            for (i, piece) in block.chunks_exact(d).enumerate().take(*len) {
                let at = (start + i) * h + head * d;
                context[at..at + d].copy_from_slice(piece);
            }
        }
        Tensor::from_vec(context, (n, h), &Device::Cpu)
    }
}

/// The tensors of a checkpoint, taken out by name as the model is built.
struct Checkpoint {
    tensors: std::collections::HashMap<String, Tensor>,
    h: usize,
}

impl Checkpoint {
    fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors
            .remove(name)
            .or_else(|| self.tensors.remove(&format!("bert.{name}")))
            .ok_or_else(|| Error::Msg(format!("the checkpoint has no tensor {name}")))?
            .to_dtype(DType::F32)
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>> {
        let v = self.take(name)?.flatten_all()?.to_vec1::<f32>()?;
        if v.len() != len {
            candle_core::bail!("{name} holds {} values, expected {len}", v.len());
        }
        Ok(v)
    }

    fn norm(&mut self, prefix: &str) -> Result<Norm> {
        Ok(Norm {
            gamma: self.vector(&format!("{prefix}.LayerNorm.weight"), self.h)?,
            beta: self.vector(&format!("{prefix}.LayerNorm.bias"), self.h)?,
        })
    }

    /// The linear layers `names` under `prefix`, side by side: inputs × (their outputs).
    fn linear(&mut self, prefix: &str, names: &[&str], inputs: usize) -> Result<Linear> {
        let mut ws = Vec::new();
        let mut b = Vec::new();
        for name in names {
            let w = self.take(&format!("{prefix}.{name}.weight"))?;
            if w.dims2()?.1 != inputs {
                candle_core::bail!("{prefix}.{name}.weight has shape {:?}", w.dims());
            }
            ws.push(w.t()?);
            b.extend(
                self.take(&format!("{prefix}.{name}.bias"))?
                    .to_vec1::<f32>()?,
            );
        }
        let w = Tensor::cat(&ws, 1)?.contiguous()?;
        if w.dims2()?.1 != b.len() {
            candle_core::bail!("{prefix}: weights and biases disagree");
        }
        Ok(Linear { w, b })
    }
}

impl Linear {
    /// `x · w` (the bias is added by the caller, together with what follows).
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.w)
    }
}

/// Floating-point operations a BERT of `layers` layers of width `hidden` (feed-forward 4 ×
/// wider) spends on one text of `tokens` word pieces, per layer: the query, key, value and
/// output projections (8·L·h²), the attention scores and their weighted sum (4·L²·h) and the
/// feed-forward pair (16·L·h²). Look-ups, norms, softmax and pooling are left out.
pub fn flops(layers: usize, hidden: usize, tokens: usize) -> f64 {
    let (l, h) = (tokens as f64, hidden as f64);
    layers as f64 * (24.0 * l * h * h + 4.0 * l * l * h)
}

/// This machine's f32 matrix-multiply rate in GFLOP/s through the kernels the model's products
/// run on (candle's CPU backend, all its threads): an (m × k)·(k × n) product of random
/// values, repeated for `window` after one untimed run.
pub fn matmul_gflops(m: usize, k: usize, n: usize, window: std::time::Duration) -> Result<f64> {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
    a.matmul(&b)?;
    let started = std::time::Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < window {
        a.matmul(&b)?;
        calls += 1;
    }
    let flops = 2.0 * (m * k * n) as f64;
    Ok(flops * f64::from(calls) / started.elapsed().as_secs_f64() / 1e9)
}

/// Runs `f` on a contiguous f32 tensor's values in place (no copy).
fn read<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        candle_core::bail!("the model runs on the CPU");
    };
    let values = cpu.as_slice::<f32>()?;
    let Some((from, to)) = layout.contiguous_offsets() else {
        candle_core::bail!("a tensor is not contiguous");
    };
    Ok(f(&values[from..to]))
}

// The element-wise kernels. Each is a `WithSimd` so `Arch::dispatch` inlines it into a copy
// compiled for the CPU's vector instructions; the loops are written so the compiler vectorises
// them (independent lanes, sums over eight accumulators, no branches in the hot loops).

const LANES: usize = 8;

/// Rows of an element-wise step given to one core at a time.
const ROWS: usize = 16;

/// Sum of `f` over a slice, with eight independent accumulators (vectorises, unlike a plain
/// fold).
#[inline(always)]
fn sum_of(xs: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for c in &mut chunks {
        for k in 0..LANES {
            acc[k] += f(c[k]);
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().map(|x| f(*x)).sum::<f32>()
}

#[inline(always)]
fn sum(xs: &[f32]) -> f32 {
    sum_of(xs, |x| x)
}

#[inline(always)]
fn sum_of_squares(xs: &[f32]) -> f32 {
    sum_of(xs, |x| x * x)
}

/// Layer norm of one row in place: `(x - mean) / sqrt(var + eps) · gamma + beta`.
#[inline(always)]
fn layer_norm(row: &mut [f32], norm: &Norm, eps: f32) {
    let len = row.len() as f32;
    let mean = sum(row) / len;
    for x in row.iter_mut() {
        *x -= mean;
    }
    let var = sum_of_squares(row) / len;
    let scale = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
        *x = *x * scale * g + b;
    }
}

/// `out = norm(product + bias + residual)` over a block of rows (`bias` is one row, the same
/// for each). A piece's embedding is one such row: word + position + token type.
struct AddNorm<'a> {
    out: &'a mut [f32],
    product: &'a [f32],
    bias: &'a [f32],
    residual: &'a [f32],
    norm: &'a Norm,
    eps: f32,
}

impl WithSimd for AddNorm<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let h = self.bias.len();
        for ((out, p), r) in self
            .out
            .chunks_exact_mut(h)
            .zip(self.product.chunks_exact(h))
            .zip(self.residual.chunks_exact(h))
        {
            for (((o, p), b), r) in out.iter_mut().zip(p).zip(self.bias).zip(r) {
                *o = p + b + r;
            }
            layer_norm(out, self.norm, self.eps);
        }
    }
}

/// `out = gelu(xs + bias)` over a block of rows.
struct BiasGelu<'a> {
    out: &'a mut [f32],
    xs: &'a [f32],
    bias: &'a [f32],
}

impl WithSimd for BiasGelu<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let w = self.bias.len();
        for (out, xs) in self.out.chunks_exact_mut(w).zip(self.xs.chunks_exact(w)) {
            for ((o, x), b) in out.iter_mut().zip(xs).zip(self.bias) {
                *o = gelu(x + b);
            }
        }
    }
}

/// `x · Φ(x)` with the exact (erf) form BERT was trained with.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf by Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7 in exact arithmetic and
/// 1e-6 in f32 (tested), no branches.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let y = 1.0 - poly * exp(-a * a);
    y.copysign(x)
}

/// e^x for x in [-87, 88] (clamped outside): 2^n · e^r with r = x - n·ln 2 in [-ln2/2, ln2/2]
/// and a degree-6 Taylor polynomial for e^r (relative error below 3e-7). No branches.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // n is in [-126, 127]: the exponent bits of 2^n.
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// One head of one text: softmax(q·kᵀ / √d) · v for each of its pieces.
struct Attend<'a> {
    /// The text's rows of query | key | value (3·h values each), their bias not yet added.
    qkv: &'a [f32],
    bias: &'a [f32],
    h: usize,
    d: usize,
    head: usize,
    /// len × d.
    out: &'a mut [f32],
}

impl WithSimd for Attend<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Attend {
            qkv,
            bias,
            h,
            d,
            head,
            out,
        } = self;
        let len = qkv.len() / (3 * h);
        let q_at = head * d;
        let k_at = h + head * d;
        let v_at = 2 * h + head * d;
        // Keys transposed (d rows of `stride` ≥ len, zero past len) so a row of scores is a
        // sum of d scaled key rows, each a whole number of blocks of eight vectors; values
        // gathered (len × d).
        let lanes = std::mem::size_of::<S::f32s>() / std::mem::size_of::<f32>();
        let stride = len.next_multiple_of(8 * lanes);
        let mut keys = vec![0f32; d * stride];
        let mut values = vec![0f32; len * d];
        for (j, row) in qkv.chunks_exact(3 * h).enumerate() {
            for (c, (k, b)) in row[k_at..k_at + d].iter().zip(&bias[k_at..]).enumerate() {
                keys[c * stride + j] = k + b;
            }
            for ((v, x), b) in values[j * d..(j + 1) * d]
                .iter_mut()
                .zip(&row[v_at..v_at + d])
                .zip(&bias[v_at..])
            {
                *v = x + b;
            }
        }
        let key_rows: Vec<&[S::f32s]> = keys
            .chunks_exact(stride)
            .map(|row| S::as_simd_f32s(row).0)
            .collect();
        let scale = 1.0 / (d as f32).sqrt();
        let mut query = vec![0f32; d];
        let mut scores = vec![0f32; stride];
        let zero = simd.splat_f32s(0.0);
        for (row, o) in qkv.chunks_exact(3 * h).zip(out.chunks_exact_mut(d)) {
            for ((q, x), b) in query
                .iter_mut()
                .zip(&row[q_at..q_at + d])
                .zip(&bias[q_at..])
            {
                *q = (x + b) * scale;
            }
            // Scores eight vectors at a time, their sums held in registers across the d key
            // rows: eight independent chains keep both FMA units busy (an FMA takes four
            // cycles, two start per cycle), and named accumulators stay in registers where an
            // array indexed in a loop would live on the stack.
            let (blocks, _) = S::as_mut_simd_f32s(&mut scores);
            for (b, block) in blocks.chunks_exact_mut(8).enumerate() {
                let mut a = [zero; 8];
                let [a0, a1, a2, a3, a4, a5, a6, a7] = &mut a;
                for (q, keys) in query.iter().zip(&key_rows) {
                    let q = simd.splat_f32s(*q);
                    let k = &keys[8 * b..8 * b + 8];
                    *a0 = simd.mul_add_e_f32s(q, k[0], *a0);
                    *a1 = simd.mul_add_e_f32s(q, k[1], *a1);
                    *a2 = simd.mul_add_e_f32s(q, k[2], *a2);
                    *a3 = simd.mul_add_e_f32s(q, k[3], *a3);
                    *a4 = simd.mul_add_e_f32s(q, k[4], *a4);
                    *a5 = simd.mul_add_e_f32s(q, k[5], *a5);
                    *a6 = simd.mul_add_e_f32s(q, k[6], *a6);
                    *a7 = simd.mul_add_e_f32s(q, k[7], *a7);
                }
                block.copy_from_slice(&a);
            }
            let scores = &mut scores[..len];
            let mut top = [f32::MIN; LANES];
            let mut chunks = scores.chunks_exact(LANES);
            for c in &mut chunks {
                for k in 0..LANES {
                    top[k] = top[k].max(c[k]);
                }
            }
            let max = chunks
                .remainder()
                .iter()
                .chain(&top)
                .fold(f32::MIN, |m, s| m.max(*s));
            for s in scores.iter_mut() {
                *s = exp(*s - max);
            }
            let total = sum(scores);
            let weight = simd.splat_f32s(1.0 / total);
            // The weighted sum of the value rows: four vectors at a time in registers, value
            // rows taken two at a time into two sets of sums (eight chains, as above), then
            // one vector at a time, then what is left of a head that is not whole vectors.
            let (vectors, _) = S::as_mut_simd_f32s(o);
            let done = vectors.len() / 4 * 4;
            for (b, block) in vectors.chunks_exact_mut(4).enumerate() {
                let mut a = [zero; 8];
                let [a0, a1, a2, a3, a4, a5, a6, a7] = &mut a;
                let mut pairs = scores.chunks_exact(2).zip(values.chunks_exact(2 * d));
                for (p, v) in &mut pairs {
                    let (p0, p1) = (simd.splat_f32s(p[0]), simd.splat_f32s(p[1]));
                    let v0 = &S::as_simd_f32s(&v[..d]).0[4 * b..4 * b + 4];
                    let v1 = &S::as_simd_f32s(&v[d..]).0[4 * b..4 * b + 4];
                    *a0 = simd.mul_add_e_f32s(p0, v0[0], *a0);
                    *a1 = simd.mul_add_e_f32s(p0, v0[1], *a1);
                    *a2 = simd.mul_add_e_f32s(p0, v0[2], *a2);
                    *a3 = simd.mul_add_e_f32s(p0, v0[3], *a3);
                    *a4 = simd.mul_add_e_f32s(p1, v1[0], *a4);
                    *a5 = simd.mul_add_e_f32s(p1, v1[1], *a5);
                    *a6 = simd.mul_add_e_f32s(p1, v1[2], *a6);
                    *a7 = simd.mul_add_e_f32s(p1, v1[3], *a7);
                }
                if len % 2 == 1 {
                    let p = simd.splat_f32s(scores[len - 1]);
                    let v = &S::as_simd_f32s(&values[(len - 1) * d..]).0[4 * b..4 * b + 4];
                    *a0 = simd.mul_add_e_f32s(p, v[0], *a0);
                    *a1 = simd.mul_add_e_f32s(p, v[1], *a1);
                    *a2 = simd.mul_add_e_f32s(p, v[2], *a2);
                    *a3 = simd.mul_add_e_f32s(p, v[3], *a3);
                }
                block.copy_from_slice(&[
                    simd.mul_f32s(simd.add_f32s(*a0, *a4), weight),
                    simd.mul_f32s(simd.add_f32s(*a1, *a5), weight),
                    simd.mul_f32s(simd.add_f32s(*a2, *a6), weight),
                    simd.mul_f32s(simd.add_f32s(*a3, *a7), weight),
                ]);
            }
            let (vectors, tail) = S::as_mut_simd_f32s(o);
            for (i, out) in vectors.iter_mut().enumerate().skip(done) {
                let mut a = zero;
                for (p, v) in scores.iter().zip(values.chunks_exact(d)) {
                    a = simd.mul_add_e_f32s(simd.splat_f32s(*p), S::as_simd_f32s(v).0[i], a);
                }
                *out = simd.mul_f32s(a, weight);
            }
            let first = d - tail.len();
            for (t, o) in tail.iter_mut().enumerate() {
                let c = first + t;
                *o = scores
                    .iter()
                    .zip(values.chunks_exact(d))
                    .map(|(p, v)| p * v[c])
                    .sum::<f32>()
                    / total;
            }
        }
    }
}

/// Mean of a text's rows, scaled to unit length.
struct MeanUnit<'a> {
    rows: &'a [f32],
    out: &'a mut [f32],
}

impl WithSimd for MeanUnit<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _: S) {
        let h = self.out.len();
        for row in self.rows.chunks_exact(h) {
            for (o, x) in self.out.iter_mut().zip(row) {
                *o += x;
            }
        }
        let squares = sum_of_squares(self.out);
        // The mean's length is the sum's divided by the count: scaling the sum to unit length
        // gives the same vector.
        let scale = if squares > 0.0 {
            1.0 / squares.sqrt()
        } else {
            0.0
        };
        for o in self.out.iter_mut() {
            *o *= scale;
        }
    }
}

#[cfg(test)]
mod tests;
