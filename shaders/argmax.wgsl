// argmax.wgsl — greedy sampling on the GPU in two passes, so a decode step reads back 8 bytes,
// not the vocabulary. `part`: each workgroup reduces CHUNK logits of row LROW (the step's last
// logits row) to (value, index); `final`: one workgroup reduces the NPART partials, writes
// (index, value bits) to OUT and the index to TOK[0], where the next decode step's embedding
// lookup reads it without a round trip through the host. Ties go to the lower index.
// Constants: NV (vocabulary), CHUNK, NPART.
#include "common.wgsl"

@group(0) @binding(0) var<uniform> P: Params;
#ifdef PASS_PART
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read_write> PART: array<vec2<u32>>;
#else
@group(0) @binding(1) var<storage, read> PART: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> OUT: array<u32>;
@group(0) @binding(3) var<storage, read_write> TOK: array<u32>;
#endif

const WG: u32 = 256u;
var<workgroup> rv: array<f32, WG>;
var<workgroup> ri: array<u32, WG>;

fn better(v: f32, i: u32, w: f32, j: u32) -> bool { return v > w || (v == w && i < j); }

fn reduce(li: u32) {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s && better(rv[li + s], ri[li + s], rv[li], ri[li])) {
      rv[li] = rv[li + s];
      ri[li] = ri[li + s];
    }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  var bv = -3.0e38;
  var bi = 0xffffffffu;
#ifdef PASS_PART
  let start = wid.x * CHUNK;
  let end = min(start + CHUNK, NV);
  for (var i = start + li; i < end; i += WG) {
    let v = L[i];
    if (better(v, i, bv, bi)) { bv = v; bi = i; }
  }
#else
  for (var i = li; i < NPART; i += WG) {
    let e = PART[i];
    let v = bitcast<f32>(e.x);
    if (better(v, e.y, bv, bi)) { bv = v; bi = e.y; }
  }
#endif
  rv[li] = bv;
  ri[li] = bi;
  reduce(li);
  if (li == 0u) {
#ifdef PASS_PART
    PART[wid.x] = vec2<u32>(bitcast<u32>(rv[0]), ri[0]);
#else
    OUT[0] = ri[0];
    OUT[1] = bitcast<u32>(rv[0]);
    TOK[0] = ri[0];
#endif
  }
}
