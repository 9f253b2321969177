// attn_decode.wgsl — attention of one new token: one workgroup per query head h, reading the
// cache of KV head h / (NH / NKVH) (grouped-query attention) for positions 0 .. n_kv - 1.
// Blocks of WG positions: each thread scores one key, the block's max and sum update an online
// softmax, then threads split as (dimension, position group) accumulate p * v.
// Constants: HD (<= WG), NH, NKVH, NCTX, SCALE, QSTRIDE, OSTRIDE (floats), WG.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> KC: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> VC: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;

const NEG: f32 = -3.0e38; // below any score; exp(NEG - m) == 0
const G: u32 = WG / HD;   // position groups in the value pass
var<workgroup> qs: array<vec4<f32>, HD / 4u>;
var<workgroup> ps: array<f32, WG>;
var<workgroup> red: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let kvh = h / (NH / NKVH);
  let n = P.n_kv;
  let t = P.n_tokens - 1u; // decode: the step's only (last) row
  for (var i = li; i < HD / 4u; i += WG) { qs[i] = Q[(t * QSTRIDE + h * HD) / 4u + i]; }
  workgroupBarrier();
  let d = li % HD;
  let grp = li / HD;
  var m = NEG;
  var l = 0.0;
  var acc = 0.0;
  let base = kvh * NCTX;
  for (var p0 = 0u; p0 < n; p0 += WG) {
    let p = p0 + li;
    var s = NEG;
    if (p < n) {
      var dt = 0.0;
      let kb = (base + p) * (HD / 4u);
      for (var i = 0u; i < HD / 4u; i++) { dt += dot(qs[i], KC[kb + i]); }
      s = dt * SCALE;
    }
    red[li] = s;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (li < st) { red[li] = max(red[li], red[li + st]); }
      workgroupBarrier();
    }
    let mn = max(m, red[0]);
    workgroupBarrier();
    let alpha = exp(m - mn);
    var e = 0.0;
    if (p < n) { e = exp(s - mn); }
    ps[li] = e;
    red[li] = e;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
      if (li < st) { red[li] += red[li + st]; }
      workgroupBarrier();
    }
    l = l * alpha + red[0];
    m = mn;
    acc *= alpha;
    let cnt = min(WG, n - p0);
    if (grp < G) {
      for (var j = grp; j < cnt; j += G) { acc += ps[j] * VC[(base + p0 + j) * HD + d]; }
    }
    workgroupBarrier();
  }
  red[li] = acc;
  workgroupBarrier();
  if (li < HD) {
    var o = 0.0;
    for (var g = 0u; g < G; g++) { o += red[g * HD + li]; }
    O[t * OSTRIDE + h * HD + li] = o / l;
  }
}
