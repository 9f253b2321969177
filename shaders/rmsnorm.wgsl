// rmsnorm.wgsl — Y[t] = X[t] / sqrt(mean(X[t]^2) + EPS) * w, one workgroup per row. With
// X_LAST only the step's last row is normalised, into row 0 of Y (the output head after a
// prefill whose other rows need no logits).
// INPLACE normalises Y itself (a buffer cannot be bound read-only and writable at once).
// Constants: K (floats per row), XSTRIDE, YSTRIDE (floats), NORM_OFF (w in VEC), EPS.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
#ifdef INPLACE
@group(0) @binding(1) var<storage, read> VEC: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
fn xin(i: u32) -> vec4<f32> { return Y[i]; }
#else
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> VEC: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<vec4<f32>>;
fn xin(i: u32) -> vec4<f32> { return X[i]; }
#endif

const WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  var src = wid.x;
  var dst = wid.x;
#ifdef X_LAST
  src = P.n_tokens - 1u;
  dst = 0u;
#endif
  if (src >= P.n_tokens) { return; }
  let xb = src * (XSTRIDE / 4u);
  var ss = 0.0;
  for (var i = li; i < K / 4u; i += WG) {
    let v = xin(xb + i);
    ss += dot(v, v);
  }
  red[li] = ss;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let scale = 1.0 / sqrt(red[0] / f32(K) + EPS);
  for (var i = li; i < K / 4u; i += WG) {
    Y[dst * (YSTRIDE / 4u) + i] = xin(xb + i) * scale * VEC[NORM_OFF / 4u + i];
  }
}
