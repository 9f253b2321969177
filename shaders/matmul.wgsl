// matmul.wgsl — prefill matrix product Y[t] = W X[t] for the step's tokens: (16 TM) rows x (16 TN)
// tokens per workgroup of 256 threads, each thread TM x TN outputs, K in steps of 32 through
// workgroup memory. Weights are dequantized once per tile (dequant.wgsl); results go through
// epilogue.wgsl, and rope partners and gate/up pairs (adjacent rows) land in the same thread.
// Constants: K, N, ROWBYTES, ROW0, WROW0, XSTRIDE (floats), YSTRIDE, Y_OFF, TM, TN (4 or 8).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> VEC: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
#ifdef EPI_QKV
@group(0) @binding(5) var<storage, read_write> KC: array<f32>;
@group(0) @binding(6) var<storage, read_write> VC: array<f32>;
#endif

#include "dequant.wgsl"
#include "epilogue.wgsl"

const BM: u32 = 16u * TM; // rows per workgroup: a 16 x 16 grid of threads, TM x TN outputs each
const BN: u32 = 16u * TN; // tokens per workgroup
const BK: u32 = 32u;
const GPR: u32 = BK / GS; // weight groups per tile row
var<workgroup> Ws: array<vec4<AT>, BK * BM / 4u>; // [BK][BM / 4]
var<workgroup> Xs: array<vec4<AT>, BK * BN / 4u>; // [BK][BN / 4]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;
  let T = P.n_tokens;
  let tm = li % 16u;
  let tn = li / 16u;
  // acc[j][i / 4][i % 4]: row tm * 4 + (i / 4) * 64 + i % 4, token tn * TN + j. Rows of a thread
  // come in groups of four 64 apart so the vec4 reads of Ws stay consecutive across threads.
  var acc: array<array<vec4<f32>, TM / 4u>, TN>;
  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var e = li; e < BM * GPR; e += 256u) {
      let m = e / GPR;
      let gi = e % GPR;
      let kq = k0 / GS + gi;
      var w: array<vec4<AT>, GS / 4u>;
      if (m0 + m < N && kq < K / GS) { w = dqg(wrow_byte(ROW0 + m0 + m), kq); }
      for (var i = 0u; i < GS / 4u; i++) {
        let kk = gi * GS + i * 4u;
        for (var c = 0u; c < 4u; c++) { Ws[(kk + c) * (BM / 4u) + m / 4u][m % 4u] = w[i][c]; }
      }
    }
    for (var e = li; e < BN * (BK / 4u); e += 256u) {
      let n = e / (BK / 4u);
      let kv = e % (BK / 4u);
      var x = vec4<f32>(0.0);
      if (n0 + n < T && k0 + kv * 4u < K) { x = X[((n0 + n) * XSTRIDE + k0) / 4u + kv]; }
      for (var c = 0u; c < 4u; c++) { Xs[(kv * 4u + c) * (BN / 4u) + n / 4u][n % 4u] = AT(x[c]); }
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      var a: array<vec4<AT>, TM / 4u>;
      for (var u = 0u; u < TM / 4u; u++) { a[u] = Ws[k * (BM / 4u) + u * 16u + tm]; }
      for (var j4 = 0u; j4 < TN / 4u; j4++) {
        let b = Xs[k * (BN / 4u) + tn * (TN / 4u) + j4];
        for (var u = 0u; u < TM / 4u; u++) {
          acc[j4 * 4u][u] += vec4<f32>(a[u] * b.x);
          acc[j4 * 4u + 1u][u] += vec4<f32>(a[u] * b.y);
          acc[j4 * 4u + 2u][u] += vec4<f32>(a[u] * b.z);
          acc[j4 * 4u + 3u][u] += vec4<f32>(a[u] * b.w);
        }
      }
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < TN; j++) {
    let t = n0 + tn * TN + j;
    if (t < T) {
      for (var u = 0u; u < TM / 4u; u++) {
        for (var i = 0u; i < 4u; i++) {
          let l = m0 + u * 64u + tm * 4u + i;
          if (l < N) { emit(ROW0 + l, t, acc[j][u][i], acc[j][u][i ^ 1u]); }
        }
      }
    }
  }
}
