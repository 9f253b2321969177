// matvec.wgsl — decode matrix-vector product y = W x for one token, dequantizing W inside the
// kernel (dequant.wgsl), TPR threads per row and WG/TPR rows per workgroup. With NORM the input is
// RMS-normalised first (every row recomputes the norm of x from cache: cheaper than a separate
// dispatch and the pipeline barrier after it). Results go through epilogue.wgsl.
// Constants: K, N, ROWBYTES, ROW0, WROW0, XSTRIDE (floats), YSTRIDE, Y_OFF, TPR, WG; NORM_OFF and
// EPS with NORM; X_LAST reads the step's last row of X (the output head after a prefill).
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

const RPW: u32 = WG / TPR;
var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> res: array<vec2<f32>, RPW>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
#ifdef SUBGROUPS
        @builtin(subgroup_size) sgs: u32,
#endif
        @builtin(local_invocation_index) li: u32) {
  let r = li / TPR;
  let lane = li % TPR;
  let l0 = (wid.y * nwg.x + wid.x) * RPW;
  var xb = 0u;
#ifdef X_LAST
  xb = (P.n_tokens - 1u) * (XSTRIDE / 4u);
#endif
  // acc: the dot product; ss: the sum of squares of x for the norm. A row's TPR threads cover
  // all of x between them, so the norm costs no pass and no barrier of its own.
  // A fixed trip count (the index clamped, the extra contribution masked) lets the compiler issue
  // every load of the row slice at once instead of one memory latency per iteration.
  var acc = 0.0;
  var ss = 0.0;
  if (l0 + r < N) {
    let rb = wrow_byte(ROW0 + l0 + r);
    for (var it = 0u; it < (K / GS + TPR - 1u) / TPR; it++) {
      let q0 = lane + it * TPR;
      let q = min(q0, K / GS - 1u);
      let f = select(0.0, 1.0, q0 < K / GS);
      let w = dqg(rb, q);
      var pa = 0.0;
      for (var i = 0u; i < GS / 4u; i++) {
        var xv = X[xb + q * (GS / 4u) + i];
#ifdef NORM
        ss += f * dot(xv, xv);
        xv *= VEC[NORM_OFF / 4u + q * (GS / 4u) + i];
#endif
        pa += f32(dot(w[i], vec4<AT>(xv)));
      }
      acc += f * pa;
    }
  }
  var v = vec2<f32>(acc, ss);
#ifdef SUBGROUPS
  // Lanes of a row are consecutive invocations: a butterfly inside the subgroup, then (when a row
  // spans several subgroups) their sums through workgroup memory.
  let w = min(TPR, sgs);
  for (var o = 1u; o < w; o <<= 1u) { v += subgroupShuffleXor(v, o); }
  if (TPR > sgs) {
    red[li] = v;
    workgroupBarrier();
    if (lane == 0u) {
      for (var k = sgs; k < TPR; k += sgs) { v += red[li + k]; }
    }
  }
  if (lane == 0u) { res[r] = v; }
  workgroupBarrier();
#else
  red[li] = v;
  workgroupBarrier();
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    if (lane < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  if (lane == 0u) { res[r] = red[li]; }
  workgroupBarrier();
#endif
  if (li < RPW && l0 + li < N) {
    var a = res[li];
    var b = res[li ^ 1u];
#ifdef NORM
    a.x /= sqrt(a.y / f32(K) + EPS);
    b.x /= sqrt(b.y / f32(K) + EPS);
#endif
    emit(ROW0 + l0 + li, 0u, a.x, b.x);
  }
}
