// matmul.wgsl — prefill matrix product Y[t] = W X[t] for the step's tokens: 64 rows x 64 tokens
// per workgroup, each thread a 4x4 tile, K in steps of 32 through workgroup memory. Weights are
// dequantized once per tile (dequant.wgsl); results go through epilogue.wgsl, so rope partners
// and gate/up pairs land in the same thread.
// Constants: K, N, ROWBYTES, ROW0, WROW0, XSTRIDE (floats), YSTRIDE, Y_OFF.
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

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 32u;
const GPR: u32 = BK / GS; // weight groups per tile row
var<workgroup> Ws: array<vec4<AT>, 512>; // [BK][BM / 4]
var<workgroup> Xs: array<vec4<AT>, 512>; // [BK][BN / 4]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let m0 = wid.x * BM;
  let n0 = wid.y * BN;
  let T = P.n_tokens;
  let tm = li % 16u;
  let tn = li / 16u;
  var acc: array<vec4<f32>, 4>;
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
      let a = Ws[k * (BM / 4u) + tm];
      let b = Xs[k * (BN / 4u) + tn];
      acc[0] += vec4<f32>(a * b.x);
      acc[1] += vec4<f32>(a * b.y);
      acc[2] += vec4<f32>(a * b.z);
      acc[3] += vec4<f32>(a * b.w);
    }
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let t = n0 + tn * 4u + j;
    if (t < T) {
      for (var i = 0u; i < 4u; i++) {
        let l = m0 + tm * 4u + i;
        if (l < N) { emit(ROW0 + l, t, acc[j][i], acc[j][i ^ 1u]); }
      }
    }
  }
}
