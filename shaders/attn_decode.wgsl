// attn_decode.wgsl — attention of one new token, split over the cache so every SM has work
// (flash-decoding). `part`: one workgroup per (query head h, chunk of CH positions) scores its
// keys against q and writes the chunk's max m, l = sum exp(s - m) and acc = sum exp(s - m) v to
// PART; `merge` (one workgroup per head) combines the chunks:
// out = sum_c exp(m_c - M) acc_c / sum_c exp(m_c - M) l_c. Query head h reads KV head
// h / (NH / NKVH) (grouped-query attention); the cache holds positions 0 .. n_kv - 1.
// Loops have fixed trip counts (indices clamped, contributions masked) so each thread issues all
// its loads at once instead of waiting out one memory latency per iteration.
// Constants: HD, NH, NKVH, NCTX, SCALE, QSTRIDE, OSTRIDE (floats), CH (positions per chunk =
// workgroup size of `part`), MAXCH (chunks per head the PART buffer holds).
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
#ifdef PASS_PART
@group(0) @binding(1) var<storage, read> Q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> KC: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> VC: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> PART: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> PART: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> O: array<vec4<f32>>;
#endif

const NEG: f32 = -3.0e38; // below any score; exp(NEG - m) == 0
const H4: u32 = HD / 4u;
const REC: u32 = H4 + 1u; // vec4s per chunk record: (m, l, 0, 0), then acc
const G: u32 = CH / H4;   // position groups of the value pass in `part`

#ifdef PASS_PART
var<workgroup> qs: array<vec4<f32>, H4>;
var<workgroup> ps: array<f32, CH>;
var<workgroup> red: array<f32, CH>;
var<workgroup> red4: array<vec4<f32>, CH>;

@compute @workgroup_size(CH)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let c = wid.y;
  let kvh = h / (NH / NKVH);
  let n = P.n_kv;
  let t = P.n_tokens - 1u;
  for (var i = li; i < H4; i += CH) { qs[i] = Q[(t * QSTRIDE + h * HD) / 4u + i]; }
  workgroupBarrier();
  let base = kvh * NCTX;
  let p0 = c * CH;
  let cnt = min(CH, n - p0);
  // Scores: one key per thread.
  let p = p0 + min(li, cnt - 1u);
  var dt = 0.0;
  for (var i = 0u; i < H4; i++) { dt += dot(qs[i], KC[(base + p) * H4 + i]); }
  var s = NEG;
  if (li < cnt) { s = dt * SCALE; }
  red[li] = s;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let m = red[0];
  workgroupBarrier();
  var e = 0.0;
  if (li < cnt) { e = exp(s - m); }
  ps[li] = e;
  red[li] = e;
  workgroupBarrier();
  for (var st = CH / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] += red[li + st]; }
    workgroupBarrier();
  }
  // Values: thread (d4, g) sums positions g, g + G, ... of dimensions 4 d4 .. 4 d4 + 3.
  let d4 = li % H4;
  let g = li / H4;
  var acc = vec4<f32>(0.0);
  if (g < G) {
    for (var it = 0u; it < CH / G; it++) {
      let j = g + it * G;
      let jj = min(j, cnt - 1u);
      acc += ps[jj] * select(0.0, 1.0, j < cnt) * VC[(base + p0 + jj) * H4 + d4];
    }
  }
  red4[li] = acc;
  workgroupBarrier();
  let rec = (h * MAXCH + c) * REC;
  if (g == 0u) {
    var o = vec4<f32>(0.0);
    for (var k = 0u; k < G; k++) { o += red4[k * H4 + d4]; }
    PART[rec + 1u + d4] = o;
  }
  if (li == 0u) { PART[rec] = vec4<f32>(m, red[0], 0.0, 0.0); }
}
#else
const MW: u32 = 256u;      // merge workgroup
const CG: u32 = MW / H4;   // chunk groups in the merge
var<workgroup> red: array<f32, MW>;
var<workgroup> red4: array<vec4<f32>, MW>;

@compute @workgroup_size(MW)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let nch = (P.n_kv + CH - 1u) / CH;
  let t = P.n_tokens - 1u;
  var mx = NEG;
  for (var c = li; c < nch; c += MW) { mx = max(mx, PART[(h * MAXCH + c) * REC].x); }
  red[li] = mx;
  workgroupBarrier();
  for (var st = MW / 2u; st > 0u; st >>= 1u) {
    if (li < st) { red[li] = max(red[li], red[li + st]); }
    workgroupBarrier();
  }
  let M = red[0];
  workgroupBarrier();
  let d4 = li % H4;
  let cg = li / H4;
  var l = 0.0;
  var acc = vec4<f32>(0.0);
  if (cg < CG) {
    for (var c = cg; c < nch; c += CG) {
      let r = (h * MAXCH + c) * REC;
      let ml = PART[r];
      let w = exp(ml.x - M);
      l += w * ml.y;
      acc += w * PART[r + 1u + d4];
    }
  }
  red[li] = l;
  red4[li] = acc;
  workgroupBarrier();
  if (cg == 0u) {
    var o = vec4<f32>(0.0);
    var L = 0.0;
    for (var k = 0u; k < CG; k++) {
      o += red4[k * H4 + d4];
      L += red[k * H4 + d4];
    }
    O[(t * OSTRIDE + h * HD) / 4u + d4] = o / L;
  }
}
#endif
