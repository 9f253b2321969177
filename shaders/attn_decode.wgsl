// attn_decode.wgsl — attention of one new token, split over the cache so every SM has work
// (flash-decoding). `part`: one workgroup per (query head h, chunk of CH positions) scores its
// keys against q, and writes the chunk's max m, sum l = sum exp(s - m) and acc = sum exp(s - m) v
// to PART; `combine`: one workgroup per head merges the chunks:
// out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c. Query head h reads KV head
// h / (NH / NKVH) (grouped-query attention); the cache holds positions 0 .. n_kv - 1.
// Constants: HD, NH, NKVH, NCTX, SCALE, QSTRIDE, OSTRIDE (floats), CH (= workgroup size),
// MAXCH (chunks per head the PART buffer holds).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
#ifdef PASS_PART
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> KC: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> VC: array<f32>;
@group(0) @binding(4) var<storage, read_write> PART: array<f32>;
#else
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
#endif

const NEG: f32 = -3.0e38; // below any score; exp(NEG - m) == 0
const REC: u32 = HD + 2u;  // floats per chunk record: m, l, acc[HD]
var<workgroup> red: array<f32, CH>;

#ifdef PASS_PART
var<workgroup> qs: array<vec4<f32>, HD / 4u>;
var<workgroup> ps: array<f32, CH>;

@compute @workgroup_size(CH)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let c = wid.y;
  let kvh = h / (NH / NKVH);
  let n = P.n_kv;
  let t = P.n_tokens - 1u;
  for (var i = li; i < HD / 4u; i += CH) { qs[i] = Q[(t * QSTRIDE + h * HD) / 4u + i]; }
  workgroupBarrier();
  let base = kvh * NCTX;
  let p = c * CH + li;
  var s = NEG;
  if (p < n) {
    var dt = 0.0;
    let kb = (base + p) * (HD / 4u);
    for (var i = 0u; i < HD / 4u; i++) { dt += dot(qs[i], KC[kb + i]); }
    s = dt * SCALE;
  }
  red[li] = s;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  var e = 0.0;
  if (p < n) { e = exp(s - m); }
  ps[li] = e;
  red[li] = e;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] += red[li + st]; }
    workgroupBarrier();
  }
  let cnt = min(CH, n - c * CH);
  let rec = (h * MAXCH + c) * REC;
  for (var d = li; d < HD; d += CH) {
    var acc = 0.0;
    for (var j = 0u; j < cnt; j++) { acc += ps[j] * VC[(base + c * CH + j) * HD + d]; }
    PART[rec + 2u + d] = acc;
  }
  if (li == 0u) {
    PART[rec] = m;
    PART[rec + 1u] = red[0];
  }
}
#else
@compute @workgroup_size(CH)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let nch = (P.n_kv + CH - 1u) / CH;
  let t = P.n_tokens - 1u;
  var mx = NEG;
  for (var c = li; c < nch; c += CH) { mx = max(mx, PART[(h * MAXCH + c) * REC]); }
  red[li] = mx;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let M = red[0];
  workgroupBarrier();
  var l = 0.0;
  for (var c = li; c < nch; c += CH) {
    let r = (h * MAXCH + c) * REC;
    l += exp(PART[r] - M) * PART[r + 1u];
  }
  red[li] = l;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] += red[li + st]; }
    workgroupBarrier();
  }
  let L = red[0];
  for (var d = li; d < HD; d += CH) {
    var o = 0.0;
    for (var c = 0u; c < nch; c++) {
      let r = (h * MAXCH + c) * REC;
      o += exp(PART[r] - M) * PART[r + 2u + d];
    }
    O[t * OSTRIDE + h * HD + d] = o / L;
  }
}
#endif
