//! The matmul driver: quantize the activation rows once, then split the weight rows across
//! rayon's global pool (on wasm without a started pool rayon runs everything on the calling
//! thread). With several activation rows (prefill), each weight unit is unpacked once per tile of
//! up to `TILE` rows. Every output is the same sequence of float operations whatever the tiling
//! or the threading, so batched results equal row-by-row ones bit for bit.

use super::idot::{Isa, Portable};
use super::Kernel;
use rayon::prelude::*;

/// Weight rows per parallel task.
const CHUNK: usize = 16;
/// Activation rows sharing each unpacked weight unit (16 measured 0-6% faster than 8 at 64 rows).
const TILE: usize = 16;

pub fn matmul<K: Kernel>(w: &[u8], n: usize, k: usize, x: &[f32], m: usize, out: &mut [f32]) {
    assert!(k.is_multiple_of(K::QK), "row length {k} is not a whole number of {}-value blocks", K::QK);
    let nb = k / K::QK;
    let row_bytes = nb * K::BYTES;
    assert!(w.len() >= n * row_bytes && x.len() >= m * k && out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let nu = nb.div_ceil(K::UNIT);
    let mut act = vec![K::ACT_ZERO; m * nu];
    if m > 1 {
        act.par_chunks_mut(nu).zip(x.par_chunks(k)).for_each(|(a, x)| K::quantize(x, a));
    } else {
        K::quantize(&x[..k], &mut act);
    }
    let act = &act[..];
    if m == 1 {
        out[..n].par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| rows::<K>(w, row_bytes, nu, c * CHUNK, act, 1, o));
        return;
    }
    // Each task computes its weight rows transposed ([weight row][activation row]) and writes
    // them into its own columns of `out` (in parallel: done serially afterwards it was 4% of a
    // single-thread prefill).
    let dst = Columns(out.as_mut_ptr());
    (0..n.div_ceil(CHUNK)).into_par_iter().for_each_init(Vec::new, |t, c| {
        let j0 = c * CHUNK;
        let cols = CHUNK.min(n - j0);
        t.clear();
        t.resize(cols * m, 0f32);
        rows::<K>(w, row_bytes, nu, j0, act, m, t);
        for (jj, col) in t.chunks_exact(m).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                // SAFETY: r < m and j0 + jj < n, inside `out` (checked above: out.len() >= m * n);
                // the columns j0..j0 + cols belong to this task alone.
                unsafe { *dst.at(r * n + j0 + jj) = v };
            }
        }
    });
}

/// `out` shared by the prefill tasks, each writing only its own columns.
#[derive(Clone, Copy)]
struct Columns(*mut f32);

impl Columns {
    /// # Safety
    /// `i` is inside `out`.
    unsafe fn at(self, i: usize) -> *mut f32 {
        // SAFETY: the caller's.
        unsafe { self.0.add(i) }
    }
}
// SAFETY: the tasks write disjoint elements (see `matmul`).
unsafe impl Send for Columns {}
unsafe impl Sync for Columns {}

/// The units of a weight row: whole ones straight from the row, and a last partial one copied
/// into `pad` (zero beyond the row: zero scales).
#[inline(always)]
fn units<'a, K: Kernel>(row: &'a [u8], pad: &'a mut [u8; PAD]) -> impl Iterator<Item = &'a [u8]> {
    let size = K::UNIT * K::BYTES;
    let whole = row.len() / size * size;
    let tail = &row[whole..];
    let last = if tail.is_empty() {
        None
    } else {
        pad[..tail.len()].copy_from_slice(tail);
        pad[tail.len()..size].fill(0);
        Some(&pad[..size])
    };
    row[..whole].chunks_exact(size).chain(last)
}

/// How far ahead decode touches the weights.
const PREFETCH: usize = 4096;

/// Bytes of the largest unit (four Q8_0 blocks: 136; a Q6_K block: 210).
const PAD: usize = 256;

/// out[jj * m + r] = x[r] · w[j0 + jj] for every weight row jj of this task.
fn rows<K: Kernel>(w: &[u8], row_bytes: usize, nu: usize, j0: usize, act: &[K::Act], m: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        unsafe { rows_avx2::<K>(w, row_bytes, nu, j0, act, m, out) };
        return;
    }
    #[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
    return rows_relaxed::<K>(w, row_bytes, nu, j0, act, m, out);
    #[allow(unreachable_code)]
    rows_generic::<K, Portable>(w, row_bytes, nu, j0, act, m, out)
}

/// The relaxed build: the same code with relaxed-SIMD integer dots (same integers). Every kernel
/// function is inlined here, so the relaxed instructions are compiled with their feature.
#[cfg(all(target_family = "wasm", target_feature = "simd128", feature = "relaxed"))]
#[target_feature(enable = "relaxed-simd")]
fn rows_relaxed<K: Kernel>(w: &[u8], row_bytes: usize, nu: usize, j0: usize, act: &[K::Act], m: usize, out: &mut [f32]) {
    rows_generic::<K, super::idot::Relaxed>(w, row_bytes, nu, j0, act, m, out)
}

/// The same code compiled for AVX2, with AVX2 integer dot products (same integers).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn rows_avx2<K: Kernel>(w: &[u8], row_bytes: usize, nu: usize, j0: usize, act: &[K::Act], m: usize, out: &mut [f32]) {
    rows_generic::<K, super::idot::Avx2>(w, row_bytes, nu, j0, act, m, out)
}

#[inline(always)]
fn rows_generic<K: Kernel, I: Isa>(w: &[u8], row_bytes: usize, nu: usize, j0: usize, act: &[K::Act], m: usize, out: &mut [f32]) {
    let (mut pad0, mut pad1) = ([0u8; PAD], [0u8; PAD]);
    let mut touch = 0u8;
    if m == 1 {
        // Decode: each unit is unpacked straight into its dot (nothing held across activation
        // rows, so the compiler keeps it in registers), two weight rows side by side (two
        // independent streams of loads and sums, one activation unit for both); each output
        // gets the same float steps as a tile of one.
        let last = j0 + out.len() - 1;
        let mut pairs = out.chunks_exact_mut(2);
        for (p, o) in (&mut pairs).enumerate() {
            let r0 = &w[(j0 + 2 * p) * row_bytes..][..row_bytes];
            let r1 = &w[(j0 + 2 * p + 1) * row_bytes..][..row_bytes];
            let (mut acc0, mut acc1) = (K::ACC_ZERO, K::ACC_ZERO);
            let base = (j0 + 2 * p) * row_bytes;
            for (i, ((b0, b1), a)) in units::<K>(r0, &mut pad0).zip(units::<K>(r1, &mut pad1)).zip(&act[..nu]).enumerate() {
                // Touch the weights PREFETCH bytes ahead, one byte per cache line consumed: wasm
                // has no prefetch instruction, and without huge pages the hardware prefetchers
                // stop at every 4 KiB page.
                let at = base + 2 * i * K::UNIT * K::BYTES + PREFETCH;
                for l in (0..2 * K::UNIT * K::BYTES).step_by(64) {
                    touch ^= w[(at + l).min(w.len() - 1)];
                }
                K::dot_packed::<I>(b0, a, &mut acc0);
                K::dot_packed::<I>(b1, a, &mut acc1);
            }
            o[0] = K::finish(acc0);
            o[1] = K::finish(acc1);
        }
        if let [o] = pairs.into_remainder() {
            let row = &w[last * row_bytes..][..row_bytes];
            let mut acc = K::ACC_ZERO;
            for (unit, a) in units::<K>(row, &mut pad0).zip(&act[..nu]) {
                K::dot_packed::<I>(unit, a, &mut acc);
            }
            *o = K::finish(acc);
        }
        std::hint::black_box(touch);
        return;
    }
    let mut u = K::unpacked();
    for (jj, o) in out.chunks_exact_mut(m).enumerate() {
        let row = &w[(j0 + jj) * row_bytes..][..row_bytes];
        let mut r0 = 0;
        while r0 < m {
            let t = TILE.min(m - r0);
            let mut acc = [K::ACC_ZERO; TILE];
            for (b, unit) in units::<K>(row, &mut pad0).enumerate() {
                K::unpack(unit, &mut u);
                let a = |i: usize| &act[(r0 + i) * nu + b];
                let mut pairs = acc[..t].chunks_exact_mut(2);
                for (p, c) in (&mut pairs).enumerate() {
                    let [c0, c1] = c else { unreachable!() };
                    K::dot2::<I>(&u, [a(2 * p), a(2 * p + 1)], [c0, c1]);
                }
                if let [c] = pairs.into_remainder() {
                    K::dot::<I>(&u, a(t - 1), c);
                }
            }
            for (o, acc) in o[r0..r0 + t].iter_mut().zip(acc) {
                *o = K::finish(acc);
            }
            r0 += t;
        }
    }
}
